"""approvals (issue 17 item 2): CIBA backchannel authentication requests with RFC 9396 authorization_details,
and room for the require_approval policy effect

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("agent_id", sa.String(length=40), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("authorization_details", sa.JSON(), nullable=False),
        sa.Column("binding_message", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("interval_seconds", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("token_jti", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_hash"),
    )
    op.create_index(
        "ix_approval_requests_tenant", "approval_requests", ["tenant_id", "status", "created_at"], unique=False
    )
    with op.batch_alter_table("policies") as batch:
        batch.alter_column("effect", existing_type=sa.String(length=8), type_=sa.String(length=20), nullable=False)


def downgrade() -> None:
    op.execute("DELETE FROM policies WHERE effect = 'require_approval'")
    with op.batch_alter_table("policies") as batch:
        batch.alter_column("effect", existing_type=sa.String(length=20), type_=sa.String(length=8), nullable=False)
    op.drop_index("ix_approval_requests_tenant", table_name="approval_requests")
    op.drop_table("approval_requests")
