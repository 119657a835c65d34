"""The discovery documents: RFC 8414 authorization server metadata, RFC 9728 protected resource metadata and
the agent configuration document (capabilities, scopes, lifetimes and endpoint URLs).

The agent configuration is served at ``/.well-known/agent-configuration`` and returned by the MCP ``discover``
tool; built here, below both adapters, so REST and MCP answer with the same documents. Endpoint URLs are handed in
(the REST adapter's layout, ``agentauth.paths``, through ``bootstrap``); grant and response types are the grant
registry's, so a grant registered there is advertised without another edit.
"""

from __future__ import annotations

from typing import Any

from agentauth import __version__
from agentauth.issuer.approvals import GRANT_CIBA
from agentauth.issuer.approvals import authorization_details_types as settings_types
from agentauth.issuer.grants import GRANTS, GrantRegistry
from agentauth.issuer.scopes import AGENT_TYPES, SCOPES, TRUST_LEVELS
from agentauth.settings import Settings
from agentauth.vc import ALLOWED_ALGORITHMS
from agentauth.vc.dpop import SIGNING_ALGORITHMS as DPOP_ALGORITHMS

# RFC 8414 section 2 / RFC 7591 section 2: how a client may authenticate at the token endpoint.
# ``client_secret_*``: an agent's API key (client_id = the agent id) or a registered client's secret; ``none``:
# public clients of the authorization code grant, whose proof is PKCE; ``private_key_jwt``: an assertion signed by
# the agent's own did:key (RFC 7523 section 2.2).
TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
# RFC 7636 section 4.2: only S256; "plain" would let whoever sees the authorization request redeem the code.
CODE_CHALLENGE_METHODS = ("S256",)


def authorization_server_metadata(
    settings: Settings, endpoints: dict[str, str], scopes: list[str], grants: GrantRegistry = GRANTS
) -> dict[str, Any]:
    """RFC 8414 section 2, with RFC 9207's ``authorization_response_iss_parameter_supported`` and the Client ID
    Metadata Document draft's ``client_id_metadata_document_supported``."""
    response_types = list(grants.response_types)
    metadata: dict[str, Any] = {
        # Section 3.3: "MUST be identical to the issuer identifier" the metadata URL was built from.
        "issuer": settings.issuer_url,
        "token_endpoint": endpoints["token_endpoint"],
        "jwks_uri": endpoints["jwks_uri"],
        "introspection_endpoint": endpoints["introspection_endpoint"],
        "revocation_endpoint": endpoints["revocation_endpoint"],
        "scopes_supported": scopes,
        "response_types_supported": response_types,
        "grant_types_supported": list(grants.grant_types),
        "token_endpoint_auth_methods_supported": list(TOKEN_ENDPOINT_AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": sorted(ALLOWED_ALGORITHMS),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "bearer"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "bearer"],
        "service_documentation": endpoints["docs"],
        # RFC 9449 section 5.1: the token endpoint binds tokens to DPoP proofs of these algorithms.
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
    }
    if response_types:
        metadata |= {
            "authorization_endpoint": endpoints["authorization_endpoint"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": list(CODE_CHALLENGE_METHODS),
            "authorization_response_iss_parameter_supported": True,
        }
    if GRANT_CIBA in grants.grant_types:
        # OpenID CIBA Core section 4 and RFC 9396 section 10.
        metadata |= {
            "backchannel_authentication_endpoint": endpoints["backchannel_authentication_endpoint"],
            "backchannel_token_delivery_modes_supported": ["poll", "ping"],
            "backchannel_user_code_parameter_supported": False,
            "authorization_details_types_supported": list(settings_types(settings)),
        }
    if settings.registration != "closed":
        metadata["registration_endpoint"] = endpoints["registration_endpoint"]
    metadata["client_id_metadata_document_supported"] = True
    return metadata


def protected_resource_metadata(
    settings: Settings, resource: str, name: str, scopes: list[str], docs: str
) -> dict[str, Any]:
    """RFC 9728 section 2 for one of AgentAuth's own resources (its REST API, its MCP server)."""
    return {
        "resource": resource,
        "resource_name": name,
        "authorization_servers": [settings.issuer_url],
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_signing_alg_values_supported": sorted(ALLOWED_ALGORITHMS),
        "resource_documentation": docs,
        # Both take DPoP-bound tokens (with a proof) and bearer tokens; which an agent gets is its own setting.
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
        "dpop_bound_access_tokens_required": False,
    }


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
