"""The one place REST maps errors: RFC 6749 section 5.2 JSON at the top level, RFC 6750 section 3 on 401/403.

Storage failures arrive already translated into ``agentauth.errors`` (``storage/failures.py``: a taken unique
value is a 409 ``conflict``, an unstorable value a 400, an outage a 503 with ``Retry-After``), exactly as MCP
sees them; this module knows no database exception."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentauth.errors import AgentAuthError, RateLimited, UseDPoPNonce
from agentauth.vc.dpop import SIGNING_ALGORITHMS

log = logging.getLogger("agentauth.api")

_HTTP_CODES = {
    400: "invalid_request",
    401: "invalid_token",
    403: "access_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "invalid_request",
    422: "invalid_request",
    429: "rate_limited",
}
RETRY_AFTER_SECONDS = 5


def error_response(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    headers.setdefault("Cache-Control", "no-store")
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


def _challenge(error: str, description: str, scope: str | None = None, scheme: str = "Bearer") -> str:
    safe = description.replace('"', "'")
    value = f'{scheme} realm="agentauth", error="{error}", error_description="{safe}"'
    if scheme == "DPoP":
        value += f', algs="{" ".join(SIGNING_ALGORITHMS)}"'  # RFC 9449 section 7.1: the proof algorithms accepted
    return value + (f', scope="{scope}"' if scope else "")


def install(app: FastAPI) -> None:
    @app.exception_handler(AgentAuthError)
    async def _agentauth_error(request: Request, exc: AgentAuthError) -> JSONResponse:
        if exc.debug:
            log.info("%s %s -> %s: %s [%s]", request.method, request.url.path, exc.error, exc.debug, _rid(request))
        headers: dict[str, str] = {}
        # RFC 9449 section 7.1: a request with the DPoP scheme is answered with a DPoP challenge.
        scheme = "DPoP" if request.headers.get("authorization", "")[:5].lower() == "dpop " else "Bearer"
        if isinstance(exc, UseDPoPNonce):
            headers["DPoP-Nonce"] = exc.nonce  # RFC 9449 section 8: the nonce to retry with
        if exc.status_code == 401:
            if exc.error == "invalid_client":
                # RFC 6749 section 5.2: 401 for invalid_client "MUST include the WWW-Authenticate header".
                headers["WWW-Authenticate"] = 'Basic realm="agentauth"'
            else:
                headers["WWW-Authenticate"] = _challenge(exc.error, exc.description, scheme=scheme)
                if scheme == "Bearer":
                    # RFC 9449 section 7.2: this API takes DPoP-bound tokens too (a bound token sent as a bearer
                    # token lands here); the DPoP challenge says so, with the proof algorithms it accepts.
                    headers["WWW-Authenticate"] += f', DPoP realm="agentauth", algs="{" ".join(SIGNING_ALGORITHMS)}"'
        elif exc.error == "insufficient_scope":
            headers["WWW-Authenticate"] = _challenge(exc.error, exc.description, scheme=scheme)
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        if exc.status_code == 503:
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return error_response(exc.status_code, exc.error, exc.description, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return error_response(400, "invalid_request", "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "invalid_request" if exc.status_code < 500 else "server_error")
        description = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 404 and description == "Not Found":
            description = "no such endpoint"
        return error_response(exc.status_code, code, description, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s [%s]", request.method, request.url.path, _rid(request))
        return error_response(500, "server_error", "the server could not complete the request")


def _rid(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))
