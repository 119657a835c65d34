"""Discovery: RFC 8414 metadata, RFC 9728 protected-resource metadata, JWKS (RFC 7517 section 5), the issuer's
DID document (did:web) and the agent configuration document (what the MCP ``discover`` tool returns)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from agentauth import paths
from agentauth.api.deps import ServicesDep
from agentauth.bootstrap import Services

router = APIRouter(tags=["discovery"])

_CACHE = {"Cache-Control": "public, max-age=300"}
_NO_STORE = {"Cache-Control": "no-store"}


def agent_configuration(services: Services) -> dict[str, Any]:
    return services.agent_configuration()


@router.get("/health", tags=["meta"], summary="Liveness: the process is up and its key ring is loaded")
async def health(services: ServicesDep) -> dict[str, Any]:
    return {"status": "ok", "issuer": services.settings.issuer_url, "active_kid": services.keys.ring.active.kid}


@router.get(
    "/ready",
    tags=["meta"],
    summary="Readiness: the database answers and the key ring has an active key",
    description="200 while this process can serve; 503 `temporarily_unavailable` with `Retry-After` while its "
    "database does not answer. Reads one trivial query, writes nothing. `/health` is liveness only.",
    responses={503: {"description": "Not ready: RFC 6749-style error body, Retry-After"}},
)
async def ready(services: ServicesDep) -> JSONResponse:
    kid = await services.ready()
    return JSONResponse({"status": "ready", "database": "ok", "active_kid": kid}, headers=_NO_STORE)


@router.get(paths.JWKS, summary="Issuer public keys (next, active, retired)")
async def jwks(services: ServicesDep) -> JSONResponse:
    return JSONResponse(services.jwks(), headers=_CACHE)


@router.get(paths.DID_DOCUMENT, summary="Issuer DID document (did:web)")
async def did_document(services: ServicesDep) -> JSONResponse:
    return JSONResponse(services.did_document(), media_type="application/did+json", headers=_CACHE)


@router.get("/.well-known/oauth-authorization-server", summary="RFC 8414 authorization server metadata")
async def oauth_metadata(services: ServicesDep) -> JSONResponse:
    return JSONResponse(services.authorization_server_metadata(), headers=_CACHE)


@router.get("/.well-known/oauth-protected-resource", summary="RFC 9728 protected resource metadata (REST API)")
async def protected_resource(services: ServicesDep) -> JSONResponse:
    base = services.settings.issuer_url
    return JSONResponse(services.protected_resource_metadata(base, "AgentAuth REST API"), headers=_CACHE)


@router.get(
    "/.well-known/oauth-protected-resource/mcp", summary="RFC 9728 protected resource metadata (MCP server at /mcp)"
)
async def protected_resource_mcp(services: ServicesDep) -> JSONResponse:
    # RFC 9728 section 3.1: metadata of a resource with a path lives at the well-known URI with that path
    # appended, and its "resource" value MUST be identical to the resource identifier.
    resource = f"{services.settings.issuer_url}{paths.MCP}"
    return JSONResponse(services.protected_resource_metadata(resource, "AgentAuth MCP server"), headers=_CACHE)


@router.get("/.well-known/agent-configuration", summary="Capabilities, scopes, lifetimes and endpoints")
async def agent_config(services: ServicesDep) -> JSONResponse:
    return JSONResponse(agent_configuration(services), headers=_CACHE)
