"""A pure ASGI middleware that requires an AgentAuth access token on every request (RFC 6750).

Works under any ASGI framework (Starlette, FastAPI, Quart, a bare app) and imports none::

    verifier = AsyncOnlineVerifier("https://auth.example.com", resource="https://api.example.com")
    app = BearerAuthMiddleware(app, verifier, required_scopes=["api.read"])

Every token's ``aud`` must name the verifier's ``resource`` (or ``audience``, when given here): a token the issuer
minted for another server is refused (RFC 8707; RFC 9068 section 4).

The verified token lands in ``scope["state"]["agentauth_token"]`` (Starlette: ``request.state.agentauth_token``),
where ``agentauth.sdk.fastapi.require_scopes`` finds it to check per-route scopes without verifying twice.
Refusals follow ``bearer.py``: 401, 403 ``insufficient_scope``, or 503 - with ``WWW-Authenticate`` (and
``DPoP-Nonce`` for ``use_dpop_nonce``).

DPoP-bound tokens (RFC 9449 section 7): with ``dpop=DPoPSettings()`` the middleware also accepts
``Authorization: DPoP <token>`` with its ``DPoP`` proof, checked against the request's method and URI; the
settings choose the replay cache (in-process by default, shared for replicas), required nonces, ``require_dpop``
and the ``public_url`` behind a proxy (see ``agentauth.sdk.dpop``). Without them only bearer tokens are accepted,
and a DPoP-bound token never is. When nonces are required, every response carries the current one in
``DPoP-Nonce`` (section 8.2), so clients keep up with its rotation.

An MCP server (the MCP SDK's streamable HTTP app) runs behind this middleware for DPoP: the SDK's own bearer
handling sees only ``Authorization: Bearer``, so wrap the MCP app in ``BearerAuthMiddleware`` instead of giving
it a token verifier (``agentauth.sdk.mcp_auth``).
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
from agentauth.sdk.dpop import DPoPSettings, header_values

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


def request_method(scope: Scope) -> str:
    """The method a proof's ``htm`` must name: a WebSocket handshake is a GET (RFC 6455 section 4.1)."""
    return str(scope.get("method") or "GET")


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
        dpop: DPoPSettings | None = None,
    ) -> None:
        require_audience_configured(verifier, audience)
        self.dpop = dpop
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
        dpop = self.dpop
        try:
            verified = await authenticate(
                self.verifier,
                _header(scope, b"authorization"),
                self.required_scopes,
                audience=self.audience,
                dpop=dpop,
                dpop_proofs=header_values(scope, b"dpop") if dpop is not None else (),
                method=request_method(scope),
                uri=dpop.request_uri(scope) if dpop is not None else None,
            )
        except BearerError as refusal:
            await self._refuse(scope, send, refusal)
            return
        scope.setdefault("state", {})[STATE_KEY] = verified
        nonce = dpop.current_nonce() if dpop is not None and scope["type"] == "http" else None
        if nonce is None:
            await self.app(scope, receive, send)
            return

        async def send_with_nonce(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if bytes(k).lower() != b"dpop-nonce"]
                message["headers"] = [*headers, (b"dpop-nonce", nonce.encode("ascii"))]
            await send(message)

        await self.app(scope, receive, send_with_nonce)

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
