"""A third-party MCP server for the tests: the official Python MCP SDK (streamable HTTP at ``/mcp``, run with
``uvicorn third_party_mcp_server:app``), accepting only AgentAuth access tokens whose ``aud`` names it
(agentauth.sdk's ``AgentAuthTokenVerifier`` over an ``AsyncOnlineVerifier`` that fetches the issuer's JWKS), and
publishing RFC 9728 protected resource metadata (``/.well-known/oauth-protected-resource/mcp``) that names
AgentAuth as its authorization server - what an MCP client's auth discovery starts from.

Configured by the environment: ``AGENTAUTH_ISSUER_URL`` and ``MCP_RESOURCE_URL`` (this server's ``/mcp`` URL, the
identifier it is registered under as a resource server). Its one tool, ``whoami``, answers with the token's
subject, client, scopes and audience, so a test sees what the server accepted.
"""

from __future__ import annotations

import os
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from agentauth.sdk import AsyncOnlineVerifier
from agentauth.sdk.mcp_auth import AgentAuthTokenVerifier

ISSUER_URL = os.environ["AGENTAUTH_ISSUER_URL"]
RESOURCE_URL = os.environ["MCP_RESOURCE_URL"]

server: MCPServer[Any] = MCPServer(
    "third-party",
    token_verifier=AgentAuthTokenVerifier(AsyncOnlineVerifier(ISSUER_URL, resource=RESOURCE_URL)),
    auth=AuthSettings(
        issuer_url=ISSUER_URL, resource_server_url=RESOURCE_URL, required_scopes=[], validate_token_resource=True
    ),
)


@server.tool()
def whoami() -> dict[str, Any]:
    """The access token this call was authorized with, as the server verified it."""
    token = get_access_token()
    assert token is not None  # the bearer middleware let the request through
    claims = token.claims or {}
    return {"sub": token.subject, "client_id": token.client_id, "scopes": token.scopes, "aud": claims.get("aud")}


app = server.streamable_http_app()
