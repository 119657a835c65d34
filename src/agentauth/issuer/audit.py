"""Audit trail: one append-only event per state change and per authentication failure."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Required, TypedDict, Unpack

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentauth.errors import printable
from agentauth.issuer.context import RequestContext
from agentauth.storage import audit as audit_repo
from agentauth.storage.records import AuditOutcome

log = logging.getLogger("agentauth.audit")


class EventFields(TypedDict, total=False):
    action: Required[str]
    tenant_id: Required[str | None]
    actor: Required[str | None]
    target_type: str | None
    target_id: str | None
    outcome: str
    reason: str | None
    details: dict[str, Any] | None


def event(ctx: RequestContext, now: datetime, **fields: Unpack[EventFields]) -> dict[str, Any]:
    """The columns of one audit event: the one constructor of the row, for every path that records one - a
    session's unit of work (``record``) and the batched rounds' inserts (``hotpath``, ``storage.ports``)."""
    reason = fields.get("reason")
    details = fields.get("details")
    if ctx.owner_id is not None:
        details = {**(details or {}), "owner": ctx.owner_id}
    if ctx.operator is not None:
        details = {**(details or {}), "operator": ctx.operator}
    return {
        "tenant_id": fields["tenant_id"],
        "actor": fields["actor"],
        "action": fields["action"],
        "target_type": fields.get("target_type"),
        "target_id": fields.get("target_id"),
        "outcome": fields.get("outcome", AuditOutcome.SUCCESS),
        "reason": printable(reason, 200) if reason else None,
        "request_id": ctx.request_id,
        "ip": ctx.ip,
        "created_at": now,
        "details": details,
    }


def record(session: AsyncSession, ctx: RequestContext, now: datetime, **fields: Unpack[EventFields]) -> None:
    """Add an event to the caller's unit of work: it commits (or rolls back) with the change it describes."""
    audit_repo.add(session, **event(ctx, now, **fields))


async def record_failure(
    sessions: async_sessionmaker[AsyncSession],
    ctx: RequestContext,
    clock: Callable[[], datetime],
    *,
    action: str,
    reason: str,
    tenant_id: str | None = None,
    actor: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
) -> None:
    """Record a failure in its own transaction (the failed use case rolled back its own)."""
    try:
        async with sessions.begin() as session:
            record(
                session,
                ctx,
                clock(),
                action=action,
                tenant_id=tenant_id,
                actor=actor,
                target_type=target_type,
                target_id=target_id,
                outcome=AuditOutcome.FAILURE,
                reason=reason[:200],
            )
    except Exception:
        # Never let the audit write turn a 401 into a 500; the log still has it.
        log.exception("could not record audit failure %s (%s)", action, reason)
