"""``/api/v1/auth``: the token endpoint (its OpenAPI form generated from the grant registry), introspection,
revocation and the JWKS alias."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from agentauth import paths
from agentauth.api.body import read_params
from agentauth.api.deps import ContextDep, ServicesDep, principal_of, request_context
from agentauth.api.direct import DirectRoute
from agentauth.api.metrics import ISSUED, observe_token_request
from agentauth.api.openapi import BACKCHANNEL_ERRORS, BACKCHANNEL_FORM, TOKEN_ERRORS, IntrospectionResponse
from agentauth.api.ratelimits import limit_token_request
from agentauth.bootstrap import Services
from agentauth.errors import AgentAuthError
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.grants import GRANTS, GrantRegistry
from agentauth.issuer.schemas import TokenResponse
from agentauth.issuer.secrets import NO_STORE

router = APIRouter(prefix=paths.AUTH, tags=["auth"])
TOKEN_PATH = paths.TOKEN


# One example request per standard grant, for the docs' "Example" menu (placeholders, not working values).
TOKEN_EXAMPLES: dict[str, dict[str, Any]] = {
    "client_credentials": {
        "summary": "An API key (RFC 6749 section 4.4)",
        "value": {"grant_type": "client_credentials", "client_secret": "ak_live_...", "scope": "agents.read"},
    },
    "refresh_token": {
        "summary": "Rotate a refresh token (RFC 6749 section 6)",
        "value": {"grant_type": "refresh_token", "refresh_token": "rt_..."},
    },
    "urn:ietf:params:oauth:grant-type:jwt-bearer": {
        "summary": "An assertion signed by the agent's did:key (RFC 7523)",
        "value": {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "eyJ..."},
    },
    "urn:ietf:params:oauth:grant-type:token-exchange": {
        "summary": "Act under a delegation (RFC 8693): the delegation credential and the delegate's own token",
        "value": {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": "eyJ... (the delegation credential)",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "actor_token": "eyJ... (the delegate's access token)",
            "actor_token_type": "urn:ietf:params:oauth:token-type:access_token",
        },
    },
    "authorization_code": {
        "summary": "Redeem an authorization code with its PKCE verifier (RFC 6749 section 4.1.3, RFC 7636)",
        "value": {
            "grant_type": "authorization_code",
            "code": "...",
            "client_id": "https://client.example/metadata.json",
            "redirect_uri": "https://client.example/callback",
            "code_verifier": "...",
        },
    },
}


def _grant_name(grant_type: str) -> str:
    """``jwt-bearer`` for ``urn:ietf:params:oauth:grant-type:jwt-bearer``: how the descriptions name a grant."""
    return grant_type.rsplit(":", 1)[-1]


def token_form(grants: GrantRegistry = GRANTS) -> dict[str, Any]:
    """The token endpoint's request body for OpenAPI, from the grant registry: ``grant_type`` is one of the
    registered grant types; the other properties are every parameter some grant reads, each described per grant
    (a flat form: which ones a request needs depends on its ``grant_type``)."""
    properties: dict[str, Any] = {
        "grant_type": {"type": "string", "enum": list(grants.grant_types), "description": "The grant to use."}
    }
    for name, uses in grants.parameters().items():
        described = [
            f"{_grant_name(grant_type)}{' (required)' if p.required else ''}: {p.description}" for grant_type, p in uses
        ]
        properties[name] = {"type": "string", "description": " ".join(described)}
    schema = {"type": "object", "required": ["grant_type"], "properties": properties}
    examples = {_grant_name(g): TOKEN_EXAMPLES[g] for g in grants.grant_types if g in TOKEN_EXAMPLES}
    # RFC 6749 section 4.4.2 (and every grant): "application/x-www-form-urlencoded"; the endpoint also reads JSON,
    # undocumented - two body types make client generators write broken code (openapi-python-client).
    form = {"schema": schema, "examples": examples} if examples else {"schema": schema}
    return {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": form}}}


def token_summary(grants: GrantRegistry = GRANTS) -> str:
    return f"Token endpoint (RFC 6749): {', '.join(_grant_name(g) for g in grants.grant_types)}"


@router.post(
    "/token",
    response_model=TokenResponse,
    summary=token_summary(),
    openapi_extra=token_form(),
    responses=TOKEN_ERRORS,
)
async def token(request: Request) -> Response:
    # The busiest route: no dependency injection and pydantic's own JSON encoder (measured: the two cost more
    # per request than the Ed25519 signature); in the app it is a direct route (``DIRECT`` below).
    services: Services = request.app.state.services
    ctx = request_context(request)
    params = await read_params(request)
    try:
        await limit_token_request(services, params, ctx)
        result = await services.tokens.token(params, ctx, request.headers.getlist("dpop"))
    except AgentAuthError as exc:
        observe_token_request(request, params.get("grant_type"), exc.error)
        raise
    observe_token_request(request, params.get("grant_type"), ISSUED)
    nonce = services.tokens.proofs.current_nonce(services.core.clock())
    # RFC 9449 section 8.2: a server may hand out the next nonce with any answer; one that requires them does.
    headers = NO_STORE if nonce is None else NO_STORE | {"DPoP-Nonce": nonce}
    return Response(result.model_dump_json(exclude_none=True), media_type="application/json", headers=headers)


@router.post(
    "/bc-authorize",
    summary="Ask the agent's owner to approve an exact action (OpenID CIBA, RFC 9396 authorization_details)",
    description="Backchannel authentication request (CIBA Core section 7), poll or ping mode. Authenticate as at "
    "the token endpoint (the API key as client_secret, body or HTTP Basic, or private_key_jwt). `login_hint`: "
    "the email of an owner of "
    "the agent's tenant. `authorization_details`: a JSON array (RFC 9396) of objects with a `type` from the "
    "metadata's `authorization_details_types_supported`, shown to the owner as asked; `binding_message`: one "
    "line shown with it. Poll the token endpoint with `grant_type=urn:openid:params:grant-type:ciba` and the "
    "`auth_req_id`; the token carries the approved `authorization_details`.",
    openapi_extra=BACKCHANNEL_FORM,
    responses=BACKCHANNEL_ERRORS,
)
async def backchannel_authorize(request: Request, services: ServicesDep, ctx: ContextDep) -> Response:
    params = await read_params(request)
    await limit_token_request(services, params, ctx)
    answer = await services.approvals.request(params, ctx)
    return JSONResponse(answer, headers=NO_STORE)


async def _caller(
    request: Request, services: Services, params: dict[str, Any], ctx: RequestContext
) -> Principal | None:
    """RFC 7662 section 2.1 / RFC 7009 section 2.1: the caller authenticates - with its bearer token or, like
    at the token endpoint, with its API key as client_secret (body or HTTP Basic). None: no credential at all,
    so only a refresh token given as ``token`` can prove anything (the rule is ``issuer/lifecycle.py``'s); such
    requests draw on the token endpoint's per-IP bucket, like a refresh grant."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer " or header[:5].lower() == "dpop ":
        return await principal_of(request, services)  # a DPoP-bound token with this request's proof, too
    secret = params.get("client_secret")
    if isinstance(secret, str) and secret:
        return await services.tokens.authenticate_client(secret)
    await limit_token_request(services, params, ctx)
    return None


_TOKEN_PARAM_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["token"],
                    "properties": {
                        "token": {"type": "string"},
                        "token_type_hint": {"type": "string", "enum": ["access_token", "refresh_token"]},
                        "client_secret": {
                            "type": "string",
                            "description": "Your API key, if not using a bearer. A refresh token needs neither.",
                        },
                    },
                }
            },
        },
    }
}


@router.post(
    "/introspect",
    summary="Token introspection (RFC 7662)",
    description="Authenticate with a bearer token or your API key (client_secret); a refresh token given as "
    "`token` is its own credential and may be sent alone.",
    openapi_extra=_TOKEN_PARAM_FORM,
    responses={200: {"description": "RFC 7662 response", "model": IntrospectionResponse}},
)
@router.post("/token/introspect", include_in_schema=False)
async def introspect(request: Request, services: ServicesDep, ctx: ContextDep) -> JSONResponse:
    params = await read_params(request)
    principal = await _caller(request, services, params, ctx)
    result = await services.lifecycle.introspect(principal, params.get("token"), params.get("token_type_hint"))
    return JSONResponse(result, headers=NO_STORE)


async def introspect_direct(request: Request) -> Response:
    return await introspect(request, request.app.state.services, request_context(request))


@router.post(
    "/revoke",
    summary="Token revocation (RFC 7009)",
    description="Authenticate with a bearer token or your API key (client_secret); a refresh token given as "
    "`token` is its own credential and may be sent alone. Revoking either half of a token pair revokes both.",
    openapi_extra=_TOKEN_PARAM_FORM,
    responses={200: {"description": "Revoked, or nothing to revoke"}},
)
@router.post("/token/revoke", include_in_schema=False)
async def revoke(request: Request, services: ServicesDep, ctx: ContextDep) -> Response:
    params = await read_params(request)
    principal = await _caller(request, services, params, ctx)
    await services.lifecycle.revoke(principal, params.get("token"), params.get("token_type_hint"), ctx)
    # RFC 7009 section 2.2: "The content of the response body is ignored by the client".
    return Response(status_code=200, headers=NO_STORE)


async def revoke_direct(request: Request) -> Response:
    return await revoke(request, request.app.state.services, request_context(request))


@router.get("/jwks", summary="Issuer public keys (same as /.well-known/jwks.json)")
async def jwks_alias(services: ServicesDep) -> JSONResponse:
    return JSONResponse(services.jwks(), headers={"Cache-Control": "public, max-age=300"})


# Answered without FastAPI's routing and dependency layers (``api/direct.py``; measured with py-spy under
# bench/http.py: those layers took about a fifth of the server's time per token request).
DIRECT = (
    DirectRoute("POST", TOKEN_PATH, token),
    DirectRoute("POST", paths.INTROSPECT, introspect_direct),
    DirectRoute("POST", TOKEN_PATH + "/introspect", introspect_direct),
    DirectRoute("POST", paths.REVOKE, revoke_direct),
    DirectRoute("POST", TOKEN_PATH + "/revoke", revoke_direct),
)
