"""DPoP-bound tokens at a third-party MCP server (RFC 9449 section 7; issue 15 item 5): the MCP SDK's streamable
HTTP app behind ``BearerAuthMiddleware`` with ``DPoPSettings``, under a real uvicorn server, spoken to by the
official MCP client (``streamable_http_client``) whose HTTP client signs a DPoP proof for every request it sends
and follows the server's nonce (section 8). The MCP SDK's own bearer handling would see only the token string,
so it is not used: the middleware checks the token and its proof before the MCP app runs.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import httpx
import httpx2
import pytest
from dpop_support import bound_token, serve
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import TextContent
from sdk_support import ISSUER_URL, LIST_URL, RESOURCE, FakeIssuer

from agentauth.keys import KeyPair
from agentauth.sdk import DPoPSettings, offline_verifier
from agentauth.sdk.asgi import BearerAuthMiddleware
from agentauth.vc import StaticStatusLists
from agentauth.vc.dpop import create_proof
from agentauth.vc.dpop_nonces import DPoPNonces

pytestmark = pytest.mark.anyio


class DPoPAuth(httpx2.Auth):
    """What a DPoP client does on every request: ``Authorization: DPoP <token>`` and a fresh proof for this
    method and URL; on 401 ``use_dpop_nonce`` it retries once with the ``DPoP-Nonce`` the server sent."""

    requires_request_body = True  # a retry resends the body

    def __init__(self, key: KeyPair, token: str) -> None:
        self.key, self.token = key, token
        self.nonce: str | None = None
        self.sent: list[tuple[str, int]] = []

    def _sign(self, request: httpx2.Request) -> None:
        request.headers["Authorization"] = f"DPoP {self.token}"
        url = str(request.url)
        request.headers["DPoP"] = create_proof(self.key, request.method, url, access_token=self.token, nonce=self.nonce)

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        self._sign(request)
        response = yield request
        self.sent.append((request.method, response.status_code))
        if response.status_code == 401 and 'error="use_dpop_nonce"' in response.headers.get("www-authenticate", ""):
            self.nonce = response.headers["dpop-nonce"]
            self._sign(request)
            response = yield request
            self.sent.append((request.method, response.status_code))


def mcp_app(issuer: FakeIssuer, settings: DPoPSettings) -> BearerAuthMiddleware:
    server: MCPServer[Any] = MCPServer("reports")

    @server.tool()
    def whoami(ctx: Context) -> str:
        """The agent the request's verified token is about (set by the middleware)."""
        request = ctx.request_context.request
        assert request is not None
        return str(request.state.agentauth_token.subject)

    lists = StaticStatusLists({LIST_URL: issuer.list_jwt})
    verifier = offline_verifier(issuer.ring.jwks(), resource=RESOURCE, issuer_url=ISSUER_URL, status_source=lists)
    return BearerAuthMiddleware(server.streamable_http_app(), verifier, required_scopes=["api.read"], dpop=settings)


async def test_the_official_mcp_client_calls_a_tool_with_a_dpop_bound_token() -> None:
    issuer = FakeIssuer()
    settings = DPoPSettings(nonces=DPoPNonces(os.urandom(32)))
    key = KeyPair.generate()
    token, claims = bound_token(issuer, key.public.thumbprint())
    auth = DPoPAuth(key, token)
    with serve(mcp_app(issuer, settings)) as url:
        async with (
            httpx2.AsyncClient(auth=auth, timeout=30) as http,
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            result = await session.call_tool("whoami", {})
        assert not result.is_error
        assert isinstance(result.content[0], TextContent) and result.content[0].text == claims["sub"]
        # The first request was sent without a nonce and answered use_dpop_nonce; every later one passed.
        assert auth.sent[:2] == [("POST", 401), ("POST", 200)]
        assert all(status < 300 for _, status in auth.sent[2:]), auth.sent

        # The same token as a plain bearer token (no proof): refused before the MCP app runs.
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        headers = {"accept": "application/json, text/event-stream", "authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(timeout=10) as plain:
            refused = await plain.post(f"{url}/mcp", json=initialize, headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('Bearer realm="agentauth", error="invalid_token"')
