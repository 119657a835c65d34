"""Reading the audit log: a tenant's own events, newest first, with filters and an opaque cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentauth.errors import InvalidRequest
from agentauth.issuer.agents import MAX_PAGE
from agentauth.issuer.authorization import Authorizer, use_case
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.schemas import ActivityAgent, ActivityHour, ActivityOut, AuditEventOut, AuditPage
from agentauth.storage import agents as agents_repo
from agentauth.storage import audit as audit_repo

ACTIVITY_HOURS_MAX = 168  # a week
_COLUMN = {"token.issued": "issued", "token.refreshed": "refreshed", "token.exchanged": "exchanged",
           "token.denied": "denied"}  # fmt: skip


class AuditService:
    def __init__(self, core: IssuerCore, authz: Authorizer) -> None:
        self.core = core
        self.authz = authz

    @use_case("audit.list")
    async def list(
        self,
        principal: Principal,
        ctx: RequestContext,
        *,
        limit: int = 50,
        cursor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        actor: str | None = None,
        target_id: str | None = None,
        since: datetime | None = None,
    ) -> AuditPage:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")
        before: int | None = None
        if cursor is not None:
            if not cursor.isdecimal() or len(cursor) > 18:
                raise InvalidRequest("cursor is not valid")
            before = int(cursor)
        if outcome is not None and outcome not in ("success", "failure"):
            raise InvalidRequest("outcome must be success or failure")
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)  # a time without offset is read as UTC
        async with self.core.reads() as session:
            # The tenant root sees the whole tenant; any other agent only what its own subtree did.
            subtree = None
            if principal.agent.parent_id is not None:
                subtree = await agents_repo.subtree_ids(session, principal.agent.path)
            events = await audit_repo.list_for_tenant(
                session,
                principal.tenant_id,
                subtree=subtree,
                limit=limit,
                before_id=before,
                action=action,
                outcome=outcome,
                actor=actor,
                target_id=target_id,
                since=since,
            )
        items = [
            AuditEventOut(
                id=e.id,
                actor=e.actor,
                action=e.action,
                target_type=e.target_type,
                target_id=e.target_id,
                outcome=e.outcome,
                reason=e.reason,
                request_id=e.request_id,
                ip=e.ip,
                created_at=e.created_at,
                details=e.details,
            )
            for e in events
        ]
        next_cursor = str(items[-1].id) if len(items) == limit else None
        return AuditPage(items=items, next_cursor=next_cursor)

    @use_case("audit.activity")
    async def activity(self, principal: Principal, ctx: RequestContext, *, hours: int = 24) -> ActivityOut:
        """Token issuance and denials of the caller's tenant (its subtree, below the root) over the last
        ``hours``: a row per hour, oldest first, and the busiest agents."""
        if not 1 <= hours <= ACTIVITY_HOURS_MAX:
            raise InvalidRequest(f"hours must be between 1 and {ACTIVITY_HOURS_MAX}")
        now = self.core.clock()
        start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
        async with self.core.reads() as session:
            subtree = None
            if principal.agent.parent_id is not None:
                subtree = await agents_repo.subtree_ids(session, principal.agent.path)
            per_hour, per_agent = await audit_repo.token_activity(session, principal.tenant_id, start, subtree=subtree)
        rows = [ActivityHour(start=start + timedelta(hours=h)) for h in range(hours)]
        for hour, action, count in per_hour:
            if 0 <= hour < hours:
                setattr(rows[hour], _COLUMN[action], getattr(rows[hour], _COLUMN[action]) + count)
        agents: dict[str, ActivityAgent] = {}
        for actor, action, count in per_agent:
            entry = agents.setdefault(actor, ActivityAgent(agent_id=actor))
            setattr(entry, _COLUMN[action], count)
        ranked = sorted(agents.values(), key=lambda a: (-(a.issued + a.refreshed + a.exchanged + a.denied), a.agent_id))
        return ActivityOut(since=start, hours=rows, agents=ranked)
