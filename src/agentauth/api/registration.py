"""The RFC 7591 ``registration_endpoint`` (``paths.REGISTER``): an OAuth-protocol endpoint, so, like the token
endpoint, it has no MCP tool and runs no operation of ``issuer/operations.py`` - who may register is
``AGENTAUTH_REGISTRATION``'s rule (``issuer/client_registration.py``), and each IP is rate-limited."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from agentauth import paths
from agentauth.api.deps import bearer_token, request_context
from agentauth.api.ratelimits import limit_client_registration
from agentauth.bootstrap import Services
from agentauth.errors import InvalidClientMetadata, InvalidRequest
from agentauth.issuer.secrets import NO_STORE

router = APIRouter(tags=["auth"])

_METADATA_SCHEMA = {
    "type": "object",
    "description": "RFC 7591 section 2 client metadata.",
    "required": ["redirect_uris"],
    "examples": [
        {
            "redirect_uris": ["http://127.0.0.1:33418/callback"],
            "client_name": "My MCP client",
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }
    ],
    "properties": {
        "redirect_uris": {"type": "array", "items": {"type": "string"}},
        "token_endpoint_auth_method": {"type": "string", "enum": ["none", "client_secret_basic", "client_secret_post"]},
        "grant_types": {"type": "array", "items": {"type": "string", "enum": ["authorization_code", "refresh_token"]}},
        "response_types": {"type": "array", "items": {"type": "string", "enum": ["code"]}},
        "client_name": {"type": "string"},
        "client_uri": {"type": "string"},
        "logo_uri": {"type": "string"},
        "scope": {"type": "string"},
        "contacts": {"type": "array", "items": {"type": "string"}},
        "tos_uri": {"type": "string"},
        "policy_uri": {"type": "string"},
        "software_id": {"type": "string"},
        "software_version": {"type": "string"},
        "application_type": {"type": "string", "enum": ["web", "native"]},
    },
}


async def _json_object(request: Request) -> dict[str, Any]:
    body = await request.body()  # first: an oversized body is 413 whatever it claims to be, like every route
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        # RFC 7591 section 3.1: "the client sends an HTTP POST ... with a content type of application/json".
        raise InvalidRequest("Content-Type must be application/json (RFC 7591 section 3.1)")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidClientMetadata("body is not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise InvalidClientMetadata("the client metadata must be a JSON object")
    return parsed


@router.post(
    paths.REGISTER,
    status_code=201,
    summary="Dynamic client registration (RFC 7591)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _METADATA_SCHEMA}}}},
    responses={
        201: {"description": "Client information response (RFC 7591 section 3.2.1)"},
        400: {"description": "invalid_redirect_uri or invalid_client_metadata (RFC 7591 section 3.2.2)"},
        401: {"description": "registration needs an initial access token"},
        403: {"description": "registration is closed"},
        429: {},
    },
)
async def register(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    ctx = request_context(request)
    await limit_client_registration(services, ctx)
    services.client_registration.check_allowed(bearer_token(request))  # before reading the body
    body = await _json_object(request)
    result = await services.client_registration.register(body, bearer_token(request), ctx)
    return JSONResponse(result, status_code=201, headers=NO_STORE)
