"""suspension (issue 17 item 3): the kill switch's reversible half - a suspension bit per credential, published in
each status list's twin of purpose ``suspension``

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SUSPENDED = sa.text("suspended_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_credentials_suspended",
        "credentials",
        ["status_list_id"],
        unique=False,
        sqlite_where=_SUSPENDED,
        postgresql_where=_SUSPENDED,
    )
    with op.batch_alter_table("status_lists") as batch:
        batch.add_column(sa.Column("suspension_version", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("suspension_published_version", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("suspension_published_jwt", sa.Text(), nullable=True))
        batch.add_column(sa.Column("suspension_published_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # A suspended agent cannot be represented before this revision: it is active again (its bits go with the column).
    op.execute("UPDATE agents SET status = 'active' WHERE status = 'suspended'")
    with op.batch_alter_table("status_lists") as batch:
        for column in ("suspension_published_at", "suspension_published_jwt", "suspension_published_version"):
            batch.drop_column(column)
        batch.drop_column("suspension_version")
    op.drop_index("ix_credentials_suspended", table_name="credentials")
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("suspended_at")
