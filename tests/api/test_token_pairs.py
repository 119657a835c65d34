"""Token pairs and the refresh token as its own credential (issue 12, items 17 and 18).

* Revoking either half of a pair revokes the pair (RFC 7009 section 2.1): an access token takes the refresh
  tokens of the family it was minted with (also after rotations, also when the access token itself already
  expired), a refresh token takes the access tokens minted from its family. Through the batched revocation round, the
  refresh-token path, REST and both MCP backends.
* A refresh token given alone (no Authorization, no client_secret) is the proof of possession: revoke (200) and
  introspect (its own state) work with it; anything else given alone - an access token, an unknown ``rt_``
  string, garbage - is answered as a request without credentials (401 ``invalid_token``) and changes nothing.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from api_support import mcp_client
from lifecycle_support import INACTIVE, INTROSPECT, REVOKE, TOKEN, client_token, introspect, jwt_payload, revoke
from mcp.client import Client
from mcp_types import CallToolResult, TextContent

from agentauth.bootstrap import Services
from support import assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio


@dataclass
class Pair:
    access: str
    refresh: str


async def pair(client: httpx.AsyncClient, api_key: str) -> Pair:
    body = await client_token(client, api_key)
    return Pair(body["access_token"], body["refresh_token"])


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": refresh_token})


async def route_status(client: httpx.AsyncClient, access: str) -> int:
    return (await client.get("/api/v1/agents", headers=bearer(access))).status_code


async def assert_dead(client: httpx.AsyncClient, api_key: str, p: Pair, what: str) -> None:
    assert await introspect(client, api_key, p.access) == INACTIVE, what
    assert await introspect(client, api_key, p.refresh) == INACTIVE, what
    assert await route_status(client, p.access) == 401, what
    assert_error(await refresh(client, p.refresh), 400, "invalid_grant", what)


async def assert_alive(client: httpx.AsyncClient, api_key: str, p: Pair, what: str) -> None:
    assert (await introspect(client, api_key, p.access))["active"] is True, what
    assert (await introspect(client, api_key, p.refresh))["active"] is True, what
    assert await route_status(client, p.access) == 200, what


async def audit_events(client: httpx.AsyncClient, token: str, action: str) -> list[dict[str, Any]]:
    page = await client.get("/api/v1/audit/events", params={"action": action, "limit": "100"}, headers=bearer(token))
    items: list[dict[str, Any]] = ok(page)["items"]
    return items


# -- item 17: either half revokes the pair ------------------------------------------------------------------


async def test_revoking_the_access_token_revokes_its_refresh_token(client: httpx.AsyncClient) -> None:
    tenant = await quickstart(client, "pairs")
    key = tenant["api_key"]
    mine, other = await pair(client, key), await pair(client, key)
    await revoke(client, mine.access, mine.access)  # the documented "revoke_token when done"
    await assert_dead(client, key, mine, "the revoked access token's pair")
    await assert_alive(client, key, other, "another pair of the same agent")
    (event,) = [e for e in await audit_events(client, other.access, "access_credential.revoked")]
    assert event["target_id"] == jwt_payload(mine.access)["jti"]
    assert event["details"]["cause"] == "revoked by request" and event["details"]["refresh_family_id"]


async def test_revoking_an_old_access_token_revokes_the_rotated_refresh_token(client: httpx.AsyncClient) -> None:
    tenant = await quickstart(client, "rotated")
    key = tenant["api_key"]
    first = await pair(client, key)
    rotated = ok(await refresh(client, first.refresh))
    second = Pair(rotated["access_token"], rotated["refresh_token"])
    await revoke(client, key, first.access)
    # The pair's refresh token was spent by the rotation: its family's live one, which replaced it, goes instead,
    # so the grant cannot be renewed. The rotated access token is a pair of its own and lives out its lifetime.
    assert await route_status(client, first.access) == 401
    assert await introspect(client, key, second.refresh) == INACTIVE
    assert_error(await refresh(client, second.refresh), 400, "invalid_grant")
    assert (await introspect(client, key, second.access))["active"] is True


async def test_revoking_an_expired_access_token_still_revokes_its_refresh_token(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await quickstart(client, "expired")
    key = tenant["api_key"]
    mine = await pair(client, key)
    real = services.core.clock
    monkeypatch.setattr(services.core, "clock", lambda: real() + timedelta(minutes=16))
    assert await introspect(client, key, mine.access) == INACTIVE
    assert (await introspect(client, key, mine.refresh))["active"] is True
    await revoke(client, key, mine.access)
    assert await introspect(client, key, mine.refresh) == INACTIVE
    assert_error(await refresh(client, mine.refresh), 400, "invalid_grant")


async def test_revoking_the_refresh_token_revokes_its_access_token(client: httpx.AsyncClient) -> None:
    tenant = await quickstart(client, "refresh half")
    key = tenant["api_key"]
    mine, other = await pair(client, key), await pair(client, key)
    await revoke(client, key, mine.refresh, token_type_hint="refresh_token")
    await assert_dead(client, key, mine, "the revoked refresh token's pair")
    await assert_alive(client, key, other, "another pair")


async def test_a_refresh_racing_the_revocation_of_its_pair_does_not_survive_it(client: httpx.AsyncClient) -> None:
    """PostgreSQL runs a refresh and the revocation of its pair's access token concurrently; whichever wins,
    no live refresh token of the family is left (``refresh_tokens.revoke_families``)."""
    tenant = await quickstart(client, "race")
    key = tenant["api_key"]
    for _ in range(30):
        mine = await pair(client, key)
        revoked, refreshed = await asyncio.gather(
            client.post(REVOKE, data={"token": mine.access}, headers=bearer(mine.access)),
            refresh(client, mine.refresh),
        )
        assert revoked.status_code == 200, revoked.text
        if refreshed.status_code == 200:
            new = refreshed.json()["refresh_token"]
            assert await introspect(client, key, new) == INACTIVE, "the refresh token a racing refresh minted"
            assert_error(await refresh(client, new), 400, "invalid_grant")
        else:
            assert_error(refreshed, 400, "invalid_grant")


# -- item 18: a refresh token alone -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [REVOKE, "/api/v1/auth/token/revoke"])
async def test_a_refresh_token_alone_revokes_its_pair(client: httpx.AsyncClient, path: str) -> None:
    tenant = await quickstart(client, "alone")
    key = tenant["api_key"]
    mine = await pair(client, key)
    for form in ({"token": mine.refresh, "token_type_hint": "refresh_token"}, {"token": mine.refresh}):
        response = await client.post(path, data=form)  # no Authorization, no client_secret
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        await assert_dead(client, key, mine, f"revoked alone with {sorted(form)}")
    (event,) = await audit_events(client, tenant["access_token"], "refresh_token.revoked")
    assert event["actor"] == tenant["agent"]["id"]


@pytest.mark.parametrize("path", [INTROSPECT, "/api/v1/auth/token/introspect"])
async def test_a_refresh_token_alone_introspects_itself(client: httpx.AsyncClient, path: str) -> None:
    tenant = await quickstart(client, "self")
    mine = await pair(client, tenant["api_key"])
    seen = ok(await client.post(path, data={"token": mine.refresh, "token_type_hint": "refresh_token"}))
    assert seen["active"] is True and seen["token_type"] == "refresh_token"
    assert seen["agent_id"] == tenant["agent"]["id"] and seen["client_id"] == tenant["agent"]["id"]
    # Its own state only: the same answer as its owner gets, nothing about the access token or other tokens.
    assert seen == await introspect(client, tenant["api_key"], mine.refresh)
    assert ok(await refresh(client, mine.refresh))["refresh_token"]  # spent by rotation: now inactive
    assert ok(await client.post(path, data={"token": mine.refresh})) == INACTIVE


async def test_a_token_alone_that_is_not_our_refresh_token_proves_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    tenant = await quickstart(client, "probe")
    key = tenant["api_key"]
    mine = await pair(client, key)
    spent = await pair(client, key)
    await revoke(client, key, spent.refresh)
    for token, hint in [
        (mine.access, None),  # an access token needs a caller (RFC 7662 section 2.1), even for itself
        (mine.access, "refresh_token"),
        ("rt_" + secrets.token_urlsafe(32), "refresh_token"),  # unknown
        ("rt_", None),
        ("not-a-token", None),
        ("", None),
    ]:
        form = {"token": token} | ({"token_type_hint": hint} if hint else {})
        for path in (REVOKE, INTROSPECT):
            body = assert_error(await client.post(path, data=form), 401, "invalid_token", f"{path} {token[:8]!r}")
            assert "client_secret" in body["error_description"]
    await assert_alive(client, key, mine, "after the probes")
    # A refresh token we issued but that is already dead still proves possession: revoking it again is 200.
    assert (await client.post(REVOKE, data={"token": spent.refresh})).status_code == 200
    assert ok(await client.post(INTROSPECT, data={"token": spent.refresh})) == INACTIVE
    # With a caller, unknown tokens are the usual silent no-op / inactive (RFC 7009 2.2, RFC 7662 2.2).
    unknown = "rt_" + secrets.token_urlsafe(32)
    assert (await client.post(REVOKE, data={"token": unknown}, headers=bearer(mine.access))).status_code == 200
    assert await introspect(client, mine.access, unknown) == INACTIVE


async def test_possession_is_enough_whoever_the_caller_is(client: httpx.AsyncClient) -> None:
    """The rule does not depend on who else the caller is: another tenant holding A's refresh token (leaked to it)
    could redeem it at the token endpoint, so seeing and revoking it gives it nothing more; and a bad bearer does
    not stand in the way over MCP, where the header may be stale (see the MCP test below)."""
    a, b = await quickstart(client, "a"), await quickstart(client, "b")
    leaked = await pair(client, a["api_key"])
    seen = await introspect(client, b["access_token"], leaked.refresh)
    assert seen["active"] is True and seen["agent_id"] == a["agent"]["id"]
    await revoke(client, b["api_key"], leaked.refresh)
    await assert_dead(client, a["api_key"], leaked, "revoked by its holder")
    assert (await client.get("/api/v1/agents", headers=bearer(b["access_token"]))).status_code == 200


# -- MCP, in process and through the REST-backed backend ----------------------------------------------------


def _text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


@pytest.fixture(params=["embedded", "rest"])
async def mcp(request: pytest.FixtureRequest, services: Services) -> AsyncIterator[Client]:
    """The in-process MCP client, over the embedded backend or the REST-backed one (real HTTP to the app)."""
    async with mcp_client(services, request.param, "203.0.113.9") as client:
        yield client


async def tool(mcp: Client, tool_name: str, /, **arguments: Any) -> dict[str, Any]:
    result = await mcp.call_tool(tool_name, arguments)
    assert not result.is_error, f"{tool_name}: {_text(result)}"
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def tool_error(mcp: Client, tool_name: str, /, **arguments: Any) -> str:
    result = await mcp.call_tool(tool_name, arguments)
    assert result.is_error, f"{tool_name} should fail: {result.structured_content}"
    return _text(result)


async def test_mcp_documented_one_argument_calls_with_a_refresh_token(mcp: Client) -> None:
    registered = await tool(mcp, "quickstart", name="mcp pairs", agent_type="tool")
    key = registered["api_key"]
    mine = await tool(mcp, "authenticate", api_key=key)
    seen = await tool(mcp, "introspect_token", token=mine["refresh_token"])
    assert seen["active"] is True and seen["token_type"] == "refresh_token"
    assert seen["agent_id"] == registered["agent"]["id"]
    # A stale or wrong access_token does not stand in the way of the refresh token's own proof.
    stale = await tool(mcp, "introspect_token", token=mine["refresh_token"], access_token="eyJ.e30.AAAA")
    assert stale == seen
    assert (await tool(mcp, "revoke_token", token=mine["refresh_token"]))["success"] is True
    assert await tool(mcp, "introspect_token", token=mine["refresh_token"]) == INACTIVE
    # ... and the pair's access token went with it (item 17).
    assert await tool(mcp, "introspect_token", token=mine["access_token"]) == INACTIVE
    text = await tool_error(mcp, "list_agents", access_token=mine["access_token"])
    assert text.startswith("invalid_token: "), text
    # Already revoked: still one of ours, still a success.
    assert (await tool(mcp, "revoke_token", token=mine["refresh_token"]))["success"] is True
    # Not one of ours, alone: proves nothing; with a valid caller: the RFC's silent success / inactive.
    unknown = "rt_" + secrets.token_urlsafe(32)
    assert (await tool_error(mcp, "revoke_token", token=unknown)).startswith("invalid_token: not a refresh token")
    assert (await tool_error(mcp, "introspect_token", token=unknown)).startswith("invalid_token: not a refresh token")
    caller = registered["access_token"]
    assert (await tool(mcp, "revoke_token", token=unknown, access_token=caller))["success"] is True
    assert await tool(mcp, "introspect_token", token=unknown, access_token=caller) == INACTIVE


async def test_mcp_revoking_the_access_token_kills_its_refresh_token(mcp: Client) -> None:
    registered = await tool(mcp, "quickstart", name="mcp done", agent_type="tool")
    mine = await tool(mcp, "authenticate", api_key=registered["api_key"])
    other = await tool(mcp, "authenticate", api_key=registered["api_key"])
    assert (await tool(mcp, "revoke_token", token=mine["access_token"]))["success"] is True  # "when done"
    assert await tool(mcp, "introspect_token", token=mine["refresh_token"]) == INACTIVE
    text = await tool_error(mcp, "refresh_token", refresh_token_value=mine["refresh_token"])
    assert text.startswith("invalid_grant: "), text
    assert (await tool(mcp, "introspect_token", token=other["refresh_token"]))["active"] is True
    assert (await tool(mcp, "refresh_token", refresh_token_value=other["refresh_token"]))["access_token"]
