"""lean credential indexes

Every issued token is one ``credentials`` row, so each index on it is paid on the busiest write path. Two
indexes only ever serve rows that are the exception - revoked credentials (status-list publication) and
delegated ones (cascading revocation) - and become partial; the tenant index served no query and goes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REVOKED = sa.text("revoked_at IS NOT NULL")
DELEGATED = sa.text("delegation_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("credentials") as batch_op:
        batch_op.drop_index("ix_credentials_tenant_id")
        batch_op.drop_index("ix_credentials_revoked")
        batch_op.drop_index("ix_credentials_delegation_id")
        batch_op.create_index(
            "ix_credentials_revoked", ["status_list_id"], sqlite_where=REVOKED, postgresql_where=REVOKED
        )
        batch_op.create_index(
            "ix_credentials_delegation_id", ["delegation_id"], sqlite_where=DELEGATED, postgresql_where=DELEGATED
        )


def downgrade() -> None:
    with op.batch_alter_table("credentials") as batch_op:
        batch_op.drop_index("ix_credentials_delegation_id")
        batch_op.drop_index("ix_credentials_revoked")
        batch_op.create_index("ix_credentials_delegation_id", ["delegation_id"], unique=False)
        batch_op.create_index("ix_credentials_revoked", ["status_list_id", "revoked_at"], unique=False)
        batch_op.create_index("ix_credentials_tenant_id", ["tenant_id"], unique=False)
