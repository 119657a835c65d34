"""Reading the audit log: a tenant's own events, newest first, with filters and an opaque cursor."""

from __future__ import annotations

from datetime import UTC, datetime

from agentauth.errors import InvalidRequest
from agentauth.issuer.agents import MAX_PAGE
from agentauth.issuer.authorization import Authorizer, use_case
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.schemas import AuditEventOut, AuditPage
from agentauth.storage import agents as agents_repo
from agentauth.storage import audit as audit_repo


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
