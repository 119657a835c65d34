"""Policy writes on the general write path (issue 13 item 7), over REST against the real app, on every backend:
the per-tenant limit holds under concurrent creates - through one replica and through two on the same database -
and a write is what the very next ``check_permission`` and the next authorization of a route judge by, on the
replica that wrote it and on another one (whose compiled set is then stale and reloaded by version).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from agentauth.api.app import create_app
from agentauth.bootstrap import Services, build_services
from agentauth.issuer import policies as policies_module
from support import ISSUER_URL, bearer, quickstart

pytestmark = pytest.mark.anyio


def body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "p", "effect": "allow", "subjects": {"agent_types": ["tool"]}, "actions": ["read"],
        "resources": ["docs/**"],
    } | fields  # fmt: skip


@pytest.fixture
async def replica(services: Services, settings_factory: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second replica: its own services (engines, ports, compiled sets) on the same database and keys."""
    other = await build_services(settings_factory(key_encryption_key=services.settings.key_encryption_key))
    app = create_app(services=other)
    app.state.services = other
    transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as http:
            yield http
    finally:
        await other.close()


async def tool(client: httpx.AsyncClient, token: str) -> str:
    """A tool agent whose own scopes allow nothing outside AgentAuth's API: policies alone decide on docs/."""
    request = {"name": "t", "agent_type": "tool", "scopes": ["agents.read"]}
    created = await client.post("/api/v1/agents", json=request, headers=bearer(token))
    assert created.status_code == 201, created.text
    return str(created.json()["agent"]["id"])


async def check(client: httpx.AsyncClient, token: str, agent_id: str, resource: str = "docs/1") -> dict[str, Any]:
    answer = await client.post(
        "/api/v1/policies/evaluate",
        json={"agent_id": agent_id, "action": "read", "resource": resource},
        headers=bearer(token),
    )
    assert answer.status_code == 200, answer.text
    decision: dict[str, Any] = answer.json()
    return decision


async def stored_policies(services: Services, tenant_id: str) -> tuple[int, int]:
    """(policies, policy.created events) of the tenant, counted in the database."""
    async with services.engine.connect() as conn:
        rows = await conn.execute(text("SELECT count(*) FROM policies WHERE tenant_id = :t"), {"t": tenant_id})
        events = await conn.execute(
            text("SELECT count(*) FROM audit_events WHERE tenant_id = :t AND action = 'policy.created'"),
            {"t": tenant_id},
        )
        return int(rows.scalar_one()), int(events.scalar_one())


async def test_the_limit_holds_under_concurrent_creates(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policies_module, "MAX_POLICIES_PER_TENANT", 5)
    root = await quickstart(client, "root")
    auth = bearer(root["access_token"])
    answers = await asyncio.gather(*(client.post("/api/v1/policies", json=body(), headers=auth) for _ in range(16)))
    assert sorted(a.status_code for a in answers) == [201] * 5 + [400] * 11
    refused = [a.json() for a in answers if a.status_code == 400]
    assert all(
        r == {"error": "invalid_request", "error_description": "a tenant holds at most 5 policies"} for r in refused
    )
    assert await stored_policies(services, root["agent"]["id"]) == (5, 5)
    listed = (await client.get("/api/v1/policies", headers=auth)).json()
    assert listed["total"] == 5
    assert {p["id"] for p in listed["items"]} == {a.json()["id"] for a in answers if a.status_code == 201}
    # Deleting one makes room for exactly one more.
    gone = listed["items"][0]["id"]
    assert (await client.delete(f"/api/v1/policies/{gone}", headers=auth)).status_code == 204
    again = await asyncio.gather(*(client.post("/api/v1/policies", json=body(), headers=auth) for _ in range(4)))
    assert sorted(a.status_code for a in again) == [201, 400, 400, 400]
    assert (await stored_policies(services, root["agent"]["id"]))[0] == 5


async def test_the_limit_holds_across_replicas(
    client: httpx.AsyncClient, replica: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policies_module, "MAX_POLICIES_PER_TENANT", 6)
    root = await quickstart(client, "root")
    auth = bearer(root["access_token"])
    # Each replica's compiled set goes stale with every create of the other: the plans are built again.
    answers = await asyncio.gather(
        *(http.post("/api/v1/policies", json=body(), headers=auth) for _ in range(8) for http in (client, replica))
    )
    assert sorted(a.status_code for a in answers) == [201] * 6 + [400] * 10, [a.text for a in answers]
    assert await stored_policies(services, root["agent"]["id"]) == (6, 6)
    for http in (client, replica):
        assert (await http.get("/api/v1/policies", headers=auth)).json()["total"] == 6


async def test_a_write_is_what_the_next_check_judges_by(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "root")
    token, auth = root["access_token"], bearer(root["access_token"])
    agent = await tool(client, token)
    assert (await check(client, token, agent))["basis"] == "default"  # no policy yet
    created = await client.post("/api/v1/policies", json=body(name="docs"), headers=auth)
    assert created.status_code == 201, created.text
    policy_id = created.json()["id"]
    first = await check(client, token, agent)
    assert first["allowed"] is True and first["matched_policy"]["id"] == policy_id
    replaced = await client.put(f"/api/v1/policies/{policy_id}", json=body(name="docs", effect="deny"), headers=auth)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["created_at"] == created.json()["created_at"]
    assert replaced.json()["updated_at"] >= created.json()["updated_at"]
    second = await check(client, token, agent)
    assert (second["allowed"], second["effect"], second["basis"]) == (False, "deny", "policy")
    disabled = await client.put(f"/api/v1/policies/{policy_id}", json=body(enabled=False), headers=auth)
    assert disabled.status_code == 200
    assert (await check(client, token, agent))["basis"] == "default"
    assert (await client.delete(f"/api/v1/policies/{policy_id}", headers=auth)).status_code == 204
    assert (await client.get(f"/api/v1/policies/{policy_id}", headers=auth)).status_code == 404
    for missing in (
        client.put(f"/api/v1/policies/{policy_id}", json=body(), headers=auth),
        client.delete(f"/api/v1/policies/{policy_id}", headers=auth),
    ):
        answer = await missing
        assert answer.status_code == 404 and answer.json()["error_description"] == "no such policy"


async def test_a_write_on_one_replica_is_what_the_other_authorizes_by(
    client: httpx.AsyncClient, replica: httpx.AsyncClient
) -> None:
    root = await quickstart(client, "root")
    token, auth = root["access_token"], bearer(root["access_token"])
    agent = await tool(client, token)
    assert (await replica.get("/api/v1/agents", headers=auth)).status_code == 200  # replica B's set: no policy
    assert (await check(replica, token, agent))["allowed"] is False
    deny = body(name="no listing", effect="deny", subjects={"agent_ids": [root["agent"]["id"]]},
                resources=["api/v1/agents"])  # fmt: skip
    created = await client.post("/api/v1/policies", json=deny, headers=auth)
    assert created.status_code == 201, created.text
    # Replica B's next authorization of a route, and its next check, see replica A's write.
    refused = await replica.get("/api/v1/agents", headers=auth)
    assert refused.status_code == 403 and "denied by policy" in refused.json()["error_description"]
    allow = await replica.post("/api/v1/policies", json=body(name="docs"), headers=auth)
    assert allow.status_code == 201
    decision = await check(client, token, agent)  # A's set is stale now: reloaded by version
    assert decision["allowed"] is True and decision["matched_policy"]["id"] == allow.json()["id"]
    # A replaces B's policy (not in A's set as A last wrote it) and deletes its own; B judges by both at once.
    replaced = await client.put(
        f"/api/v1/policies/{allow.json()['id']}", json=body(name="docs", resources=["other/**"]), headers=auth
    )
    assert replaced.status_code == 200 and replaced.json()["created_at"] == allow.json()["created_at"]
    assert (await client.delete(f"/api/v1/policies/{created.json()['id']}", headers=auth)).status_code == 204
    assert (await replica.get("/api/v1/agents", headers=auth)).status_code == 200
    assert (await check(replica, token, agent))["allowed"] is False
    assert (await check(replica, token, agent, "other/x"))["allowed"] is True
    names = [p["name"] for p in (await replica.get("/api/v1/policies", headers=auth)).json()["items"]]
    assert names == ["docs"]
