"""owners, their sessions and tenants; authorization codes and consents (RFC 6749 section 4.1, issue 14 item 4)

Owners are people with an email and an argon2id password hash; sessions are kept as keyed hashes of their
cookies; login failures are counted in the database so the throttle holds across replicas. Codes are kept as
keyed hashes until redeemed or expired; consents record what an owner let a client do; a refresh family started
by a code remembers its subject (the owner) and whether the agent acts (``act``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "owners",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "owner_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_owner_sessions_owner_id", "owner_sessions", ["owner_id"], unique=False)
    op.create_table(
        "owner_tenants",
        sa.Column("owner_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"]),
        sa.PrimaryKeyConstraint("owner_id", "tenant_id"),
    )
    op.create_index("ix_owner_tenants_tenant_id", "owner_tenants", ["tenant_id"], unique=False)
    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_failures_key_at", "login_failures", ["key", "at"], unique=False)
    op.create_table(
        "authorization_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("redirect_uri_given", sa.Boolean(), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("owner_id", sa.String(length=100), nullable=False),
        sa.Column("agent_id", sa.String(length=40), nullable=False),
        sa.Column("agent_acts", sa.Boolean(), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=True),
        sa.Column("family_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    op.create_index("ix_authorization_codes_expires_at", "authorization_codes", ["expires_at"], unique=False)
    op.create_table(
        "consents",
        sa.Column("owner_id", sa.String(length=100), nullable=False),
        sa.Column("client_id", sa.String(length=500), nullable=False),
        sa.Column("agent_id", sa.String(length=40), nullable=False),
        sa.Column("agent_acts", sa.Boolean(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "client_id", "agent_id", "agent_acts"),
    )
    with op.batch_alter_table("refresh_tokens") as batch_op:
        batch_op.add_column(sa.Column("subject", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("agent_acts", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch_op:
        batch_op.drop_column("agent_acts")
        batch_op.drop_column("subject")
    op.drop_table("consents")
    op.drop_index("ix_authorization_codes_expires_at", table_name="authorization_codes")
    op.drop_table("authorization_codes")
    op.drop_index("ix_login_failures_key_at", table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_index("ix_owner_tenants_tenant_id", table_name="owner_tenants")
    op.drop_table("owner_tenants")
    op.drop_index("ix_owner_sessions_owner_id", table_name="owner_sessions")
    op.drop_table("owner_sessions")
    op.drop_table("owners")
