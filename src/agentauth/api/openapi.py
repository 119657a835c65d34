"""The OpenAPI document, completed with what FastAPI cannot know: the error answers the app really gives, short
operationIds, tag descriptions, and the models of the answers the token-style routes build by hand.

FastAPI documents 422 for validation errors; this app answers them - like every error - with RFC 6749 JSON
and 400. Each operation here declares what it can answer: 400 and 503 everywhere, 401/403/404 where a
bearer token is needed, 404 with a path id, 409 and 413 on writes, 401 on the unauthenticated grants, 429 where
a rate limit applies.
The token endpoint declares its own 400/401/429 (``TOKEN_ERRORS``): RFC 6749 section 5.2 bodies with the codes
it really sends.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from agentauth import errors, paths
from agentauth.issuer.operations import OPENAPI_EXTENSION

OAUTH_ERROR = {
    "type": "object",
    "description": "Every error answer (RFC 6749 section 5.2): a code to act on and a description to show.",
    "required": ["error", "error_description"],
    "properties": {
        "error": {"type": "string", "description": "RFC 6749 / 6750 / 7009 / 7662 error code"},
        "error_description": {"type": "string"},
    },
    "examples": [{"error": "insufficient_scope", "error_description": "this call needs the scope agents.write"}],
}
DESCRIPTIONS = {
    "400": "Malformed request (invalid_request, invalid_scope, invalid_grant, unsupported_grant_type)",
    "401": "Missing or invalid credentials (invalid_token, invalid_client); see WWW-Authenticate",
    "403": "Authenticated but not allowed (insufficient_scope, access_denied)",
    "404": "No such object in your tenant (not_found)",
    "409": "Conflicts with the object's state (conflict)",
    "413": "Request body too large",
    "429": "Rate limited; see Retry-After",
    "503": "Temporarily unavailable (database); see Retry-After",
}
UNAUTHENTICATED_GRANTS = (paths.TOKEN, paths.QUICKSTART)
# Introspection and revocation with a refresh token alone draw on the token endpoint's per-IP bucket.
RATE_LIMITED = (*UNAUTHENTICATED_GRANTS, paths.INTROSPECT, paths.REVOKE)

# In the order Swagger UI and ReDoc show them; every tag an operation carries is here (a test checks).
TAGS = [
    {"name": "auth", "description": "OAuth 2.0 endpoints: the token endpoint (RFC 6749) with every registered "
     "grant, introspection (RFC 7662), revocation (RFC 7009), dynamic client registration (RFC 7591) and the "
     "authorization endpoint. Form-encoded bodies, as the RFCs define them."},
    {"name": "agents", "description": "The agent registry: quickstart creates a root agent (its own tenant) with "
     "an API key and a first token pair; child agents live in their parent's subtree. An agent's id is its "
     "OAuth `client_id`."},
    {"name": "credentials", "description": "API keys (`ak_live_...`): the client secret of the client "
     "credentials grant. Shown once at creation or rotation; stored as keyed hashes."},
    {"name": "delegations", "description": "Delegation credentials (JWT-VCs): an agent grants another a subset "
     "of its scopes; the delegate exchanges one for a token (RFC 8693 token exchange, `subject_token`)."},
    {"name": "policies", "description": "Allow/deny rules over subjects, actions and resources, and their "
     "evaluation for an agent."},
    {"name": "resource-servers", "description": "APIs other than AgentAuth's own that tokens can be issued for "
     "(RFC 8707 `resource`), with the scopes each defines."},
    {"name": "webhooks", "description": "Your tenant's events POSTed to your URLs, signed per Standard Webhooks "
     "(`webhook-id`, `webhook-timestamp`, `webhook-signature`), retried with backoff, with a delivery log."},
    {"name": "status", "description": "Bitstring Status List credentials: the revocation registry offline "
     "verifiers read."},
    {"name": "audit", "description": "The tenant's audit log."},
    {"name": "discovery", "description": "Metadata documents (RFC 8414, RFC 9728), the JWKS and the issuer's "
     "DID document: everything a verifier needs, unauthenticated and cacheable."},
    {"name": "meta", "description": "Operational endpoints."},
]  # fmt: skip
GUIDE = """

Get a token: `POST /api/v1/agents/quickstart` returns an agent with an API key; send it as `client_secret` to
`POST /api/v1/auth/token` with `grant_type=client_credentials` (the agent's id is its `client_id`, optional
there). Call the API with `Authorization: Bearer <access_token>` (or `DPoP <access_token>` with a DPoP proof,
RFC 9449, for bound tokens). Every error is `{"error": ..., "error_description": ...}` (RFC 6749 section 5.2)."""


class TokenError(BaseModel):
    """RFC 6749 section 5.2 error response of the token endpoint."""

    error: Literal[
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
        "invalid_dpop_proof",
        "use_dpop_nonce",
        "rate_limited",
        "authorization_pending",
        "slow_down",
        "expired_token",
        "access_denied",
    ] = Field(description="RFC 6749 section 5.2 (RFC 8707 invalid_target, RFC 9449 DPoP errors, CIBA section 11)")
    error_description: str = Field(description="Human-readable; safe to show")


# Which codes come with which status, from the exception classes that send them.
TOKEN_400_ERRORS = (
    errors.InvalidRequest, errors.InvalidGrant, errors.UnsupportedGrantType, errors.InvalidScope,
    errors.InvalidTarget, errors.InvalidDPoPProof, errors.UseDPoPNonce, errors.AuthorizationPending,
    errors.SlowDown, errors.ExpiredToken, errors.ApprovalDenied,
)  # fmt: skip


def _codes_of(*classes: type[errors.AgentAuthError]) -> str:
    return ", ".join(c.error for c in classes)


TOKEN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": TokenError,
        "description": f"The request or grant is refused ({_codes_of(*TOKEN_400_ERRORS)}); with use_dpop_nonce, the "
        "nonce to retry with is in DPoP-Nonce",
        "headers": {"DPoP-Nonce": {"description": "RFC 9449 section 8", "schema": {"type": "string"}}},
        "content": {"application/json": {"example": {"error": "invalid_grant", "error_description": "..."}}},
    },
    401: {
        "model": TokenError,
        "description": f"Client authentication failed ({_codes_of(errors.InvalidClient)}): an unknown, revoked or "
        "expired API key, a bad client assertion, or no credential",
        "headers": {"WWW-Authenticate": {"description": 'Basic realm="agentauth"', "schema": {"type": "string"}}},
        "content": {"application/json": {"example": {"error": "invalid_client", "error_description": "..."}}},
    },
    429: {
        "model": TokenError,
        "description": f"Too many token requests from this address or for this client ({errors.RateLimited.error})",
        "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
        "content": {"application/json": {"example": {"error": "rate_limited", "error_description": "..."}}},
    },
}


class BackchannelError(BaseModel):
    """OpenID CIBA Core section 13 error response of the backchannel authentication endpoint."""

    error: Literal[
        "invalid_request", "invalid_client", "invalid_scope", "unknown_user_id", "invalid_binding_message",
        "invalid_authorization_details", "rate_limited",
    ] = Field(description="CIBA section 13 (RFC 9396 invalid_authorization_details)")  # fmt: skip
    error_description: str = Field(description="Human-readable; safe to show")


BACKCHANNEL_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["login_hint"],
                    "properties": {
                        "client_secret": {"type": "string", "description": "The agent's API key (or HTTP Basic)."},
                        "client_id": {"type": "string", "description": "Optional: the agent's id."},
                        "login_hint": {"type": "string", "description": "The email of an owner of the tenant."},
                        "authorization_details": {
                            "type": "string",
                            "description": "RFC 9396: a JSON array of objects, each with a type; shown as asked.",
                        },
                        "binding_message": {"type": "string", "description": "One line shown with the request."},
                        "scope": {"type": "string", "description": "Space-separated scopes the agent holds."},
                        "requested_expiry": {"type": "integer", "description": "Seconds the request may wait."},
                        "single_use": {
                            "type": "string",
                            "enum": ["true", "false"],
                            "description": "AgentAuth: the token carries single_use and is spent at its first use.",
                        },
                        "client_notification_token": {
                            "type": "string",
                            "description": "Ping mode (an agent with backchannel_client_notification_endpoint): "
                            "the bearer token the ping carries; required then, refused in poll mode.",
                        },
                        "client_assertion_type": {
                            "type": "string",
                            "description": "private_key_jwt instead of client_secret: "
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
                        },
                        "client_assertion": {
                            "type": "string",
                            "description": "private_key_jwt: a JWT signed by the agent's did:key (iss = sub = its "
                            "id, aud the issuer or token endpoint, a unique jti).",
                        },
                    },
                },
                "example": {
                    "client_secret": "ak_live_...",
                    "login_hint": "owner@example.com",
                    "binding_message": "Pay invoice 1042",
                    "authorization_details": '[{"type": "payment", "amount": "45.00", "currency": "USD", '
                    '"creditor": "ACME Corp"}]',
                },
            }
        },
    }
}


BACKCHANNEL_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The request is recorded; poll the token endpoint with auth_req_id",
        "content": {
            "application/json": {
                "example": {"auth_req_id": "...", "expires_in": 300, "interval": 5},
                "schema": {
                    "type": "object",
                    "required": ["auth_req_id", "expires_in", "interval"],
                    "properties": {
                        "auth_req_id": {"type": "string"},
                        "expires_in": {"type": "integer"},
                        "interval": {"type": "integer"},
                    },
                },
            }
        },
    },
    400: {"model": BackchannelError, "description": "The request is refused (CIBA section 13)"},
    401: {"model": BackchannelError, "description": "Client authentication failed (invalid_client)"},
    429: {"model": BackchannelError, "description": "Too many requests (rate_limited)"},
}


class IntrospectionResponse(BaseModel):
    """RFC 7662 section 2.2. An inactive token (or one the caller may not see) is only ``{"active": false}``."""

    model_config = ConfigDict(extra="allow")

    active: bool
    scope: str | None = Field(None, description="Space-separated scopes")
    client_id: str | None = Field(None, description="The agent (or OAuth client) the token was issued to")
    sub: str | None = Field(None, description="The agent's DID")
    token_type: str | None = Field(None, description="Bearer, DPoP or refresh_token")
    exp: int | None = None
    iat: int | None = None
    agent_id: str | None = None
    agent_type: str | None = None
    trust_level: str | None = None


# What the routes that authorize no operation are for (the others say what they need: ``_needs``).
ABOUT = {
    "health": "Liveness for orchestrators: 200 while the process runs. Unauthenticated; touches no database.",
    "ready": "Readiness: 200 while the database answers a trivial read and the key ring has an active key, else 503 "
    "with Retry-After. Unauthenticated; writes nothing.",
    "jwks": "The keys that verify every token and credential this issuer signs (Ed25519, EdDSA): the next key "
    "(published before use), the active one and retired ones until what they signed expired. Public and cacheable; "
    "refetch on an unknown kid.",
    "jwksAlias": "The same JWKS as /.well-known/jwks.json.",
    "didDocument": "The issuer's did:web DID document, with the same keys as verification methods.",
    "oauthMetadata": "RFC 8414 metadata: endpoints, grant types, scopes, token endpoint authentication methods, "
    "DPoP algorithms. Public and cacheable.",
    "protectedResource": "RFC 9728 metadata of AgentAuth's own REST API as a resource: its authorization server, "
    "scopes and DPoP requirements.",
    "protectedResourceMcp": "RFC 9728 metadata of the MCP server at /mcp.",
    "agentConfig": "What an agent needs to start: scopes, token lifetimes, limits and endpoints.",
    "token": "Send the grant's parameters form-encoded. An agent's id is its client_id; the API key is its "
    "client_secret (form or HTTP Basic). A DPoP header (RFC 9449) binds the token to that key: token_type DPoP. "
    "`resource` (RFC 8707) names the API the token is for (its aud). Answers carry Cache-Control: no-store.",
    "introspect": "RFC 7662: whether a token is active and what it carries. Authenticate with a bearer token or your "
    "API key (client_secret). You see your own tokens and, with scope tokens.introspect, those of your subtree; "
    "any other token is reported only as inactive.",
    "revoke": "RFC 7009: revoke an access or refresh token you may see (as for introspection); 200 whether or not "
    "there was anything to revoke, so it cannot probe for other tenants' tokens.",
    "register": "RFC 7591 dynamic client registration, for OAuth clients (e.g. MCP clients) that send people "
    "through /authorize. Governed by AGENTAUTH_REGISTRATION.",
    "quickstart": "No authentication (governed by AGENTAUTH_REGISTRATION and per-address rate limits). The private "
    "key, API key and refresh token are in this answer only: store them now.",
    "agentDidDocument": "The DID document of an agent's did:key, derived from the DID itself. Public.",
    "getStatusList": "A BitstringStatusListCredential (JWT, application/vc+jwt): the revocation registry offline "
    "verifiers check a token's status entry against. Public; Cache-Control max-age is the list's ttl.",
    "authorize": "For people, in a browser: sign in as the owner, choose what the client gets, consent (RFC 6749 "
    "section 4.1 with PKCE, RFC 7636 S256 only).",
}


def _needs(extension: dict[str, Any]) -> str:
    scopes = " and ".join(f"`{scope}`" for scope in extension["scopes"])
    return (
        f"Needs an access token (`Authorization: Bearer`, or `DPoP` with a proof) with scope {scopes}; policies are "
        f"evaluated for the action `{extension['action']}`. What is outside your reach (another tenant, outside your "
        "subtree) answers 404, as if it did not exist."
    )


def operation_id(route: APIRoute) -> str:
    """``listAgents`` for the route function ``list_agents``: the name client generators make a method of
    (FastAPI's default, ``list_agents_api_v1_agents_get``, repeats the path and the method). Route functions
    are unique among the documented routes (FastAPI warns of a duplicate operationId, and tests fail on it)."""
    first, *rest = route.name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def _codes(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    codes = ["400", "503"]
    if operation.get("security") or path.startswith("/api/v1/auth/"):
        codes += ["401", "403", "404"]  # ids also arrive in bodies and queries (agent_id, delegate_agent_id)
    elif "{" in path:
        codes.append("404")
    if method in ("post", "put", "patch", "delete"):
        codes += ["409", "413"]
    if path in UNAUTHENTICATED_GRANTS:
        codes.append("401")
    if path in RATE_LIMITED:
        codes.append("429")
    return codes


def install(app: FastAPI) -> None:
    """``app.openapi()`` builds the completed document once. The app must be made with
    ``generate_unique_id_function=operation_id``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=(app.description or "") + GUIDE,
            routes=app.routes,
            tags=TAGS,
        )
        schema.setdefault("components", {}).setdefault("schemas", {})["OAuthError"] = OAUTH_ERROR
        error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for code in _codes(path, method, operation):
                    responses.setdefault(code, {"description": DESCRIPTIONS[code], "content": error_content})
                for code, response in responses.items():
                    if int(code) >= 400:  # a route's own description of an error: the body is still RFC 6749's
                        response.setdefault("content", error_content)
                extension = operation.get(OPENAPI_EXTENSION)
                about = _needs(extension) if extension else ABOUT.get(operation.get("operationId", ""))
                if about and about not in operation.get("description", ""):
                    operation["description"] = "\n\n".join(filter(None, (operation.get("description"), about)))
        if "#/components/schemas/HTTPValidationError" not in json.dumps(schema["paths"]):
            # FastAPI's 422 body, and what it refers to: never answered (see above), so no client models.
            schema["components"]["schemas"].pop("HTTPValidationError", None)
            schema["components"]["schemas"].pop("ValidationError", None)
        revoke = schema.get("paths", {}).get("/api/v1/auth/revoke", {}).get("post")
        if revoke is not None:
            # RFC 7009 section 2.2: the 200 answer has no body.
            revoke["responses"]["200"] = {"description": "Revoked, or nothing to revoke (empty body)"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
