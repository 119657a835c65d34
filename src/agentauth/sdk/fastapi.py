"""FastAPI integration: protect routes with AgentAuth access tokens, verified offline-first.

::

    from agentauth.sdk import AsyncOnlineVerifier
    from agentauth.sdk.fastapi import install, require_scopes

    app = FastAPI()
    install(app, AsyncOnlineVerifier("https://auth.example.com", resource="https://reports.example.com"))

    @app.get("/reports")
    async def reports(token: Annotated[VerifiedToken, Depends(require_scopes("api.read"))]) -> ...:
        return {"agent": token.subject}

``install`` stores the verifier on ``app.state`` and renders refusals as RFC 6749 JSON
(``{"error", "error_description"}``) with ``WWW-Authenticate``; without it the dependency still answers
401/403/503 with the right headers, in FastAPI's ``{"detail": ...}`` body. Behind ``BearerAuthMiddleware``
the dependency reuses the middleware's verified token and only checks scopes. A token is accepted only when its
``aud`` names this server (the verifier's ``resource``; RFC 8707, RFC 9068 section 4).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agentauth.sdk.asgi import STATE_KEY
from agentauth.sdk.bearer import (
    DEFAULT_REALM,
    BearerError,
    TokenAuthority,
    authenticate,
    check_scopes,
    require_audience_configured,
)
from agentauth.vc import VerifiedToken

APP_STATE_VERIFIER = "agentauth_verifier"
APP_STATE_OPTIONS = "agentauth_options"

# Declares the scheme in OpenAPI (the docs' "Authorize" button); the header itself is read by ``authenticate``.
_scheme = HTTPBearer(auto_error=False, description="An AgentAuth access token (JWT, RFC 9068).")


class BearerHTTPException(HTTPException):
    """An ``HTTPException`` carrying the RFC 6749 error code, so ``install``'s handler can render it."""

    def __init__(self, refusal: BearerError, realm: str, resource_metadata: str | None) -> None:
        super().__init__(refusal.status, refusal.description, refusal.headers(realm, resource_metadata))
        self.refusal = refusal


def install(
    app: FastAPI,
    verifier: TokenAuthority,
    *,
    audience: str | None = None,
    realm: str = DEFAULT_REALM,
    resource_metadata: str | None = None,
) -> None:
    """Make ``verifier`` the app's default for ``require_scopes`` and answer refusals as RFC 6749 JSON. Tokens
    are accepted only when their ``aud`` names ``audience`` or else the verifier's ``resource``."""
    require_audience_configured(verifier, audience)
    setattr(app.state, APP_STATE_VERIFIER, verifier)
    setattr(
        app.state, APP_STATE_OPTIONS, {"audience": audience, "realm": realm, "resource_metadata": resource_metadata}
    )

    async def _refusal(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BearerHTTPException)
        return JSONResponse(exc.refusal.body(), status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(BearerHTTPException, _refusal)


def require_scopes(
    *scopes: str,
    verifier: TokenAuthority | None = None,
    audience: str | None = None,
    realm: str | None = None,
    resource_metadata: str | None = None,
) -> Callable[..., Awaitable[VerifiedToken]]:
    """A dependency returning the request's verified token; it refuses with 401 (no or bad token), 403
    ``insufficient_scope`` (a scope in ``scopes`` missing) or 503 (issuer unreachable).

    ``verifier`` defaults to the one given to ``install``."""

    async def dependency(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_scheme)],
    ) -> VerifiedToken:
        options: dict[str, Any] = getattr(request.app.state, APP_STATE_OPTIONS, {})
        the_realm = realm or options.get("realm") or DEFAULT_REALM
        metadata = resource_metadata or options.get("resource_metadata")
        try:
            already = request.scope.get("state", {}).get(STATE_KEY)
            if isinstance(already, VerifiedToken):
                check_scopes(already, scopes)
                return already
            authority = verifier or getattr(request.app.state, APP_STATE_VERIFIER, None)
            if authority is None:
                raise RuntimeError("no AgentAuth verifier: call agentauth.sdk.fastapi.install(app, verifier) first")
            return await authenticate(
                authority, request.headers.get("authorization"), scopes, audience=audience or options.get("audience")
            )
        except BearerError as refusal:
            raise BearerHTTPException(refusal, the_realm, metadata) from None

    dependency.__name__ = f"require_scopes({' '.join(scopes)})"
    return dependency
