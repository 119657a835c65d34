"""What a tool result looks like (issue 12, item 19): an answer that hands out a secret has that secret alone as
its first text item - what the product document's example reads as ``result.content[0].text`` - with the full
answer in ``structuredContent`` and again as the next text item (JSON); every other answer is its JSON alone.
One rule (``agentauth.mcp.base.headline_first``) for every transport: streamable HTTP and stdio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp_support import RunningServer, hermetic_env, http_session, secrets_of, stdio_session
from mcp_types import CallToolResult, TextContent

pytestmark = pytest.mark.anyio


def texts(result: CallToolResult) -> list[str]:
    assert not result.is_error, result
    assert all(isinstance(block, TextContent) for block in result.content)
    return [block.text for block in result.content if isinstance(block, TextContent)]


def headlined(result: CallToolResult, field: str) -> dict[str, Any]:
    """The structured answer, after checking: [its ``field``, its JSON]."""
    structured = result.structured_content
    assert isinstance(structured, dict)
    first, *rest = texts(result)
    assert first == structured[field]
    assert [json.loads(text) for text in rest] == [structured]
    return structured


def plain(result: CallToolResult) -> dict[str, Any]:
    structured = result.structured_content
    assert isinstance(structured, dict)
    assert [json.loads(text) for text in texts(result)] == [structured]
    return structured


async def each_secret_comes_first(session: ClientSession) -> list[str]:
    tool = session.call_tool
    registered = headlined(await tool("quickstart", {"name": "first", "agent_type": "tool"}), "api_key")
    assert registered["api_key"].startswith("ak_live_") and registered["access_token"].count(".") == 2
    pair = headlined(await tool("authenticate", {"api_key": registered["api_key"]}), "access_token")
    refreshed = headlined(await tool("refresh_token", {"refresh_token_value": pair["refresh_token"]}), "access_token")
    token = refreshed["access_token"]
    agent_id = registered["agent"]["id"]
    key = headlined(await tool("create_credential", {"agent_id": agent_id, "access_token": token}), "raw_key")
    rotated = headlined(await tool("rotate_credential", {"credential_id": key["id"], "access_token": token}), "raw_key")
    assert rotated["raw_key"].startswith("ak_live_") and rotated["raw_key"] != key["raw_key"]

    # Answers without a secret of their own keep one JSON item.
    assert plain(await tool("list_agents", {"access_token": token}))["total"] == 1
    assert plain(await tool("introspect_token", {"token": token}))["active"] is True
    assert plain(await tool("revoke_credential", {"credential_id": rotated["id"], "access_token": token}))
    # A tool error stays one text item, the error.
    refused = await tool("authenticate", {"api_key": key["raw_key"]})
    assert refused.is_error and len(refused.content) == 1
    return secrets_of(registered, pair, refreshed, key, rotated)


async def test_secret_first_over_streamable_http(server: RunningServer) -> None:
    async with http_session(f"{server.url}/mcp") as session:
        server.secrets += await each_secret_comes_first(session)


async def test_secret_first_over_stdio(tmp_path: Path) -> None:
    async with stdio_session(
        hermetic_env(AGENTAUTH_DATA_DIR=str(tmp_path / "data")), tmp_path / "stdio.log"
    ) as session:
        await each_secret_comes_first(session)
