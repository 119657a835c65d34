"""Streamable HTTP at ``/mcp`` inside the main app, over the same services as REST.

Stateless and JSON-answering: every POST is a complete exchange, so any replica behind a load balancer can take
any request (no sticky sessions), as the REST API already allows. Both ``/mcp`` and ``/mcp/`` are routes of
their own - no redirect for clients that add or drop the slash. The host app runs the session manager in its
lifespan (``run``).

Two rules hold for every response of the endpoint, whatever the SDK answers:
- it is never stored by a cache (``Cache-Control: no-store``, ``Pragma: no-cache``, the headers REST sends with
  secrets): tool results carry API keys and tokens, and no MCP answer is reusable;
- only POST is served. Without sessions there is no stream a GET could resume or listen on, so GET (like any
  other method) is answered at once with 405 - the streamable HTTP transport lets a server that "does not offer
  an SSE stream at this endpoint" say so with "HTTP 405 Method Not Allowed" - instead of an event stream held
  open for nobody.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import orjson
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentauth.bootstrap import Services
from agentauth.errors import AgentAuthError, UseDPoPNonce
from agentauth.issuer.secrets import NO_STORE
from agentauth.mcp.embedded import EmbeddedBackend
from agentauth.mcp.params import HOLDER_STATE
from agentauth.mcp.server import build_server
from agentauth.paths import MCP as MCP_PATH
from agentauth.vc.dpop import SIGNING_ALGORITHMS

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_NO_STORE = [(name.lower().encode(), value.encode()) for name, value in NO_STORE.items()]
_JSONRPC_INVALID_REQUEST = -32600


def transport_security(issuer_url: str) -> TransportSecuritySettings:
    """DNS-rebinding protection (Host and Origin checks) when the service is published on a loopback address,
    which is what a browser page could otherwise reach through a rebound name. A public deployment sits behind
    its own host name and proxy, where the check would only reject legitimate forwarded requests."""
    host = urlsplit(issuer_url).hostname or ""
    if f"[{host}]" not in LOOPBACK and host not in LOOPBACK:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:*" for name in LOOPBACK] + list(LOOPBACK),
        allowed_origins=[f"{scheme}://{name}:*" for scheme in ("http", "https") for name in LOOPBACK]
        + [f"{scheme}://{name}" for scheme in ("http", "https") for name in LOOPBACK],
    )


class NoStorePostOnly:
    """The rules of the module docstring around the SDK's ASGI app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "POST":
            await self._method_not_allowed(send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in (b"cache-control", b"pragma")]
                message["headers"] = kept + _NO_STORE
            await send(message)

        await self.app(scope, receive, send_no_store)

    @staticmethod
    async def _method_not_allowed(send: Send) -> None:
        # The body is the JSON-RPC error the SDK itself answers transport refusals with.
        message = "Method Not Allowed: this endpoint is stateless and answers POST only (no SSE stream at GET)"
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": None, "error": {"code": _JSONRPC_INVALID_REQUEST, "message": message}}
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"allow", b"POST"),
            *_NO_STORE,
        ]
        await send({"type": "http.response.start", "status": 405, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class BearerChallenge:
    """RFC 6750 section 3.1 and RFC 9728 section 5.1 for ``/mcp``: a request whose ``Authorization: Bearer`` token
    is invalid, expired, revoked or not for AgentAuth is answered 401 with ``WWW-Authenticate: Bearer
    error="invalid_token", resource_metadata=...`` before the MCP layer, so an MCP client knows to get a new token
    (the MCP authorization spec's discovery starts from that header). Without a token every request passes: tools
    that need none (``discover``, ``quickstart``) keep working, the others answer their own tool error."""

    def __init__(self, app: ASGIApp, services: Callable[[], Services], issuer_url: str) -> None:
        self.app = app
        self.services = services
        self.metadata = f"{issuer_url}/.well-known/oauth-protected-resource{MCP_PATH}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
            if header[:7].lower() == b"bearer ":
                try:
                    await self.services().tokens.authenticate_bearer(header[7:].decode("latin-1").strip())
                except AgentAuthError as exc:
                    await self._challenge(send, exc)
                    return
            elif header[:5].lower() == b"dpop ":
                # RFC 9449 section 7: the token with this request's proof, checked once here (the proof's jti is
                # used up); the tools then hold the token to the key that proof showed (``holder_jkt``).
                proofs = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"dpop"]
                try:
                    principal = await self.services().tokens.authenticate_request(
                        header.decode("latin-1"), proofs, scope["method"], MCP_PATH
                    )
                except AgentAuthError as exc:
                    await self._challenge(send, exc, scheme="DPoP")
                    return
                cnf = principal.claims.get("cnf")
                if isinstance(cnf, dict):
                    scope.setdefault("state", {})[HOLDER_STATE] = cnf.get("jkt")
        await self.app(scope, receive, send)

    async def _challenge(self, send: Send, exc: AgentAuthError, scheme: str = "Bearer") -> None:
        description = exc.description.replace('"', "'")
        error = exc.error if exc.error in ("use_dpop_nonce", "invalid_dpop_proof") else "invalid_token"
        challenge = f'{scheme} error="{error}", error_description="{description}", resource_metadata="{self.metadata}"'
        if scheme == "DPoP":
            challenge += f', algs="{" ".join(SIGNING_ALGORITHMS)}"'
        body = orjson.dumps({"error": error, "error_description": exc.description})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", challenge.encode()),
            *_NO_STORE,
        ]
        if isinstance(exc, UseDPoPNonce):
            headers.append((b"dpop-nonce", exc.nonce.encode("ascii")))
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class McpMount:
    """The MCP endpoint of one app instance (a session manager runs once: one mount per app)."""

    def __init__(self, services: Callable[[], Services], issuer_url: str, max_body: int) -> None:
        self.server = build_server(EmbeddedBackend(services), token_in_header=True)
        chatty = logging.getLogger("mcp.server.streamable_http")
        if chatty.level == logging.NOTSET:
            # In stateless mode the SDK logs "Terminating session" at INFO for every request: noise, not news.
            chatty.setLevel(logging.WARNING)
        # Builds the session manager; its own Starlette wrapper is not used (the routes below replace it).
        self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            json_response=True,
            stateless_http=True,
            transport_security=transport_security(issuer_url),
            max_request_body_size=max_body,
        )
        self.session_manager: StreamableHTTPSessionManager = self.server.session_manager
        self.asgi = NoStorePostOnly(BearerChallenge(StreamableHTTPASGIApp(self.session_manager), services, issuer_url))

    def install(self, router: Router) -> None:
        for path in (MCP_PATH, MCP_PATH + "/"):
            router.routes.append(Route(path, endpoint=self.asgi, include_in_schema=False))

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        async with self.session_manager.run():
            yield
