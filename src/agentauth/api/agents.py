"""``/api/v1/agents``: quickstart, child agents, get, list, update, deactivate, DID documents."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import JSONResponse, Response

from agentauth import paths
from agentauth.api.deps import ContextDep, PrincipalDep, ServicesDep, principal_of, request_context, runs
from agentauth.api.direct import DirectRoute, json_body
from agentauth.api.encoding import model_json
from agentauth.api.ratelimits import limit_quickstart
from agentauth.bootstrap import Services
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

router = APIRouter(prefix=paths.AGENTS, tags=["agents"])
AGENT_ID_MAX = 64
AgentId = Annotated[str, Path(min_length=1, max_length=AGENT_ID_MAX, description="Agent id (agt_...)")]
PAGE_LIMIT_MAX = 100
PAGE_OFFSET_MAX = 1_000_000_000


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


async def quickstart_direct(request: Request) -> Response | None:
    body = await json_body(request, QuickstartRequest)
    if body is None:
        return None
    return await quickstart(body, request.app.state.services, request_context(request))


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
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = 50,
    offset: Annotated[int, Query(ge=0, le=PAGE_OFFSET_MAX)] = 0,
) -> Response:
    # The model is built by the use case and serialized once, from its fields (``api/encoding.py``): FastAPI's
    # response_model path would validate it a second time and encode it through jsonable_encoder (measured:
    # a fifth of this route's server time under bench/read.py). ``response_model`` stays for OpenAPI.
    page = await services.agents.list(principal, limit, offset, ctx)
    return Response(model_json(page), media_type="application/json")


@router.get(
    "/{agent_id}", response_model=AgentOut, summary="Get an agent of your subtree", openapi_extra=runs("agents.get")
)
async def get_agent(agent_id: AgentId, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep) -> Response:
    # Serialized once, as list_agents is.
    agent = await services.agents.get(principal, agent_id, ctx)
    return Response(model_json(agent), media_type="application/json")


def page_query(query_string: bytes) -> tuple[int, int] | None:
    """(limit, offset) of a plain query (absent, or canonical decimal numbers within bounds), else None: FastAPI
    validates the rest and gives its own answer."""
    values = {"limit": 50, "offset": 0}
    seen = set()
    for name, raw in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True) if query_string else ():
        if name not in values or name in seen or not raw.isascii() or not raw.isdigit():
            return None
        if len(raw) > 1 and raw[0] == "0":
            return None
        seen.add(name)
        values[name] = int(raw)
    if not (1 <= values["limit"] <= PAGE_LIMIT_MAX and 0 <= values["offset"] <= PAGE_OFFSET_MAX):
        return None
    return values["limit"], values["offset"]


async def list_agents_direct(request: Request) -> Response | None:
    page = page_query(request.scope.get("query_string", b""))
    if page is None:
        return None
    services: Services = request.app.state.services
    principal = await principal_of(request, services)
    return await list_agents(principal, services, request_context(request), *page)


async def get_agent_direct(request: Request) -> Response | None:
    agent_id: str = request.path_params["agent_id"]
    if len(agent_id) > AGENT_ID_MAX:
        return None
    services: Services = request.app.state.services
    principal = await principal_of(request, services)
    return await get_agent(agent_id, principal, services, request_context(request))


# The two reads every agent makes most, and registration, answered without FastAPI's routing and dependencies
# (``api/direct.py``).
DIRECT = (
    DirectRoute("GET", paths.AGENTS, list_agents_direct),
    DirectRoute("GET", paths.AGENTS + "/{agent_id}", get_agent_direct),
    DirectRoute("POST", paths.AGENTS + "/quickstart", quickstart_direct),
)


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


@router.post(
    "/{agent_id}/suspend",
    response_model=AgentOut,
    summary="Suspend an agent and its subtree, reversibly (the kill switch's first step)",
    openapi_extra=runs("agents.suspend"),
)
async def suspend_agent(
    agent_id: AgentId,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> AgentOut:
    """Nothing of the subtree authenticates or verifies any more - here at once, and for offline verifiers once
    they refetch the status lists (each credential's suspension bit is set) - but nothing is revoked: keys, refresh
    tokens and delegations come back with ``/resume``. 409 for a deactivated agent."""
    return await services.agents.suspend(principal, agent_id, ctx)


@router.post(
    "/{agent_id}/resume",
    response_model=AgentOut,
    summary="Resume a suspended agent and every suspended agent below it",
    openapi_extra=runs("agents.resume"),
)
async def resume_agent(
    agent_id: AgentId,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> AgentOut:
    """The suspension bits are cleared (agents still suspended elsewhere keep theirs). 409 unless the agent is the
    top of a suspension: suspended, with a parent that is not."""
    return await services.agents.resume(principal, agent_id, ctx)


@router.get("/{agent_id}/did.json", summary="The agent's did:key DID document (public)")
async def agent_did_document(agent_id: AgentId, services: ServicesDep) -> JSONResponse:
    document: dict[str, Any] = await services.agents.did_document(agent_id)
    return JSONResponse(document, media_type="application/did+json")
