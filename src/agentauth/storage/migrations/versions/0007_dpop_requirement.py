"""Per-agent DPoP requirement (RFC 9449, issue 15): 0 bearer tokens allowed, 1 DPoP-bound tokens only, 2 bound to
the agent's own did:key. Never below the parent's; existing agents start at 0. And authorization codes bound to a
DPoP key by the authorization request's ``dpop_jkt`` (section 10; NULL: not bound).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch_op:
        batch_op.add_column(sa.Column("dpop_requirement", sa.SmallInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("authorization_codes") as batch_op:
        batch_op.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorization_codes") as batch_op:
        batch_op.drop_column("dpop_jkt")
    with op.batch_alter_table("agents") as batch_op:
        batch_op.drop_column("dpop_requirement")
