"""Streamable HTTP at ``/mcp`` inside the main app, over the same services as REST.

Stateless and JSON-answering: every POST is a complete exchange, so any replica behind a load balancer can take
any request (no sticky sessions), as the REST API already allows. Both ``/mcp`` and ``/mcp/`` are routes of
their own - no redirect for clients that add or drop the slash. The host app runs the session manager in its
lifespan (``run``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route, Router

from agentauth.bootstrap import Services
from agentauth.issuer.discovery import MCP_PATH
from agentauth.mcp.embedded import EmbeddedBackend
from agentauth.mcp.server import build_server

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


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
        self.asgi = StreamableHTTPASGIApp(self.session_manager)

    def install(self, router: Router) -> None:
        for path in (MCP_PATH, MCP_PATH + "/"):
            router.routes.append(Route(path, endpoint=self.asgi, include_in_schema=False))

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        async with self.session_manager.run():
            yield
