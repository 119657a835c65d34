"""The documented flow end to end with the official MCP client: over streamable HTTP against ``agentauth serve``,
over stdio embedded on a local data directory, and over stdio against the running server's REST API."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from mcp_support import (
    RunningServer,
    call,
    documented_flow,
    fail,
    hermetic_env,
    http_session,
    secrets_of,
    start_server,
    stdio_session,
)

pytestmark = pytest.mark.anyio


async def test_documented_flow_over_streamable_http(server: RunningServer) -> None:
    async with http_session(f"{server.url}/mcp") as session:
        server.secrets += await documented_flow(session)


@pytest.mark.parametrize("path", ["/mcp", "/mcp/"])
async def test_both_paths_answer_without_redirect(server: RunningServer, path: str) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=server.url, follow_redirects=False) as http:
        response = await http.post(path, json=initialize, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["serverInfo"]["name"] == "agentauth"
    async with http_session(f"{server.url}{path}") as session:
        assert (await call(session, "discover"))["issuer"] == server.url


async def test_access_token_from_the_authorization_header(server: RunningServer) -> None:
    async with http_session(f"{server.url}/mcp") as session:
        registered = await call(session, "quickstart", name="header", agent_type="assistant")
    token = registered["access_token"]
    server.secrets += secrets_of(registered)
    async with http_session(f"{server.url}/mcp", {"Authorization": f"Bearer {token}"}) as session:
        agents = await call(session, "list_agents")
        assert [a["id"] for a in agents["items"]] == [registered["agent"]["id"]]
        assert (await call(session, "get_agent", agent_id=registered["agent"]["id"]))["is_root"] is True
        assert (await call(session, "introspect_token", token=token))["active"] is True
        # An explicit parameter wins over the header.
        assert (await fail(session, "list_agents", access_token="not-a-token")).startswith("invalid_token: ")
    # A bearer token that is not valid (malformed, revoked, expired, for another resource): 401 with RFC 9728's
    # resource_metadata before any MCP message, so an MCP client starts its authorization discovery.
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
    async with httpx.AsyncClient(base_url=server.url) as http:
        for bad in ("not-a-token", token[:-4] + "AAAA"):
            refused = await http.post("/mcp", json=initialize, headers={
                "Authorization": f"Bearer {bad}", "Accept": "application/json, text/event-stream"})  # fmt: skip
            assert refused.status_code == 401, refused.text
            challenge = refused.headers["www-authenticate"]
            assert challenge.startswith('Bearer error="invalid_token"'), challenge
            assert f'resource_metadata="{server.url}/.well-known/oauth-protected-resource/mcp"' in challenge
            assert refused.headers["cache-control"] == "no-store"


async def test_protected_resource_metadata_describes_mcp(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        mcp_meta = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
        root_meta = (await http.get("/.well-known/oauth-protected-resource")).json()
    # RFC 9728 section 3.3: "resource" is the identifier the metadata URL was built from.
    assert mcp_meta["resource"] == f"{server.url}/mcp"
    assert mcp_meta["authorization_servers"] == [server.url] and mcp_meta["bearer_methods_supported"] == ["header"]
    assert "agents.read" in mcp_meta["scopes_supported"]
    assert root_meta["resource"] == server.url


async def test_documented_flow_over_stdio_embedded(tmp_path: Path) -> None:
    env = hermetic_env(AGENTAUTH_DATA_DIR=str(tmp_path / "data"), AGENTAUTH_MCP_LOG_LEVEL="DEBUG")
    log = tmp_path / "stdio.log"
    async with stdio_session(env, log) as session:
        tools = await session.list_tools()
        assert "access_token" in next(t for t in tools.tools if t.name == "list_agents").input_schema["required"]
        secrets = await documented_flow(session)
    assert (tmp_path / "data" / "agentauth.db").exists()  # embedded: the local data directory, no server
    text = log.read_text(encoding="utf-8")
    assert not [s for s in secrets if s in text]


async def test_documented_flow_over_stdio_against_agentauth_url(server: RunningServer, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/api/v1/agents/quickstart", json={"name": "default key", "agent_type": "tool"})
    preset = response.json()
    server.secrets += secrets_of(preset)
    env = hermetic_env(AGENTAUTH_URL=server.url, AGENTAUTH_API_KEY=preset["api_key"])
    log = tmp_path / "stdio.log"
    async with stdio_session(env, log) as session:
        server.secrets += await documented_flow(session, default_key_agent=preset["agent"]["id"])
    assert not (tmp_path / "data").exists()  # remote: nothing local
    text = log.read_text(encoding="utf-8")
    assert not [s for s in server.secrets if s in text]


async def test_quickstart_rate_limit_per_ip_is_shared_with_rest(tmp_path: Path) -> None:
    limited = start_server(tmp_path, AGENTAUTH_QUICKSTART_RATE_PER_IP="2")
    try:
        body = {"name": "flood", "agent_type": "tool"}
        async with httpx.AsyncClient(base_url=limited.url) as rest, http_session(f"{limited.url}/mcp") as session:
            assert (await rest.post("/api/v1/agents/quickstart", json=body)).status_code == 201
            registered = await call(session, "quickstart", **body)
            limited.secrets += secrets_of(registered)
            text = await fail(session, "quickstart", **body)
            assert text.startswith("rate_limited: too many requests; retry after the indicated delay. Wait ")
            assert (await rest.post("/api/v1/agents/quickstart", json=body)).status_code == 429
    finally:
        limited.stop()
    assert not [s for s in limited.secrets if s in limited.log_text()]


async def test_dns_rebinding_protection_on_loopback(server: RunningServer) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Accept": "application/json, text/event-stream", "Host": "rebound.example"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        refused = await http.post("/mcp", json=initialize, headers=headers)
        cross_origin = await http.post(
            "/mcp", json=initialize, headers={"Accept": headers["Accept"], "Origin": "https://evil.example"}
        )
    assert refused.status_code == 421
    assert cross_origin.status_code == 403
