"""Token activity (issue 17 item 1, the console's charts) on each backend: ``GET /api/v1/audit/activity`` counts
a tenant's token events per hour - grouped in the database - and for its busiest agents; another tenant's
tokens are not counted; an agent below the root sees its own subtree only; bad windows are refused."""

from __future__ import annotations

import httpx
import pytest

from agentauth.bootstrap import Services
from support import assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio
ACTIVITY = "/api/v1/audit/activity"


async def token(client: httpx.AsyncClient, api_key: str, agent_id: str | None = None) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_secret": api_key} | (
        {"client_id": agent_id} if agent_id else {}
    )
    return await client.post("/api/v1/auth/token", data=form)


async def test_activity_counts_the_tenants_tokens_per_hour_and_agent(
    client: httpx.AsyncClient, services: Services
) -> None:
    made = await quickstart(client, "root")
    admin, root_id = made["access_token"], made["agent"]["id"]
    child = ok(await client.post("/api/v1/agents", json={"name": "c", "agent_type": "tool", "scopes": ["audit.read"]},
                                 headers=bearer(admin)), 201)["agent"]["id"]  # fmt: skip
    key = ok(await client.post("/api/v1/credentials", json={"agent_id": child}, headers=bearer(admin)), 201)["raw_key"]
    for _ in range(3):
        ok(await token(client, key))
    ok(await token(client, made["api_key"]))
    other = await quickstart(client, "other")
    for _ in range(5):
        ok(await token(client, other["api_key"]))
    seen = ok(await client.get(ACTIVITY, headers=bearer(admin)))
    assert len(seen["hours"]) == 24 and seen["hours"][0]["start"] == seen["since"]
    now = seen["hours"][-1]
    assert now["issued"] == 5  # quickstart's pair, the root's client_credentials and the child's three
    assert sum(h["issued"] for h in seen["hours"]) == 5
    by_agent = {a["agent_id"]: a for a in seen["agents"]}
    assert by_agent[child]["issued"] == 3 and by_agent[root_id]["issued"] == 2
    assert other["agent"]["id"] not in by_agent
    # Below the root: its own subtree only.
    mine = ok(await token(client, key))["access_token"]
    own = ok(await client.get(ACTIVITY, headers=bearer(mine)))
    assert {a["agent_id"] for a in own["agents"]} == {child} and own["hours"][-1]["issued"] == 4
    week = ok(await client.get(ACTIVITY, params={"hours": 168}, headers=bearer(admin)))
    assert len(week["hours"]) == 168
    for hours in ("0", "169", "x"):
        assert_error(await client.get(ACTIVITY, params={"hours": hours}, headers=bearer(admin)), {400, 422}, None)
