"""Resource servers a tenant registers (issue 14 item 1; RFC 8707): third-party APIs, MCP servers and CLIs that
accept its agents' tokens. Each has a resource identifier (an absolute URI without fragment, RFC 8707 section 2;
unique across tenants, since a token's ``aud`` must name one server), the scopes it defines and who may obtain
tokens for it. The token path reads them through ``issuer/audience.py``.

Management is the tenant root's (``root_only`` operations); each write is one plan on the general write path,
with its audit event, and drops the server from this process's token-path cache.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentauth.errors import Conflict, InvalidRequest, InvalidTarget, NotFound
from agentauth.issuer import audit
from agentauth.issuer.audience import check_identifier
from agentauth.issuer.authorization import Authorizer, use_case
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore, new_id
from agentauth.issuer.resource_server_schemas import (
    ResourceServerChange,
    ResourceServerIn,
    ResourceServerOut,
    ResourceServerPage,
)
from agentauth.storage import resource_servers as repo
from agentauth.storage.models import AuditEventRow
from agentauth.storage.ports import Insert, WritePlan
from agentauth.storage.records import ResourceServer

MAX_SERVERS_PER_TENANT = 1_000
NO_SUCH_SERVER = "no such resource server in your tenant"


def server_out(server: ResourceServer) -> ResourceServerOut:
    return ResourceServerOut(
        id=server.id,
        tenant_id=server.tenant_id,
        identifier=server.identifier,
        name=server.name,
        kind=server.kind,
        scopes=[{"name": n, "description": d} for n, d in server.scopes],
        access=server.access,
        allowed_tenants=list(server.allowed_tenants),
        created_at=server.created_at,
        updated_at=server.updated_at,
    )


class ResourceServerService:
    def __init__(self, core: IssuerCore, authz: Authorizer) -> None:
        self.core = core
        self.authz = authz

    @use_case("resource_servers.create")
    async def create(self, principal: Principal, body: ResourceServerIn, ctx: RequestContext) -> ResourceServerOut:
        try:
            identifier = check_identifier(body.identifier)
        except InvalidTarget as exc:
            raise InvalidRequest(f"identifier: {exc.description}") from exc
        if identifier in self.core.audience.own:
            raise InvalidRequest("identifier: AgentAuth's own API is not a resource server you can register")
        now = self.core.clock()
        server = self._record(new_id("rs"), principal.tenant_id, identifier, body, now, now)
        event = self._event(principal, ctx, now, "resource_server.created", server)
        full = Conflict(f"a tenant has at most {MAX_SERVERS_PER_TENANT} resource servers")
        try:
            await self.core.ports.writes.run(
                WritePlan((
                    repo.below_limit(server.tenant_id, MAX_SERVERS_PER_TENANT, full),
                    repo.insert(server),
                    Insert.of(AuditEventRow.__table__, event),
                ))
            )  # fmt: skip
        except Conflict as exc:
            if exc is full:
                raise
            raise Conflict("a resource server with this identifier is already registered") from exc
        self.core.audience.forget(identifier)
        return server_out(server)

    @use_case("resource_servers.list")
    async def list(
        self, principal: Principal, ctx: RequestContext, limit: int = 50, offset: int = 0
    ) -> ResourceServerPage:
        count, rows = await self.core.ports.reads.fetch(*repo.page(principal.tenant_id, limit, offset))
        return ResourceServerPage(items=[server_out(s) for s in repo.records(rows)], total=int(count[0][0]))

    @use_case("resource_servers.get")
    async def get(self, principal: Principal, server_id: str, ctx: RequestContext) -> ResourceServerOut:
        return server_out(await self._find(principal, server_id))

    @use_case("resource_servers.update")
    async def update(
        self, principal: Principal, server_id: str, body: ResourceServerChange, ctx: RequestContext
    ) -> ResourceServerOut:
        """Replace what may change (every field but the identifier; what is left out takes its default)."""
        old = await self._find(principal, server_id)
        now = self.core.clock()
        server = self._record(old.id, old.tenant_id, old.identifier, body, old.created_at, now)
        event = self._event(principal, ctx, now, "resource_server.updated", server)
        missing = NotFound(NO_SUCH_SERVER)
        await self.core.ports.writes.run(
            WritePlan((repo.change(server, missing), Insert.of(AuditEventRow.__table__, event)))
        )
        self.core.audience.forget(server.identifier)
        return server_out(server)

    @use_case("resource_servers.delete")
    async def delete(self, principal: Principal, server_id: str, ctx: RequestContext) -> None:
        """Tokens already issued for it stay valid until they expire; none is issued for it from now on."""
        old = await self._find(principal, server_id)
        now = self.core.clock()
        event = self._event(principal, ctx, now, "resource_server.deleted", old)
        missing = NotFound(NO_SUCH_SERVER)
        await self.core.ports.writes.run(
            WritePlan((repo.remove(old.tenant_id, old.id, missing), Insert.of(AuditEventRow.__table__, event)))
        )
        self.core.audience.forget(old.identifier)

    async def _find(self, principal: Principal, server_id: str) -> ResourceServer:
        (rows,) = await self.core.ports.reads.fetch(repo.of_tenant(principal.tenant_id, server_id))
        if not rows:
            raise NotFound(NO_SUCH_SERVER)
        return repo.records(rows)[0]

    @staticmethod
    def _record(
        server_id: str, tenant_id: str, identifier: str, body: ResourceServerChange, created: datetime, now: datetime
    ) -> ResourceServer:
        names = [s.name for s in body.scopes]
        if len(set(names)) != len(names):
            raise InvalidRequest("scopes: each scope name once")
        if body.access != "tenants" and body.allowed_tenants:
            raise InvalidRequest("allowed_tenants is only for access=tenants")
        if body.access == "tenants" and not body.allowed_tenants:
            raise InvalidRequest("access=tenants needs allowed_tenants")
        return ResourceServer(
            id=server_id, tenant_id=tenant_id, identifier=identifier, name=body.name, kind=body.kind,
            scopes=tuple((s.name, s.description) for s in body.scopes), access=body.access,
            allowed_tenants=tuple(dict.fromkeys(body.allowed_tenants)), created_at=created, updated_at=now,
        )  # fmt: skip

    @staticmethod
    def _event(
        principal: Principal, ctx: RequestContext, now: datetime, action: str, server: ResourceServer
    ) -> dict[str, Any]:
        return audit.event(
            ctx, now, action=action, tenant_id=principal.tenant_id, actor=principal.acting.id,
            target_type="resource_server", target_id=server.id,
            details={"identifier": server.identifier, "access": server.access},
        )  # fmt: skip
