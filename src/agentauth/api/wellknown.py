"""Discovery: RFC 8414 metadata, RFC 9728 protected-resource metadata, JWKS (RFC 7517 section 5), the issuer's
DID document (did:web) and the agent configuration document (what the MCP ``discover`` tool returns)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from agentauth import __version__
from agentauth.api.deps import ServicesDep
from agentauth.bootstrap import Services
from agentauth.issuer.scopes import AGENT_TYPES, SCOPES, TRUST_LEVELS
from agentauth.issuer.tokens import GRANT_TYPES
from agentauth.vc import ALLOWED_ALGORITHMS

router = APIRouter(tags=["discovery"])

_CACHE = {"Cache-Control": "public, max-age=300"}


def endpoints(base: str) -> dict[str, str]:
    return {
        "token_endpoint": f"{base}/api/v1/auth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "did_document": f"{base}/.well-known/did.json",
        "agents_endpoint": f"{base}/api/v1/agents",
        "quickstart_endpoint": f"{base}/api/v1/agents/quickstart",
        "credentials_endpoint": f"{base}/api/v1/credentials",
        "delegations_endpoint": f"{base}/api/v1/delegations",
        "policies_endpoint": f"{base}/api/v1/policies",
        "evaluate_endpoint": f"{base}/api/v1/policies/evaluate",
        "introspection_endpoint": f"{base}/api/v1/auth/introspect",
        "revocation_endpoint": f"{base}/api/v1/auth/revoke",
        "audit_endpoint": f"{base}/api/v1/audit/events",
        "status_lists_endpoint": f"{base}/api/v1/status-lists",
        "openapi": f"{base}/openapi.json",
        "docs": f"{base}/docs",
    }


def agent_configuration(services: Services) -> dict[str, Any]:
    s = services.settings
    return {
        "issuer": s.issuer_url,
        "issuer_did": services.issuer_did,
        "service": "AgentAuth",
        "version": __version__,
        "grant_types_supported": list(GRANT_TYPES),
        "scopes": [{"name": name, "description": text} for name, text in SCOPES.items()],
        "token_lifetimes": {
            "access_token_seconds": s.access_token_ttl_seconds,
            "refresh_token_seconds": s.refresh_token_ttl_seconds,
            "identity_credential_seconds": s.identity_credential_ttl_seconds,
        },
        "agent_types": list(AGENT_TYPES),
        "trust_levels": list(TRUST_LEVELS),
        "registration": s.registration,
        "signing_algorithms": sorted(ALLOWED_ALGORITHMS),
        "credential_formats": ["jwt_vc_json (VCDM 1.1)", "at+jwt (RFC 9068)"],
        "endpoints": endpoints(s.issuer_url),
    }


@router.get("/health", tags=["meta"], summary="Liveness: the process is up and its key ring is loaded")
async def health(services: ServicesDep) -> dict[str, Any]:
    return {"status": "ok", "issuer": services.settings.issuer_url, "active_kid": services.keys.ring.active.kid}


@router.get("/.well-known/jwks.json", summary="Issuer public keys (next, active, retired)")
async def jwks(services: ServicesDep) -> JSONResponse:
    return JSONResponse(services.jwks(), headers=_CACHE)


@router.get("/.well-known/did.json", summary="Issuer DID document (did:web)")
async def did_document(services: ServicesDep) -> JSONResponse:
    return JSONResponse(services.did_document(), media_type="application/did+json", headers=_CACHE)


@router.get("/.well-known/oauth-authorization-server", summary="RFC 8414 authorization server metadata")
async def oauth_metadata(services: ServicesDep) -> JSONResponse:
    base = services.settings.issuer_url
    metadata = {
        # RFC 8414 section 3.3: the issuer value "MUST be identical to the issuer identifier" used to fetch it.
        "issuer": base,
        "token_endpoint": f"{base}/api/v1/auth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "introspection_endpoint": f"{base}/api/v1/auth/introspect",
        "revocation_endpoint": f"{base}/api/v1/auth/revoke",
        "registration_endpoint": f"{base}/api/v1/agents/quickstart",
        "scopes_supported": list(SCOPES),
        "response_types_supported": [],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": sorted(ALLOWED_ALGORITHMS),
        "service_documentation": f"{base}/docs",
    }
    return JSONResponse(metadata, headers=_CACHE)


@router.get("/.well-known/oauth-protected-resource", summary="RFC 9728 protected resource metadata")
async def protected_resource(services: ServicesDep) -> JSONResponse:
    base = services.settings.issuer_url
    return JSONResponse(
        {
            "resource": base,
            "authorization_servers": [base],
            "scopes_supported": list(SCOPES),
            "bearer_methods_supported": ["header"],
            "resource_signing_alg_values_supported": sorted(ALLOWED_ALGORITHMS),
        },
        headers=_CACHE,
    )


@router.get("/.well-known/agent-configuration", summary="Capabilities, scopes, lifetimes and endpoints")
async def agent_config(services: ServicesDep) -> JSONResponse:
    return JSONResponse(agent_configuration(services), headers=_CACHE)
