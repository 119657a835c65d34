"""ciba ping (issue 17 item 2): an agent's registered CIBA client notification endpoint (ping mode), the ping
each of its approval requests owes it once decided or expired, single-use approvals, and the owner's email
about a request

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("notification_endpoint", sa.String(length=2000), nullable=True))
    with op.batch_alter_table("approval_requests") as batch:
        batch.add_column(sa.Column("ping_sealed", sa.Text(), nullable=True))
        batch.add_column(sa.Column("ping_state", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("ping_attempts", sa.SmallInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("ping_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("single_use", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("email_state", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("email_attempts", sa.SmallInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("email_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_approval_requests_ping", "approval_requests", ["ping_state", "ping_at"], unique=False)
    op.create_index("ix_approval_requests_email", "approval_requests", ["email_state", "email_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_approval_requests_email", table_name="approval_requests")
    op.drop_index("ix_approval_requests_ping", table_name="approval_requests")
    with op.batch_alter_table("approval_requests") as batch:
        for column in (
            "email_at",
            "email_attempts",
            "email_state",
            "single_use",
            "ping_at",
            "ping_attempts",
            "ping_state",
            "ping_sealed",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("notification_endpoint")
