"""Request-scoped dependencies: the services, the request context and the authenticated principal."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agentauth.bootstrap import Services
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.operations import operation

_bearer = HTTPBearer(auto_error=False, description="An AgentAuth access token.")


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def request_context(request: Request) -> RequestContext:
    request_id = getattr(request.state, "request_id", None)
    ip = request.client.host if request.client else None
    return RequestContext(request_id=request_id, ip=ip) if request_id else RequestContext(ip=ip)


async def get_context(request: Request) -> RequestContext:
    return request_context(request)


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, authenticated by its bearer token. Authorization is the operation's (``authorized``)."""
    services: Services = request.app.state.services
    return await services.tokens.authenticate_bearer(credentials.credentials if credentials else None)


class Authorized:
    """The principal of a route that runs one operation (``issuer/operations.py``): authenticated, then
    authorized through the policy engine for that operation's action on its resource, the route's path
    parameters filling the resource template. Every authenticated route declares exactly one (a test walks the
    route table), so twins such as ``DELETE /agents/{id}`` and ``POST /agents/{id}/deactivate`` are one
    operation with one action."""

    def __init__(self, name: str) -> None:
        self.operation = operation(name)

    async def __call__(self, request: Request, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        services: Services = request.app.state.services
        ids = {name: str(request.path_params[name]) for name in self.operation.params}
        ip = request.client.host if request.client else None
        await services.policies.authorize(principal, self.operation, ids, ip)
        return principal


def authorized(name: str) -> Any:
    """``principal: Annotated[Principal, authorized("agents.get")]``: the route runs operation ``name``."""
    return Depends(Authorized(name))


ServicesDep = Annotated[Services, Depends(get_services)]
ContextDep = Annotated[RequestContext, Depends(get_context)]
