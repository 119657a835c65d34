"""The OpenAPI document, completed with the error answers the app really gives.

FastAPI documents 422 for validation errors; this app answers them - like every error - with RFC 6749 JSON
and 400. Each operation here declares what it can answer: 400 and 503 everywhere, 401/403/404 where a
bearer token is needed, 404 with a path id, 409 and 413 on writes, 401 and 429 on the unauthenticated grants.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

OAUTH_ERROR = {
    "type": "object",
    "required": ["error", "error_description"],
    "properties": {
        "error": {"type": "string", "description": "RFC 6749 / 6750 / 7009 / 7662 error code"},
        "error_description": {"type": "string"},
    },
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
UNAUTHENTICATED_GRANTS = ("/api/v1/auth/token", "/api/v1/agents/quickstart")


def _codes(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    codes = ["400", "503"]
    if operation.get("security") or path.startswith("/api/v1/auth/"):
        codes += ["401", "403", "404"]  # ids also arrive in bodies and queries (agent_id, delegate_agent_id)
    elif "{" in path:
        codes.append("404")
    if method in ("post", "put", "patch", "delete"):
        codes += ["409", "413"]
    if path in UNAUTHENTICATED_GRANTS:
        codes += ["401", "429"]
    return codes


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {})["OAuthError"] = OAUTH_ERROR
        error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for code in _codes(path, method, operation):
                    responses.setdefault(code, {"description": DESCRIPTIONS[code], "content": error_content})
        revoke = schema.get("paths", {}).get("/api/v1/auth/revoke", {}).get("post")
        if revoke is not None:
            # RFC 7009 section 2.2: the 200 answer has no body.
            revoke["responses"]["200"] = {"description": "Revoked, or nothing to revoke (empty body)"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
