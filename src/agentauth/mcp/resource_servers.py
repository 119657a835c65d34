"""The tools of a tenant's resource servers (RFC 8707): register, list, get, update, delete - each one
``Operation``, as in ``policies.py``. Changes are the tenant root's alone."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from agentauth.bootstrap import Services
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.resource_server_schemas import (
    Access,
    ResourceKind,
    ResourceScope,
    ResourceServerChange,
    ResourceServerIn,
    ResourceServerOut,
    ResourceServerPage,
)
from agentauth.mcp.backend import Done, Operation
from agentauth.mcp.base import call
from agentauth.mcp.params import AccessToken, Id, Limit, Offset, read_only, request_model, writes
from agentauth.mcp.registry import tool

SERVER_NOT_FOUND = {
    "not_found": "No such resource server in your tenant: list_resource_servers shows the ids you can use."
}
ServerId = Annotated[Id, Field(description="The resource server's id (rs_...).")]
ServerName = Annotated[str, Field(min_length=1, max_length=200, description="A name for the server.")]
Kind = Annotated[ResourceKind, Field(description="rest (an HTTP API), mcp (an MCP server) or cli.")]
Scopes = Annotated[
    list[ResourceScope] | None,
    Field(description='The scopes it defines: [{"name": "files.read", "description": "Read files"}].'),
]
AccessRule = Annotated[
    Access,
    Field(description="Who may obtain tokens for it: own_tenant (default), any_agent, or tenants (yours + listed)."),
]
AllowedTenants = Annotated[list[str] | None, Field(description="Tenant ids, with access=tenants.")]


class ResourceServerDeleted(BaseModel):
    success: bool = Field(description="True: no token is issued for it any more.")
    server_id: str


def _change(model: type[ResourceServerChange], **fields: Any) -> Any:
    fields["scopes"] = fields["scopes"] or []
    fields["allowed_tenants"] = fields["allowed_tenants"] or []
    return request_model(model, **fields)


@tool(order=31, hints=writes("Register a resource server"), operation="resource_servers.create")
async def register_resource_server(
    identifier: Annotated[
        str, Field(min_length=1, max_length=500, description="Its RFC 8707 identifier: an absolute URI, no fragment.")
    ],
    name: ServerName,
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    kind: Kind = "rest",
    scopes: Scopes = None,
    access: AccessRule = "own_tenant",
    allowed_tenants: AllowedTenants = None,
) -> ResourceServerOut:
    """Register an API, MCP server or CLI of yours that accepts AgentAuth tokens (tenant root only, needs
    resource_servers.write). Agents then ask for tokens with resource=<identifier>: their aud is that identifier
    and their scopes are the ones it defines."""
    body = _change(
        ResourceServerIn, identifier=identifier, name=name, kind=kind, scopes=scopes, access=access,
        allowed_tenants=allowed_tenants,
    )  # fmt: skip
    op = Operation(ResourceServerOut, lambda s, p, rc: s.resource_servers.create(p, body, rc), body=body)
    return await call(ctx, access_token, op)


@tool(order=32, hints=read_only("List resource servers"), operation="resource_servers.list")
async def list_resource_servers(
    ctx: Context[Any, Any], access_token: AccessToken = None, limit: Limit = 50, offset: Offset = 0
) -> ResourceServerPage:
    """List your tenant's resource servers with their identifiers, scopes and access rules, plus total."""
    op = Operation(
        ResourceServerPage,
        lambda s, p, rc: s.resource_servers.list(p, rc, limit, offset),
        query={"limit": limit, "offset": offset},
    )
    return await call(ctx, access_token, op)


@tool(
    order=33,
    hints=read_only("Get a resource server"),
    operation="resource_servers.get",
    next_steps=SERVER_NOT_FOUND,
)
async def get_resource_server(
    server_id: ServerId, ctx: Context[Any, Any], access_token: AccessToken = None
) -> ResourceServerOut:
    """Get one resource server of your tenant."""
    op = Operation(
        ResourceServerOut, lambda s, p, rc: s.resource_servers.get(p, server_id, rc), ids={"server_id": server_id}
    )
    return await call(ctx, access_token, op)


@tool(
    order=34,
    hints=writes("Update a resource server", idempotent=True),
    operation="resource_servers.update",
    next_steps=SERVER_NOT_FOUND,
)
async def update_resource_server(
    server_id: ServerId,
    name: ServerName,
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    kind: Kind = "rest",
    scopes: Scopes = None,
    access: AccessRule = "own_tenant",
    allowed_tenants: AllowedTenants = None,
) -> ResourceServerOut:
    """Replace a resource server's name, kind, scopes and access rule (tenant root only; the identifier never
    changes). What you leave out takes its default."""
    body = _change(
        ResourceServerChange, name=name, kind=kind, scopes=scopes, access=access, allowed_tenants=allowed_tenants
    )
    op = Operation(
        ResourceServerOut,
        lambda s, p, rc: s.resource_servers.update(p, server_id, body, rc),
        ids={"server_id": server_id},
        body=body,
    )
    return await call(ctx, access_token, op)


@tool(
    order=35,
    hints=writes("Delete a resource server", destructive=True),
    operation="resource_servers.delete",
    next_steps=SERVER_NOT_FOUND,
)
async def delete_resource_server(
    server_id: ServerId, ctx: Context[Any, Any], access_token: AccessToken = None
) -> ResourceServerDeleted:
    """Delete a resource server of your tenant (tenant root only): no token is issued for it from now on; tokens
    issued before stay valid until they expire."""

    async def run(s: Services, p: Principal, rc: RequestContext) -> Done:
        await s.resource_servers.delete(p, server_id, rc)
        return Done()

    await call(ctx, access_token, Operation(Done, run, ids={"server_id": server_id}))
    return ResourceServerDeleted(success=True, server_id=server_id)
