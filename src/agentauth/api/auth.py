"""``/api/v1/auth``: the token endpoint and the JWKS alias."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from agentauth.api.body import read_params
from agentauth.api.deps import ContextDep, ServicesDep
from agentauth.api.ratelimits import limit_token_request
from agentauth.issuer.schemas import TokenResponse

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

# RFC 6749 section 5.1: token responses "MUST include ... Cache-Control: no-store".
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_TOKEN_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {
                            "type": "string",
                            "enum": [
                                "client_credentials",
                                "refresh_token",
                                "urn:ietf:params:oauth:grant-type:jwt-bearer",
                            ],
                        },
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string", "description": "The API key (client_credentials)."},
                        "scope": {"type": "string", "description": "Space-separated; narrows the grant."},
                        "refresh_token": {"type": "string"},
                        "assertion": {"type": "string", "description": "jwt-bearer: JWT signed by the did:key."},
                    },
                }
            },
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


@router.post(
    "/token",
    response_model=TokenResponse,
    summary="Token endpoint (RFC 6749): client_credentials, refresh_token, jwt-bearer",
    openapi_extra=_TOKEN_FORM,
    responses={400: {"description": "RFC 6749 error"}, 401: {"description": "invalid_client"}, 429: {}},
)
async def token(request: Request, services: ServicesDep, ctx: ContextDep) -> Response:
    params = await read_params(request)
    await limit_token_request(services, params, ctx)
    result = await services.tokens.token(params, ctx)
    return JSONResponse(result.model_dump(mode="json", exclude_none=True), headers=NO_STORE)


@router.get("/jwks", summary="Issuer public keys (same as /.well-known/jwks.json)")
async def jwks(services: ServicesDep) -> JSONResponse:
    return JSONResponse(services.jwks(), headers={"Cache-Control": "public, max-age=300"})
