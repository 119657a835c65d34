"""The agent configuration document: capabilities, scopes, lifetimes and endpoint URLs.

Served at ``/.well-known/agent-configuration`` and returned by the MCP ``discover`` tool; built here, below both
adapters, so REST and MCP answer with the same document. Its endpoint URLs are handed in (the REST adapter's
layout, ``agentauth.paths``, through ``bootstrap``), its grant types are the grant registry's.
"""

from __future__ import annotations

from typing import Any

from agentauth import __version__
from agentauth.issuer.grants import GRANTS, GrantRegistry
from agentauth.issuer.scopes import AGENT_TYPES, SCOPES, TRUST_LEVELS
from agentauth.settings import Settings
from agentauth.vc import ALLOWED_ALGORITHMS


def agent_configuration(
    settings: Settings, issuer_did: str, endpoints: dict[str, str], grants: GrantRegistry = GRANTS
) -> dict[str, Any]:
    return {
        "issuer": settings.issuer_url,
        "issuer_did": issuer_did,
        "service": "AgentAuth",
        "version": __version__,
        "grant_types_supported": list(grants.grant_types),
        "scopes": [{"name": name, "description": text} for name, text in SCOPES.items()],
        "token_lifetimes": {
            "access_token_seconds": settings.access_token_ttl_seconds,
            "refresh_token_seconds": settings.refresh_token_ttl_seconds,
            "identity_credential_seconds": settings.identity_credential_ttl_seconds,
        },
        "agent_types": list(AGENT_TYPES),
        "trust_levels": list(TRUST_LEVELS),
        "registration": settings.registration,
        "signing_algorithms": sorted(ALLOWED_ALGORITHMS),
        "credential_formats": ["jwt_vc_json (VCDM 1.1)", "at+jwt (RFC 9068)"],
        "endpoints": dict(endpoints),
    }
