"""Agents repository: tenant-scoped lookups, subtree membership by materialized path."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage import delegations
from agentauth.storage.models import AgentRow
from agentauth.storage.records import Agent, AgentStatus, DPoPRequirement


def to_record(row: AgentRow) -> Agent:
    return Agent(
        id=row.id,
        tenant_id=row.tenant_id,
        parent_id=row.parent_id,
        depth=row.depth,
        path=row.path,
        did=row.did,
        name=row.name,
        agent_type=row.agent_type,
        description=row.description,
        trust_level=row.trust_level,
        status=AgentStatus(row.status),
        scopes=tuple(row.scopes),
        identity_credential_id=row.identity_credential_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deactivated_at=row.deactivated_at,
        dpop_requirement=DPoPRequirement(row.dpop_requirement),
        notification_endpoint=row.notification_endpoint,
    )


async def get(session: AsyncSession, agent_id: str) -> Agent | None:
    row = await session.get(AgentRow, agent_id)
    return to_record(row) if row else None


async def get_by_did(session: AsyncSession, did: str) -> Agent | None:
    row = (await session.scalars(select(AgentRow).where(AgentRow.did == did))).first()
    return to_record(row) if row else None


async def get_in_subtree(session: AsyncSession, agent_id: str, root_path: str) -> Agent | None:
    """The agent if it lies in the subtree whose path is ``root_path`` (itself included), else None."""
    row = await session.get(AgentRow, agent_id)
    if row is None or not row.path.startswith(root_path):
        return None
    return to_record(row)


async def get_peer(session: AsyncSession, agent_id: str, peer_of: Agent, now: datetime) -> Agent | None:
    """The agent if it is a delegation peer of ``peer_of``: of another tenant, with a live direct delegation
    between the two either way. Else None (inside a tenant, visibility stays by subtree)."""
    if not await delegations.are_peers(session, peer_of.id, agent_id, now):
        return None
    agent = await get(session, agent_id)
    return agent if agent is not None and agent.tenant_id != peer_of.tenant_id else None


async def subtree_ids(session: AsyncSession, root_path: str) -> list[str]:
    rows = await session.scalars(select(AgentRow.id).where(AgentRow.path.startswith(root_path, autoescape=True)))
    return list(rows)
