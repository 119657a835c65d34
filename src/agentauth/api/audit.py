"""``/api/v1/audit/events``: the caller's tenant's audit trail; ``/api/v1/audit/activity``: its token activity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agentauth.api.deps import ContextDep, PrincipalDep, ServicesDep, runs
from agentauth.issuer.schemas import ActivityOut, AuditPage, UtcDateTime

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get(
    "/events",
    response_model=AuditPage,
    summary="Your tenant's audit events, newest first",
    openapi_extra=runs("audit.list"),
)
async def list_events(
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=20, description="next_cursor of the previous page")] = None,
    action: Annotated[str | None, Query(max_length=60)] = None,
    outcome: Annotated[str | None, Query(pattern="^(success|failure)$")] = None,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    target_id: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[
        UtcDateTime | None, Query(description="Only events at or after this time (ISO 8601; UTC if no offset).")
    ] = None,
) -> AuditPage:
    return await services.audit.list(
        principal,
        ctx,
        limit=limit,
        cursor=cursor,
        action=action,
        outcome=outcome,
        actor=actor,
        target_id=target_id,
        since=since,
    )


@router.get(
    "/activity",
    response_model=ActivityOut,
    summary="Token issuance and denials of your tenant per hour, and its busiest agents",
    openapi_extra=runs("audit.activity"),
)
async def activity(
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
    hours: Annotated[int, Query(ge=1, le=168, description="How many hours back, this one included.")] = 24,
) -> ActivityOut:
    return await services.audit.activity(principal, ctx, hours=hours)
