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

DPoP-bound tokens (RFC 9449 section 7): ``install(app, verifier, dpop=DPoPSettings())`` (or ``require_scopes(...,
dpop=...)``) also accepts ``Authorization: DPoP <token>`` with its ``DPoP`` proof, checked against the request's
method and URI; the settings choose the replay cache, required nonces, ``require_dpop`` and the ``public_url``
behind a proxy (``agentauth.sdk.dpop``). Without them only bearer tokens are accepted. When nonces are required,
successful responses carry the current one in ``DPoP-Nonce`` too (section 8.2).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agentauth.sdk.asgi import STATE_KEY, request_method
from agentauth.sdk.bearer import (
    DEFAULT_REALM,
    BearerError,
    Challenges,
    TokenAuthority,
    authenticate,
    check_scopes,
    credentials,
    require_audience_configured,
)
from agentauth.sdk.dpop import DPoPSettings, header_values
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
    dpop: DPoPSettings | None = None,
) -> None:
    """Make ``verifier`` the app's default for ``require_scopes`` and answer refusals as RFC 6749 JSON. Tokens
    are accepted only when their ``aud`` names ``audience`` or else the verifier's ``resource``; DPoP-bound ones
    only with ``dpop`` (the settings every route shares: one replay cache for the app)."""
    require_audience_configured(verifier, audience)
    setattr(app.state, APP_STATE_VERIFIER, verifier)
    options = {
        "audience": audience,
        "realm": realm,
        "resource_metadata": resource_metadata,
        "dpop": dpop,
    }
    setattr(app.state, APP_STATE_OPTIONS, options)

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
    dpop: DPoPSettings | None = None,
) -> Callable[..., Awaitable[VerifiedToken]]:
    """A dependency returning the request's verified token; it refuses with 401 (no or bad token, bad DPoP
    proof), 403 ``insufficient_scope`` (a scope in ``scopes`` missing) or 503 (issuer unreachable).

    ``verifier`` and ``dpop`` default to what was given to ``install``."""

    async def dependency(
        request: Request,
        response: Response,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_scheme)],
    ) -> VerifiedToken:
        options: dict[str, Any] = getattr(request.app.state, APP_STATE_OPTIONS, {})
        the_realm = realm or options.get("realm") or DEFAULT_REALM
        metadata = resource_metadata or options.get("resource_metadata")
        settings: DPoPSettings | None = dpop or options.get("dpop")
        authorization = request.headers.get("authorization")
        try:
            already = request.scope.get("state", {}).get(STATE_KEY)
            if isinstance(already, VerifiedToken):
                # Verified by BearerAuthMiddleware (proof included): answer in the scheme the token came with.
                found = credentials(authorization)
                check_scopes(already, scopes, Challenges.of(settings, found[0] if found else None))
                return already
            authority = verifier or getattr(request.app.state, APP_STATE_VERIFIER, None)
            if authority is None:
                raise RuntimeError("no AgentAuth verifier: call agentauth.sdk.fastapi.install(app, verifier) first")
            verified = await authenticate(
                authority,
                authorization,
                scopes,
                audience=audience or options.get("audience"),
                dpop=settings,
                dpop_proofs=header_values(request.scope, b"dpop") if settings is not None else (),
                method=request_method(request.scope),
                uri=settings.request_uri(request.scope) if settings is not None else None,
            )
        except BearerError as refusal:
            raise BearerHTTPException(refusal, the_realm, metadata) from None
        nonce = settings.current_nonce() if settings is not None else None
        if nonce is not None:
            response.headers["DPoP-Nonce"] = nonce
        return verified

    dependency.__name__ = f"require_scopes({' '.join(scopes)})"
    return dependency
