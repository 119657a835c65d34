"""``/api/v1/agents``: quickstart, child agents, get, list, update, deactivate, DID documents."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse, Response

from agentauth.api.deps import ContextDep, PrincipalDep, ServicesDep, runs
from agentauth.api.ratelimits import limit_quickstart
from agentauth.issuer.schemas import (
    AgentCreated,
    AgentOut,
    AgentPage,
    CreateAgentRequest,
    QuickstartRequest,
    QuickstartResponse,
    UpdateAgentRequest,
)
from agentauth.issuer.secrets import NO_STORE

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])
AgentId = Annotated[str, Path(min_length=1, max_length=64, description="Agent id (agt_...)")]


@router.post(
    "/quickstart",
    response_model=QuickstartResponse,
    status_code=status.HTTP_201_CREATED,
    summary="Register a root agent: did:key, identity credential, API key and tokens in one call",
)
async def quickstart(body: QuickstartRequest, services: ServicesDep, ctx: ContextDep) -> JSONResponse:
    await limit_quickstart(services, ctx)
    result = await services.agents.quickstart(body, ctx)
    return JSONResponse(result.model_dump(mode="json"), status_code=201, headers=NO_STORE)


@router.post(
    "",
    response_model=AgentCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create a child agent",
    openapi_extra=runs("agents.create"),
)
async def create_agent(
    body: CreateAgentRequest,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> JSONResponse:
    result = await services.agents.create_child(principal, body, ctx)
    return JSONResponse(result.model_dump(mode="json"), status_code=201, headers=NO_STORE)


@router.get("", response_model=AgentPage, summary="List the agents of your subtree", openapi_extra=runs("agents.list"))
async def list_agents(
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> Response:
    # The model is built by the use case and serialized once, by pydantic's own encoder: FastAPI's
    # response_model path would validate it a second time and encode it through jsonable_encoder (measured:
    # a fifth of this route's server time under bench/read.py). ``response_model`` stays for OpenAPI.
    page = await services.agents.list(principal, limit, offset, ctx)
    return Response(page.model_dump_json(), media_type="application/json")


@router.get(
    "/{agent_id}", response_model=AgentOut, summary="Get an agent of your subtree", openapi_extra=runs("agents.get")
)
async def get_agent(agent_id: AgentId, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep) -> AgentOut:
    return await services.agents.get(principal, agent_id, ctx)


@router.patch(
    "/{agent_id}",
    response_model=AgentOut,
    summary="Update name, description or trust level",
    openapi_extra=runs("agents.update"),
)
async def update_agent(
    agent_id: AgentId,
    body: UpdateAgentRequest,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> AgentOut:
    return await services.agents.update(principal, agent_id, body, ctx)


@router.delete(
    "/{agent_id}",
    response_model=AgentOut,
    summary="Deactivate an agent and its subtree, revoking all they hold",
    openapi_extra=runs("agents.deactivate"),
)
async def deactivate_agent(
    agent_id: AgentId,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> AgentOut:
    return await services.agents.deactivate(principal, agent_id, ctx)


@router.post(
    "/{agent_id}/deactivate",
    response_model=AgentOut,
    summary="Deactivate (same as DELETE)",
    openapi_extra=runs("agents.deactivate"),
)
async def deactivate_agent_post(
    agent_id: AgentId,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> AgentOut:
    return await services.agents.deactivate(principal, agent_id, ctx)


@router.get("/{agent_id}/did.json", summary="The agent's did:key DID document (public)")
async def agent_did_document(agent_id: AgentId, services: ServicesDep) -> JSONResponse:
    document: dict[str, Any] = await services.agents.did_document(agent_id)
    return JSONResponse(document, media_type="application/did+json")
