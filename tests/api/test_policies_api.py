"""``/api/v1/policies`` through the real app (issue 5, Build 3): CRUD, validation, ``/evaluate`` (check_permission,
a dry run that changes nothing) and route authorization - every REST route goes through the same engine, so a
deny policy takes a route away and deleting it gives the route back.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text

from agentauth.bootstrap import Services
from support import bearer, quickstart

pytestmark = pytest.mark.anyio
TABLES = (
    "agents", "api_keys", "refresh_tokens", "credentials", "delegations", "policies", "policy_versions",
    "status_lists", "status_blocks", "used_assertions", "audit_events", "signing_keys",
)  # fmt: skip


def body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "read docs",
        "effect": "allow",
        "subjects": {"agent_types": ["tool"]},
        "actions": ["read"],
        "resources": ["docs/**"],
        "priority": 3,
    } | fields


async def everything(services: Services) -> dict[str, Any]:
    """Row counts of every table, and the policies themselves."""
    async with services.engine.connect() as conn:
        state: dict[str, Any] = {}
        for table in TABLES:  # fixed names from the schema, not input
            state[table] = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608
        state["policy_rows"] = [tuple(r) for r in await conn.execute(text("SELECT * FROM policies ORDER BY id"))]
    return state


async def child(client: httpx.AsyncClient, token: str, name: str, **fields: Any) -> dict[str, Any]:
    created = await client.post(
        "/api/v1/agents", json={"name": name, "agent_type": "tool", **fields}, headers=bearer(token)
    )
    assert created.status_code == 201, created.text
    agent: dict[str, Any] = created.json()["agent"]
    return agent


@pytest.fixture
async def root(client: httpx.AsyncClient) -> dict[str, Any]:
    return await quickstart(client, "root")


async def test_crud(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    auth = bearer(root["access_token"])
    created = await client.post("/api/v1/policies", json=body(description="tools read docs"), headers=auth)
    assert created.status_code == 201, created.text
    policy = created.json()
    assert policy["id"].startswith("pol_") and policy["enabled"] is True and policy["conditions"] == {}
    assert {k: policy[k] for k in body()} == body()

    second = await client.post("/api/v1/policies", json=body(name="second", priority=9), headers=auth)
    listing = await client.get("/api/v1/policies", headers=auth)
    assert listing.status_code == 200 and listing.json()["total"] == 2
    assert [p["id"] for p in listing.json()["items"]] == [second.json()["id"], policy["id"]]  # priority order

    got = await client.get(f"/api/v1/policies/{policy['id']}", headers=auth)
    assert got.status_code == 200 and got.json() == policy

    changed = body(name="deny docs", effect="deny", priority=-5, conditions={"source_ips": ["10.0.0.0/8"]})
    put = await client.put(f"/api/v1/policies/{policy['id']}", json=changed, headers=auth)
    assert put.status_code == 200, put.text
    assert {k: put.json()[k] for k in changed} == changed and put.json()["id"] == policy["id"]
    assert (await client.get(f"/api/v1/policies/{policy['id']}", headers=auth)).json()["effect"] == "deny"

    deleted = await client.delete(f"/api/v1/policies/{policy['id']}", headers=auth)
    assert deleted.status_code == 204 and deleted.content == b""
    for response in (
        await client.get(f"/api/v1/policies/{policy['id']}", headers=auth),
        await client.delete(f"/api/v1/policies/{policy['id']}", headers=auth),
        await client.put(f"/api/v1/policies/{policy['id']}", json=body(), headers=auth),
    ):
        assert (response.status_code, response.json()["error"]) == (404, "not_found")
    assert (await client.get("/api/v1/policies", headers=auth)).json()["total"] == 1


async def test_other_tenants_policies_are_invisible(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    created = await client.post("/api/v1/policies", json=body(), headers=bearer(root["access_token"]))
    policy_id = created.json()["id"]
    other = bearer((await quickstart(client, "other"))["access_token"])
    for response in (
        await client.get(f"/api/v1/policies/{policy_id}", headers=other),
        await client.put(f"/api/v1/policies/{policy_id}", json=body(name="hijacked"), headers=other),
        await client.delete(f"/api/v1/policies/{policy_id}", headers=other),
    ):
        assert (response.status_code, response.json()["error"]) == (404, "not_found")
    assert (await client.get("/api/v1/policies", headers=other)).json() == {"items": [], "total": 0}
    mine = await client.get(f"/api/v1/policies/{policy_id}", headers=bearer(root["access_token"]))
    assert mine.json()["name"] == "read docs"


@pytest.mark.parametrize(
    "change",
    [
        {"effect": "permit"},
        {"actions": ["fly"]},
        {"actions": []},
        {"subjects": {"groups": ["x"]}},
        {"subjects": {}},
        {"resources": []},
        {"resources": ["docs/**x"]},
        {"resources": ["docs/../admin"]},
        {"conditions": {"source_ips": ["10.0.0.0/33"]}},
        {"conditions": {"time_window": {"start": "9am", "end": "17:00"}}},
        {"conditions": {"geo": "EU"}},
        {"conditions": {"max_delegation_depth": 11}},
        {"priority": 1001},
        {"name": ""},
        {"unexpected": True},
    ],
)
async def test_validation_errors(
    client: httpx.AsyncClient, services: Services, root: dict[str, Any], change: dict[str, Any]
) -> None:
    before = await everything(services)
    response = await client.post("/api/v1/policies", json=body(**change), headers=bearer(root["access_token"]))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request"), response.text
    assert response.json()["error_description"]
    assert await everything(services) == before


async def test_policy_routes_need_policy_scopes(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    key = await client.post(
        "/api/v1/credentials", json={"scopes": ["agents.read"]}, headers=bearer(root["access_token"])
    )
    token = await client.post(
        "/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": key.json()["raw_key"]}
    )
    weak = bearer(token.json()["access_token"])
    for response in (
        await client.get("/api/v1/policies", headers=weak),
        await client.post("/api/v1/policies", json=body(), headers=weak),
        await client.post(
            "/api/v1/policies/evaluate",
            json={"agent_id": root["agent"]["id"], "action": "read", "resource": "x"},
            headers=weak,
        ),
    ):
        assert (response.status_code, response.json()["error"]) == (403, "insufficient_scope")


async def test_evaluate_reports_the_decision_and_changes_nothing(
    client: httpx.AsyncClient, services: Services, root: dict[str, Any]
) -> None:
    auth = bearer(root["access_token"])
    tool = await child(client, root["access_token"], "tool")
    narrow = await child(client, root["access_token"], "narrow", scopes=["delegations.read"])
    allow = (await client.post("/api/v1/policies", json=body(), headers=auth)).json()
    deny = (
        await client.post(
            "/api/v1/policies",
            json=body(name="no secrets", effect="deny", resources=["docs/secret/**"], priority=-10),
            headers=auth,
        )
    ).json()
    office = body(
        name="office",
        subjects={"agent_ids": [narrow["id"]]},
        resources=["intranet/**"],
        conditions={"source_ips": ["10.0.0.0/8"]},
    )
    await client.post("/api/v1/policies", json=office, headers=auth)
    grant = await client.post(
        "/api/v1/delegations", json={"delegate_agent_id": narrow["id"], "scopes": ["agents.read"]}, headers=auth
    )
    assert grant.status_code == 201, grant.text

    async def evaluate(agent: dict[str, Any], action: str, resource: str, **extra: Any) -> dict[str, Any]:
        request = {"agent_id": agent["id"], "action": action, "resource": resource, **extra}
        response = await client.post("/api/v1/policies/evaluate", json=request, headers=auth)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        assert set(result) == {"allowed", "effect", "basis", "matched_policy", "delegation_id", "reasons"}
        return result

    before = await everything(services)
    by_policy = await evaluate(tool, "read", "docs/guide")
    assert by_policy == {
        "allowed": True,
        "effect": "allow",
        "basis": "policy",
        "matched_policy": {"id": allow["id"], "name": "read docs", "effect": "allow", "priority": 3},
        "delegation_id": None,
        "reasons": ["policy 'read docs' (priority 3) applies to agent type tool"],
    }
    denied = await evaluate(tool, "read", "docs/secret/plan")
    assert (denied["allowed"], denied["effect"], denied["basis"]) == (False, "deny", "policy")
    assert denied["matched_policy"]["id"] == deny["id"] and "deny overrides any allow" in denied["reasons"]
    by_scope = await evaluate(tool, "read", "api/v1/agents/x")
    assert (by_scope["allowed"], by_scope["basis"], by_scope["matched_policy"]) == (True, "scope", None)
    by_delegation = await evaluate(narrow, "read", "api/v1/agents/x")
    assert (by_delegation["basis"], by_delegation["delegation_id"]) == ("delegation", grant.json()["id"])
    default = await evaluate(narrow, "write", "api/v1/agents/x")
    assert (default["allowed"], default["effect"], default["basis"]) == (False, "deny", "default")
    # source_ip evaluates as if from that address; without it, the caller's own address counts.
    assert (await evaluate(narrow, "read", "intranet/wiki", source_ip="10.9.8.7"))["allowed"]
    assert not (await evaluate(narrow, "read", "intranet/wiki", source_ip="192.0.2.1"))["allowed"]
    assert not (await evaluate(narrow, "read", "intranet/wiki"))["allowed"]  # from 203.0.113.7
    assert await everything(services) == before


async def test_evaluate_errors(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    auth = bearer(root["access_token"])
    other = await quickstart(client, "other")
    for agent_id in (other["agent"]["id"], "agt_" + "0" * 24):
        response = await client.post(
            "/api/v1/policies/evaluate", json={"agent_id": agent_id, "action": "read", "resource": "docs"}, headers=auth
        )
        assert (response.status_code, response.json()["error"]) == (404, "not_found")
    for bad in ({"action": "fly"}, {"resource": "docs/../admin"}, {"resource": ""}, {"extra": 1}):
        request = {"agent_id": root["agent"]["id"], "action": "read", "resource": "docs"} | bad
        response = await client.post("/api/v1/policies/evaluate", json=request, headers=auth)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request"), bad


async def test_a_deny_policy_takes_a_route_away_and_deleting_it_gives_it_back(
    client: httpx.AsyncClient, root: dict[str, Any]
) -> None:
    auth = bearer(root["access_token"])
    assert (await client.get("/api/v1/agents", headers=auth)).status_code == 200
    deny = body(
        name="no agent API",
        effect="deny",
        subjects={"agent_ids": [root["agent"]["id"]]},
        actions=["*"],
        resources=["api/v1/agents/**"],
    )
    created = await client.post("/api/v1/policies", json=deny, headers=auth)
    assert created.status_code == 201, created.text
    for path in ("/api/v1/agents", f"/api/v1/agents/{root['agent']['id']}"):
        refused = await client.get(path, headers=auth)
        assert (refused.status_code, refused.json()["error"]) == (403, "access_denied"), path
        assert "no agent API" in refused.json()["error_description"]
    assert (await client.get("/api/v1/policies", headers=auth)).status_code == 200  # other routes unaffected
    assert (await client.delete(f"/api/v1/policies/{created.json()['id']}", headers=auth)).status_code == 204
    assert (await client.get("/api/v1/agents", headers=auth)).status_code == 200


async def test_route_authorization_uses_action_and_source_ip(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    auth = bearer(root["access_token"])
    tool = await child(client, root["access_token"], "tool")
    # POST /api/v1/delegations is the 'delegate' action; listing is 'read'.
    no_delegating = body(
        name="no delegating",
        effect="deny",
        subjects={"all": True},
        actions=["delegate"],
        resources=["api/v1/delegations"],
    )
    policy = (await client.post("/api/v1/policies", json=no_delegating, headers=auth)).json()
    refused = await client.post(
        "/api/v1/delegations", json={"delegate_agent_id": tool["id"], "scopes": ["agents.read"]}, headers=auth
    )
    assert (refused.status_code, refused.json()["error"]) == (403, "access_denied")
    assert (await client.get("/api/v1/delegations", headers=auth)).status_code == 200
    # The test client calls from 203.0.113.7: a deny for another network does not apply, one for its own does.
    for cidr, status in (("198.51.100.0/24", 201), ("203.0.113.0/24", 403)):
        update = body(
            name="no delegating",
            effect="deny",
            subjects={"all": True},
            actions=["delegate"],
            resources=["api/v1/delegations"],
            conditions={"source_ips": [cidr]},
        )
        assert (await client.put(f"/api/v1/policies/{policy['id']}", json=update, headers=auth)).status_code == 200
        response = await client.post(
            "/api/v1/delegations", json={"delegate_agent_id": tool["id"], "scopes": ["agents.read"]}, headers=auth
        )
        assert response.status_code == status, (cidr, response.text)


async def test_badly_typed_subjects_are_refused(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    # Regression (fixed in aa6590a): {'agent_ids': '<id>'} was stored and, as a set of characters, never matched;
    # {'all': 'false'} selected everyone.
    for subjects in ({"agent_ids": root["agent"]["id"]}, {"all": "false"}, {"trust_levels": "basic"}):
        deny = body(effect="deny", subjects=subjects, actions=["*"], resources=["api/v1/agents/**"])
        response = await client.post("/api/v1/policies", json=deny, headers=bearer(root["access_token"]))
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request"), subjects
