"""A pure ASGI middleware that requires an AgentAuth access token on every request (RFC 6750).

Works under any ASGI framework (Starlette, FastAPI, Quart, a bare app) and imports none::

    verifier = AsyncOnlineVerifier("https://auth.example.com", resource="https://api.example.com")
    app = BearerAuthMiddleware(app, verifier, required_scopes=["api.read"])

Every token's ``aud`` must name the verifier's ``resource`` (or ``audience``, when given here): a token the issuer
minted for another server is refused (RFC 8707; RFC 9068 section 4).

The verified token lands in ``scope["state"]["agentauth_token"]`` (Starlette: ``request.state.agentauth_token``),
where ``agentauth.sdk.fastapi.require_scopes`` finds it to check per-route scopes without verifying twice.
Refusals follow ``bearer.py``: 401, 403 ``insufficient_scope``, or 503 - with ``WWW-Authenticate``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from agentauth.sdk.bearer import (
    DEFAULT_REALM,
    BearerError,
    TokenAuthority,
    authenticate,
    require_audience_configured,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATE_KEY = "agentauth_token"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class BearerAuthMiddleware:
    """Refuses requests without a valid token holding ``required_scopes``; ``exclude_paths`` (exact paths or
    prefixes ending in ``/``) pass through, e.g. health checks and ``/.well-known/``. Lifespan and other
    non-HTTP scopes pass through untouched; a refused WebSocket handshake is closed with code 1008."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: TokenAuthority,
        *,
        required_scopes: Iterable[str] = (),
        audience: str | None = None,
        exclude_paths: Iterable[str] = (),
        realm: str = DEFAULT_REALM,
        resource_metadata: str | None = None,
    ) -> None:
        require_audience_configured(verifier, audience)
        self.app = app
        self.verifier = verifier
        self.required_scopes = tuple(required_scopes)
        self.audience = audience
        self.exclude_paths = tuple(exclude_paths)
        self.realm = realm
        self.resource_metadata = resource_metadata

    def _excluded(self, path: str) -> bool:
        return any(path == p or (p.endswith("/") and path.startswith(p)) for p in self.exclude_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._excluded(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        try:
            verified = await authenticate(
                self.verifier,
                _header(scope, b"authorization"),
                self.required_scopes,
                audience=self.audience,
            )
        except BearerError as refusal:
            await self._refuse(scope, send, refusal)
            return
        scope.setdefault("state", {})[STATE_KEY] = verified
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, refusal: BearerError) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refusal.error or "unauthorized"})
            return
        body = refusal.body_bytes()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [
            (k.lower().encode(), v.encode("latin-1"))
            for k, v in refusal.headers(self.realm, self.resource_metadata).items()
        ]
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
