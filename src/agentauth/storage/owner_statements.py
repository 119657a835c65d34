"""The statements of owner sessions and the consent page (issue 14 item 4) on the general read port, built once:
every consent POST reads the owner's session and the agents the owner may choose, so both go through
``Reads.fetch`` (on SQLite one thread hop, batched with other requests' reads) rather than an ORM session."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select

from agentauth.storage import agents, statements
from agentauth.storage.models import AgentRow, OwnerRow, OwnerSessionRow, OwnerTenantRow
from agentauth.storage.records import Agent, AgentStatus

# The session of the keyed hash ``:hash`` of a cookie, with its owner (at most one row).
SESSION_BY_HASH = (
    select(
        OwnerSessionRow.csrf_token, OwnerSessionRow.last_seen_at, OwnerSessionRow.expires_at,
        OwnerRow.id, OwnerRow.email, OwnerRow.created_at,
    )
    .join(OwnerRow, OwnerRow.id == OwnerSessionRow.owner_id)
    .where(OwnerSessionRow.token_hash == bindparam("hash"))
)  # fmt: skip

# The active agents of every tenant the owner ``:owner`` owns, each tenant's root first.
OWNER_AGENTS = (
    select(*statements.AGENT_COLUMNS)
    .join(OwnerTenantRow, OwnerTenantRow.tenant_id == AgentRow.tenant_id)
    .where(OwnerTenantRow.owner_id == bindparam("owner"), AgentRow.status == AgentStatus.ACTIVE)
    .order_by(AgentRow.tenant_id, AgentRow.depth, AgentRow.created_at)
)


def agent_of(row: Sequence[Any]) -> Agent:
    """An ``OWNER_AGENTS`` row as a record."""
    return agents.to_record(statements.row_as(statements.AGENT_COLUMNS, row))
