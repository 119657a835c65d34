"""Request-scoped dependencies: the services, the request context and the authenticated principal."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agentauth.bootstrap import Services
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.operations import OPENAPI_EXTENSION, operation

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
    """The caller, authenticated by its access token: ``Bearer``, or ``DPoP`` with its proof (RFC 9449 section
    7; ``credentials`` only documents the scheme in OpenAPI). Authorization is the use case's own (``use_case``)."""
    services: Services = request.app.state.services
    return await principal_of(request, services)


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, read exactly as ``HTTPBearer(auto_error=False)`` reads
    it for ``get_principal`` (so a direct route and its FastAPI route accept the same headers)."""
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if not scheme or not token or scheme.lower() != "bearer":
        return None
    return token


async def principal_of(request: Request, services: Services) -> Principal:
    """``get_principal`` for a direct route (``api/direct.py``)."""
    authorization = request.headers.get("authorization")
    if authorization is None or authorization[:5].lower() != "dpop ":
        return await services.tokens.authenticate_bearer(bearer_token(request))
    proofs = request.headers.getlist("dpop")
    return await services.tokens.authenticate_request(authorization, proofs, request.method, request.url.path)


def runs(name: str) -> dict[str, Any]:
    """``@router.get(..., openapi_extra=runs("agents.get"))``: the route runs that operation's use case. Only a
    description (the use case authorizes itself: ``issuer/authorization.py``); the REST-backed MCP backend finds
    the route of an operation by it (``OPENAPI_EXTENSION``), and a test checks it against what the use case
    authorizes."""
    op = operation(name)
    return {OPENAPI_EXTENSION: {"name": op.name, "action": op.action, "scopes": list(op.scopes)}}


ServicesDep = Annotated[Services, Depends(get_services)]
ContextDep = Annotated[RequestContext, Depends(get_context)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
