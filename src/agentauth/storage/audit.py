"""Append-only audit events: inserted, listed per tenant with a keyset cursor, never updated or deleted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, cast, extract, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage.models import AuditEventRow
from agentauth.storage.records import AuditEvent, AuditOutcome


def to_record(row: AuditEventRow) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        tenant_id=row.tenant_id,
        actor=row.actor,
        action=row.action,
        target_type=row.target_type,
        target_id=row.target_id,
        outcome=AuditOutcome(row.outcome),
        reason=row.reason,
        request_id=row.request_id,
        ip=row.ip,
        created_at=row.created_at,
        details=row.details,
    )


def add(session: AsyncSession, **values: Any) -> None:
    session.add(AuditEventRow(**values))


async def list_for_tenant(
    session: AsyncSession,
    tenant_id: str,
    *,
    limit: int,
    subtree: list[str] | None = None,
    before_id: int | None = None,
    action: str | None = None,
    outcome: str | None = None,
    actor: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
) -> list[AuditEvent]:
    """Newest first; ``before_id`` is the cursor (the id of the last event of the previous page)."""
    query = select(AuditEventRow).where(AuditEventRow.tenant_id == tenant_id)
    if subtree is not None:
        query = query.where(AuditEventRow.actor.in_(subtree))
    if before_id is not None:
        query = query.where(AuditEventRow.id < before_id)
    if action is not None:
        query = query.where(AuditEventRow.action == action)
    if outcome is not None:
        query = query.where(AuditEventRow.outcome == outcome)
    if actor is not None:
        query = query.where(AuditEventRow.actor == actor)
    if target_id is not None:
        query = query.where(AuditEventRow.target_id == target_id)
    if since is not None:
        query = query.where(AuditEventRow.created_at >= since)
    rows = await session.scalars(query.order_by(AuditEventRow.id.desc()).limit(limit))
    return [to_record(r) for r in rows]


TOKEN_ACTIONS = ("token.issued", "token.refreshed", "token.exchanged", "token.denied")


def _hour_of(dialect: str, start: int) -> ColumnElement[int]:
    """The hour since ``start`` (epoch seconds) an event fell in: 0, 1, ... (one expression per dialect: SQLite's
    ``/`` on a real and a cast truncate, PostgreSQL's cast rounds, so it floors first)."""
    epoch = extract("epoch", AuditEventRow.created_at)
    if dialect == "postgresql":
        return cast(func.floor((epoch - start) / 3600), Integer)
    return cast((cast(epoch, Integer) - start) / 3600, Integer)


async def token_activity(
    session: AsyncSession, tenant_id: str, since: datetime, *, subtree: list[str] | None = None, agents: int = 20
) -> tuple[list[tuple[int, str, int]], list[tuple[str, str, int]]]:
    """A tenant's token events since ``since``: (hour, action, count) per hour and action, and (actor, action,
    count) for the ``agents`` busiest actors. Counted in the database (grouped), never event by event."""
    dialect = session.get_bind().dialect.name
    start = int(since.timestamp())
    where = [
        AuditEventRow.tenant_id == tenant_id,
        AuditEventRow.created_at >= since,
        AuditEventRow.action.in_(TOKEN_ACTIONS),
    ]
    if subtree is not None:
        where.append(AuditEventRow.actor.in_(subtree))
    hour = _hour_of(dialect, start).label("hour")
    per_hour = select(hour, AuditEventRow.action, func.count()).where(*where).group_by(hour, AuditEventRow.action)
    total = func.count().label("total")
    busiest = (
        select(AuditEventRow.actor, total)
        .where(*where, AuditEventRow.actor.is_not(None))
        .group_by(AuditEventRow.actor)
        .order_by(total.desc(), AuditEventRow.actor)
        .limit(agents)
    )
    hours = [(int(h), str(a), int(n)) for h, a, n in (await session.execute(per_hour)).all()]
    actors = [str(a) for a, _ in (await session.execute(busiest)).all()]
    by_actor: list[tuple[str, str, int]] = []
    if actors:
        split = (
            select(AuditEventRow.actor, AuditEventRow.action, func.count())
            .where(*where, AuditEventRow.actor.in_(actors))
            .group_by(AuditEventRow.actor, AuditEventRow.action)
        )
        by_actor = [(str(a), str(b), int(n)) for a, b, n in (await session.execute(split)).all()]
    return hours, by_actor
