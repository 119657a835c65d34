"""Set-at-a-time reads and writes for the hot paths (see ``batch.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage.agents import to_record as agent_record
from agentauth.storage.api_keys import to_record as key_record
from agentauth.storage.models import (
    AgentRow,
    ApiKeyRow,
    AuditEventRow,
    CredentialRow,
    PolicyVersionRow,
    RefreshTokenRow,
)
from agentauth.storage.records import Agent, ApiKey


@dataclass(frozen=True, slots=True)
class TokenState:
    """What an online check needs about one issued credential, read in one joined query."""

    jti: str
    kind: str
    client_id: str | None
    revoked_at: datetime | None
    expires_at: datetime
    agent: Agent
    policy_version: int


async def token_states(session: AsyncSession, jtis: Sequence[str]) -> dict[str, TokenState]:
    rows = await session.execute(
        select(CredentialRow.jti, CredentialRow.kind, CredentialRow.client_id, CredentialRow.revoked_at,
               CredentialRow.expires_at, AgentRow, PolicyVersionRow.version)
        .join(AgentRow, AgentRow.id == CredentialRow.agent_id)
        .outerjoin(PolicyVersionRow, PolicyVersionRow.tenant_id == AgentRow.tenant_id)
        .where(CredentialRow.jti.in_(list(set(jtis))))
    )  # fmt: skip
    return {
        jti: TokenState(jti, kind, client_id, revoked, expires, agent_record(agent), int(version or 0))
        for jti, kind, client_id, revoked, expires, agent, version in rows
    }


async def api_keys_with_agents(
    session: AsyncSession, prefixes: Sequence[str], lock: bool
) -> dict[str, tuple[ApiKey, Agent]]:
    """Keys by prefix with their agents. ``lock`` (PostgreSQL): FOR SHARE, so a concurrent revocation waits for
    this transaction and then sees - and revokes - what it issued."""
    query = select(ApiKeyRow, AgentRow).join(AgentRow, AgentRow.id == ApiKeyRow.agent_id)
    query = query.where(ApiKeyRow.prefix.in_(list(set(prefixes))))
    if lock:
        query = query.with_for_update(read=True)
    rows = await session.execute(query)
    return {key.prefix: (key_record(key), agent_record(agent)) for key, agent in rows}


async def _insert_many(session: AsyncSession, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    # Core insert on the table: one executemany, without the ORM's per-row bookkeeping.
    if rows:
        await session.execute(insert(model.__table__), list(rows))


async def record_issued(
    session: AsyncSession,
    credentials: Sequence[dict[str, Any]],
    refresh_tokens: Sequence[dict[str, Any]],
    audit_events: Sequence[dict[str, Any]],
) -> None:
    """One insert per table for a whole round of issued tokens."""
    await _insert_many(session, CredentialRow, credentials)
    await _insert_many(session, RefreshTokenRow, refresh_tokens)
    await _insert_many(session, AuditEventRow, audit_events)


async def touch_keys(session: AsyncSession, key_ids: Sequence[str], now: datetime) -> None:
    if key_ids:
        await session.execute(update(ApiKeyRow).where(ApiKeyRow.id.in_(list(key_ids))).values(last_used_at=now))
