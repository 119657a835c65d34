"""Delegations repository: chains by materialized path, cascades by prefix."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage import agents as agents_repo  # a cycle (agents uses ``are_peers``): used at call time
from agentauth.storage import delegation_statements as sql
from agentauth.storage.models import AgentRow, DelegationRow
from agentauth.storage.records import Agent, Delegation, DelegationStatus
from agentauth.storage.statements import row_as


def to_record(row: DelegationRow) -> Delegation:
    return Delegation(
        id=row.id,
        tenant_id=row.tenant_id,
        delegator_id=row.delegator_id,
        delegate_id=row.delegate_id,
        parent_id=row.parent_id,
        path=row.path,
        depth=row.depth,
        scopes=tuple(row.scopes),
        remaining_depth=row.remaining_depth,
        credential_jti=row.credential_jti,
        credential_jwt=row.credential_jwt,
        status=DelegationStatus(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def from_values(values: Sequence[Any]) -> Delegation:
    """A delegation from the columns of a ``Reads.fetch`` row (``delegation_statements.DELEGATION_COLUMNS``)."""
    return to_record(row_as(sql.DELEGATION_COLUMNS, values))


def agent_from_values(values: Sequence[Any]) -> Agent:
    """An agent from the columns of a ``Reads.fetch`` row (``delegation_statements.AGENT_COLUMNS``)."""
    return agents_repo.to_record(row_as(sql.AGENT_COLUMNS, values))


def link_of(row: Sequence[Any]) -> Delegation:
    """The delegation of a ``delegation_statements.CHAIN_WITH_AGENTS`` row."""
    return from_values(row[sql.LINK])


def delegate_of(row: Sequence[Any]) -> Agent:
    """The delegate of a ``delegation_statements.CHAIN_WITH_AGENTS`` row."""
    return agent_from_values(row[sql.LINK_DELEGATE])


def delegator_of(row: Sequence[Any]) -> Agent:
    """The delegator of a ``delegation_statements.CHAIN_WITH_AGENTS`` row."""
    return agent_from_values(row[sql.LINK_DELEGATOR])


def row_values(delegation: Delegation) -> dict[str, Any]:
    """The ``delegations`` row that records ``delegation`` (for ``Insert.of``)."""
    return {column.key: getattr(delegation, column.key) for column in sql.DELEGATION_COLUMNS} | {
        "scopes": list(delegation.scopes)
    }


def live(now: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """SQL form of ``Delegation.live_at``: active and not expired."""
    return DelegationRow.status == DelegationStatus.ACTIVE, DelegationRow.expires_at > now


async def insert(session: AsyncSession, **values: Any) -> Delegation:
    row = DelegationRow(**values)
    session.add(row)
    await session.flush()
    return to_record(row)


async def get(session: AsyncSession, delegation_id: str) -> Delegation | None:
    row = await session.get(DelegationRow, delegation_id)
    return to_record(row) if row else None


async def get_by_credential(session: AsyncSession, jti: str) -> Delegation | None:
    row = (await session.scalars(select(DelegationRow).where(DelegationRow.credential_jti == jti))).first()
    return to_record(row) if row else None


async def chain(session: AsyncSession, delegation: Delegation) -> list[Delegation]:
    """The delegation and its ancestors, root first (ids come from the path)."""
    ids = [p for p in delegation.path.strip("/").split("/") if p]
    rows = {r.id: r for r in await session.scalars(select(DelegationRow).where(DelegationRow.id.in_(ids)))}
    return [to_record(rows[i]) for i in ids if i in rows]


async def list_for_agent(
    session: AsyncSession, tenant_id: str | None, agent_id: str, role: str | None, limit: int, offset: int
) -> tuple[list[Delegation], int]:
    """Delegations granted by or to ``agent_id`` (``role`` narrows to one side), of ``tenant_id`` (the tenant
    whose authority they hand on) or of any tenant when None."""
    if role == "delegator":
        condition = DelegationRow.delegator_id == agent_id
    elif role == "delegate":
        condition = DelegationRow.delegate_id == agent_id
    else:
        condition = or_(DelegationRow.delegator_id == agent_id, DelegationRow.delegate_id == agent_id)
    where = (condition,) if tenant_id is None else (DelegationRow.tenant_id == tenant_id, condition)
    total = await session.scalar(select(func.count()).select_from(DelegationRow).where(*where)) or 0
    rows = await session.scalars(
        select(DelegationRow)
        .where(*where)
        .order_by(DelegationRow.created_at, DelegationRow.id)
        .limit(limit)
        .offset(offset)
    )
    return [to_record(r) for r in rows], total


async def list_for_subtree(
    session: AsyncSession, tenant_id: str, root_path: str, limit: int, offset: int
) -> tuple[list[Delegation], int]:
    """Delegations of ``tenant_id``'s authority granted by any agent at or below ``root_path`` (a tenant root:
    every delegation of the tenant), oldest first."""
    where = (
        DelegationRow.tenant_id == tenant_id,
        DelegationRow.delegator_id == AgentRow.id,
        AgentRow.path.startswith(root_path, autoescape=True),
    )
    total = (
        await session.scalar(select(func.count()).select_from(DelegationRow).join(AgentRow, where[1]).where(*where))
        or 0
    )
    rows = await session.scalars(
        select(DelegationRow)
        .join(AgentRow, where[1])
        .where(*where)
        .order_by(DelegationRow.created_at, DelegationRow.id)
        .limit(limit)
        .offset(offset)
    )
    return [to_record(r) for r in rows], total


async def active_to(session: AsyncSession, agent_id: str, tenant_id: str, now: datetime) -> list[Delegation]:
    """The live delegations to ``agent_id`` that hand on authority of ``tenant_id``."""
    rows = await session.scalars(
        select(DelegationRow).where(
            DelegationRow.delegate_id == agent_id,
            DelegationRow.tenant_id == tenant_id,
            *live(now),
        )
    )
    return [to_record(r) for r in rows]


async def are_peers(session: AsyncSession, agent_id: str, other_id: str, now: datetime) -> bool:
    either_way = or_(
        (DelegationRow.delegator_id == agent_id) & (DelegationRow.delegate_id == other_id),
        (DelegationRow.delegator_id == other_id) & (DelegationRow.delegate_id == agent_id),
    )
    found = await session.scalar(select(DelegationRow.id).where(either_way, *live(now)).limit(1))
    return found is not None


# PostgreSQL (READ COMMITTED): an UPDATE that waited for a plan holding FOR SHARE on a delegation of the subtree
# (``delegation_statements``: a delegation being created below it) cannot see the row that plan inserted - the
# next statement can. So again until a pass revokes nothing.
REVOKE_PASSES = 3


async def revoke_subtrees(session: AsyncSession, paths: list[str], now: datetime) -> list[Delegation]:
    """Revoke every active delegation at or below any of ``paths``; returns those this call revoked."""
    if not paths:
        return []
    condition = or_(*(DelegationRow.path.startswith(p, autoescape=True) for p in paths))
    statement = (
        update(DelegationRow)
        .where(condition, DelegationRow.status == DelegationStatus.ACTIVE)
        .values(status=DelegationStatus.REVOKED, revoked_at=now)
        .returning(DelegationRow)
    )
    revoked: list[Delegation] = []
    for _ in range(REVOKE_PASSES if session.get_bind().dialect.name == "postgresql" else 1):
        found = [to_record(r) for r in (await session.execute(statement)).scalars().all()]
        if not found:
            break
        revoked += found
    return revoked


async def paths_involving(session: AsyncSession, agent_ids: list[str]) -> list[str]:
    """Paths of active delegations granted by or to any of ``agent_ids``."""
    rows = await session.scalars(
        select(DelegationRow.path).where(
            DelegationRow.status == DelegationStatus.ACTIVE,
            or_(DelegationRow.delegator_id.in_(agent_ids), DelegationRow.delegate_id.in_(agent_ids)),
        )
    )
    return list(rows)
