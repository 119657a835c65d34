"""Audit trail: one append-only event per state change and per authentication failure."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentauth.errors import printable
from agentauth.issuer.context import RequestContext
from agentauth.storage import audit as audit_repo

log = logging.getLogger("agentauth.audit")


def record(
    session: AsyncSession,
    ctx: RequestContext,
    now: datetime,
    *,
    action: str,
    tenant_id: str | None,
    actor: str | None,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: str = "success",
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an event to the caller's unit of work: it commits (or rolls back) with the change it describes."""
    audit_repo.add(
        session,
        tenant_id=tenant_id,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        reason=printable(reason, 200) if reason else None,
        request_id=ctx.request_id,
        ip=ctx.ip,
        created_at=now,
        details=details,
    )


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
                outcome="failure",
                reason=reason[:200],
            )
    except Exception:
        # Never let the audit write turn a 401 into a 500; the log still has it.
        log.exception("could not record audit failure %s (%s)", action, reason)
