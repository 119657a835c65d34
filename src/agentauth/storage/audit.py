"""Append-only audit events: inserted, listed per tenant with a keyset cursor, never updated or deleted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
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
