"""``/api/v1/policies``: policy CRUD and ``/evaluate`` (check_permission, a dry run)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import JSONResponse, Response

from agentauth.api.deps import ContextDep, PrincipalDep, ServicesDep, principal_of, request_context, runs
from agentauth.api.direct import DirectRoute, json_body
from agentauth.bootstrap import Services
from agentauth.issuer.schemas import EvaluateRequest, EvaluateResponse, PolicyIn, PolicyOut, PolicyPage

router = APIRouter(prefix="/api/v1/policies", tags=["policies"])
PolicyId = Annotated[str, Path(min_length=1, max_length=64, description="Policy id (pol_...)")]


@router.post(
    "/evaluate",
    response_model=EvaluateResponse,
    summary="check_permission: may this agent do this action on this resource? Changes nothing",
    openapi_extra=runs("policies.evaluate"),
)
async def evaluate(
    body: EvaluateRequest,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> EvaluateResponse:
    return await services.policies.evaluate(principal, body, ctx)


async def evaluate_direct(request: Request) -> Response | None:
    body = await json_body(request, EvaluateRequest)
    if body is None:
        return None
    services: Services = request.app.state.services
    principal = await principal_of(request, services)
    result = await services.policies.evaluate(principal, body, request_context(request))
    return JSONResponse(result.model_dump(mode="json", by_alias=True))  # what the response_model gives


@router.post(
    "",
    response_model=PolicyOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a policy",
    openapi_extra=runs("policies.create"),
)
async def create_policy(
    body: PolicyIn,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> JSONResponse:
    created = await services.policies.create(principal, body, ctx)
    return JSONResponse(created.model_dump(mode="json"), status_code=201)


@router.get(
    "",
    response_model=PolicyPage,
    summary="Your tenant's policies, highest priority first",
    openapi_extra=runs("policies.list"),
)
async def list_policies(principal: PrincipalDep, services: ServicesDep, ctx: ContextDep) -> PolicyPage:
    return await services.policies.list(principal, ctx)


@router.get("/{policy_id}", response_model=PolicyOut, summary="Get a policy", openapi_extra=runs("policies.get"))
async def get_policy(policy_id: PolicyId, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep) -> PolicyOut:
    return await services.policies.get(principal, policy_id, ctx)


@router.put(
    "/{policy_id}", response_model=PolicyOut, summary="Replace a policy", openapi_extra=runs("policies.replace")
)
async def replace_policy(
    policy_id: PolicyId,
    body: PolicyIn,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> PolicyOut:
    return await services.policies.replace(principal, policy_id, body, ctx)


@router.delete(
    "/{policy_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a policy",
    openapi_extra=runs("policies.delete"),
)
async def delete_policy(
    policy_id: PolicyId,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> Response:
    await services.policies.delete(principal, policy_id, ctx)
    return Response(status_code=204)


# check_permission, a sixth of bench/load.py's mix, without FastAPI's routing and dependencies (``api/direct.py``).
DIRECT = (DirectRoute("POST", "/api/v1/policies/evaluate", evaluate_direct),)
