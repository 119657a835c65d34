"""``/api/v1/resource-servers``: the resource servers (APIs, MCP servers, CLIs) a tenant registers, RFC 8707."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse, Response

from agentauth import paths
from agentauth.api.agents import PAGE_LIMIT_MAX, PAGE_OFFSET_MAX
from agentauth.api.deps import ContextDep, PrincipalDep, ServicesDep, runs
from agentauth.issuer.resource_server_schemas import (
    ResourceServerChange,
    ResourceServerIn,
    ResourceServerOut,
    ResourceServerPage,
)

router = APIRouter(prefix=paths.RESOURCE_SERVERS, tags=["resource-servers"])
ServerId = Annotated[str, Path(min_length=1, max_length=64, description="Resource server id (rs_...)")]


@router.post(
    "",
    response_model=ResourceServerOut,
    status_code=status.HTTP_201_CREATED,
    summary="Register a resource server (tenant root only)",
    openapi_extra=runs("resource_servers.create"),
    responses={409: {"description": "identifier already registered"}},
)
async def create_resource_server(
    body: ResourceServerIn, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep
) -> JSONResponse:
    created = await services.resource_servers.create(principal, body, ctx)
    return JSONResponse(created.model_dump(mode="json"), status_code=201)


@router.get(
    "",
    response_model=ResourceServerPage,
    summary="Your tenant's resource servers",
    openapi_extra=runs("resource_servers.list"),
)
async def list_resource_servers(
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = 50,
    offset: Annotated[int, Query(ge=0, le=PAGE_OFFSET_MAX)] = 0,
) -> ResourceServerPage:
    return await services.resource_servers.list(principal, ctx, limit, offset)


@router.get(
    "/{server_id}",
    response_model=ResourceServerOut,
    summary="Get a resource server",
    openapi_extra=runs("resource_servers.get"),
)
async def get_resource_server(
    server_id: ServerId, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep
) -> ResourceServerOut:
    return await services.resource_servers.get(principal, server_id, ctx)


@router.put(
    "/{server_id}",
    response_model=ResourceServerOut,
    summary="Change a resource server (all but its identifier; tenant root only)",
    openapi_extra=runs("resource_servers.update"),
)
async def update_resource_server(
    server_id: ServerId, body: ResourceServerChange, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep
) -> ResourceServerOut:
    return await services.resource_servers.update(principal, server_id, body, ctx)


@router.delete(
    "/{server_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a resource server (tenant root only)",
    openapi_extra=runs("resource_servers.delete"),
)
async def delete_resource_server(
    server_id: ServerId, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep
) -> Response:
    await services.resource_servers.delete(principal, server_id, ctx)
    return Response(status_code=204)
