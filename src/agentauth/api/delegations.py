"""``/api/v1/delegations``: create, list, get (with its signed credential), chain, revoke (cascading)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import JSONResponse, Response

from agentauth.api.deps import ContextDep, PrincipalDep, ServicesDep, principal_of, request_context, runs
from agentauth.api.direct import DirectRoute, json_body
from agentauth.bootstrap import Services
from agentauth.issuer.schemas import CreateDelegationRequest, DelegationChain, DelegationOut, DelegationPage

router = APIRouter(prefix="/api/v1/delegations", tags=["delegations"])
DelegationId = Annotated[str, Path(min_length=1, max_length=64, description="Delegation id (dlg_...)")]


@router.post(
    "",
    response_model=DelegationOut,
    status_code=status.HTTP_201_CREATED,
    summary="Delegate a subset of your scopes to another agent of your tenant",
    openapi_extra=runs("delegations.create"),
)
async def create_delegation(
    body: CreateDelegationRequest,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> JSONResponse:
    created = await services.delegations.create(principal, body, ctx)
    return JSONResponse(created.model_dump(mode="json"), status_code=201)


async def create_delegation_direct(request: Request) -> Response | None:
    body = await json_body(request, CreateDelegationRequest)
    if body is None:
        return None
    services: Services = request.app.state.services
    return await create_delegation(body, await principal_of(request, services), services, request_context(request))


@router.get(
    "",
    response_model=DelegationPage,
    summary="Delegations you granted or received",
    openapi_extra=runs("delegations.list"),
)
async def list_delegations(
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
    role: Annotated[
        Literal["delegator", "delegate", "subtree"] | None,
        Query(description="delegator / delegate: one side; subtree: every delegation granted in your subtree"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> DelegationPage:
    return await services.delegations.list(principal, role, limit, offset, ctx)


@router.get(
    "/{delegation_id}",
    response_model=DelegationOut,
    summary="A delegation with its signed credential",
    openapi_extra=runs("delegations.get"),
)
async def get_delegation(
    delegation_id: DelegationId, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep
) -> DelegationOut:
    return await services.delegations.get(principal, delegation_id, ctx)


@router.get(
    "/{delegation_id}/chain",
    response_model=DelegationChain,
    summary="The chain, root first",
    openapi_extra=runs("delegations.chain"),
)
async def get_chain(
    delegation_id: DelegationId, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep
) -> DelegationChain:
    return await services.delegations.chain(principal, delegation_id, ctx)


@router.post(
    "/{delegation_id}/revoke",
    response_model=DelegationOut,
    summary="Revoke it, every delegation below it and every token resting on them",
    openapi_extra=runs("delegations.revoke"),
)
async def revoke_delegation(
    delegation_id: DelegationId,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> DelegationOut:
    return await services.delegations.revoke(principal, delegation_id, ctx)


@router.delete(
    "/{delegation_id}",
    response_model=DelegationOut,
    summary="Revoke (same as POST .../revoke)",
    openapi_extra=runs("delegations.revoke"),
)
async def delete_delegation(
    delegation_id: DelegationId,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> DelegationOut:
    return await services.delegations.revoke(principal, delegation_id, ctx)


# Delegating, as busy as revoking in bench/load.py's mix, without FastAPI's routing and dependencies
# (``api/direct.py``).
DIRECT = (DirectRoute("POST", "/api/v1/delegations", create_delegation_direct),)
