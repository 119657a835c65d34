"""Request-scoped dependencies: the services, the request context and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agentauth.bootstrap import Services
from agentauth.issuer.context import Principal, RequestContext

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
    services: Services = request.app.state.services
    principal = await services.tokens.authenticate_bearer(credentials.credentials if credentials else None)
    # Every authenticated route authorizes through the policy engine (scopes allow, deny policies override).
    ip = request.client.host if request.client else None
    await services.policies.authorize_route(principal, request.method, request.url.path, ip)
    return principal


ServicesDep = Annotated[Services, Depends(get_services)]
ContextDep = Annotated[RequestContext, Depends(get_context)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
