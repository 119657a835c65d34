"""A deny policy naming an agent binds what that agent acts through (issue 12, item 5: the agent was refused
directly, 403, and then did the same through a sub-agent it had just created, 201).

The choice: the agent may still create sub-agents (that is not what it was denied), but a deny naming it also
binds every agent below it and every delegate acting on its behalf - whenever they were created. An *allow*
naming an agent does not carry over to them: that would widen access.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_support import assert_unchanged, assertion_for, make_child, snapshot
from delegation_support import child_with_key, delegate, exchange

from agentauth.bootstrap import Services
from support import assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def deny_minting_keys(agent_id: str) -> dict[str, Any]:
    return {
        "name": "no new API keys for X",
        "effect": "deny",
        "subjects": {"agent_ids": [agent_id]},
        "actions": ["write"],
        "resources": ["api/v1/credentials", "api/v1/credentials/**"],
        "priority": 0,
    }


async def test_a_denied_agent_cannot_act_through_a_sub_agent_it_creates(
    client: httpx.AsyncClient, services: Services
) -> None:
    root = await quickstart(client, "root")
    x, _, x_token = await make_child(client, root["access_token"], "x")
    ok(
        await client.post("/api/v1/policies", json=deny_minting_keys(x["id"]), headers=bearer(root["access_token"])),
        201,
    )

    before = await snapshot(services)
    direct = await client.post("/api/v1/credentials", json={"agent_id": x["id"]}, headers=bearer(x_token))
    assert_error(direct, 403, "access_denied", "X directly")
    await assert_unchanged(services, before, "after X's refused attempt")

    # X may still create a sub-agent (it was not denied that) ...
    created = ok(
        await client.post("/api/v1/agents", json={"name": "c", "agent_type": "tool"}, headers=bearer(x_token)), 201
    )
    child = created["agent"]["id"]
    grant = {"grant_type": JWT_BEARER, "assertion": assertion_for(created)}
    c_token = ok(await client.post("/api/v1/auth/token", data=grant))["access_token"]
    # ... but the sub-agent is bound by X's denial, for itself and for anything below it.
    before = await snapshot(services)
    via_child = await client.post("/api/v1/credentials", json={"agent_id": child}, headers=bearer(c_token))
    body = assert_error(via_child, 403, "access_denied", "X's child")
    assert f"names agent {x['id']}, whose denials bind {child}" in body["error_description"]
    grandchild = ok(
        await client.post("/api/v1/agents", json={"name": "g", "agent_type": "tool"}, headers=bearer(c_token)), 201
    )
    g_grant = {"grant_type": JWT_BEARER, "assertion": assertion_for(grandchild)}
    g_token = ok(await client.post("/api/v1/auth/token", data=g_grant))["access_token"]
    by_grandchild = {"agent_id": grandchild["agent"]["id"]}
    assert_error(
        await client.post("/api/v1/credentials", json=by_grandchild, headers=bearer(g_token)), 403, "access_denied"
    )
    after = await snapshot(services)
    assert after.rows["api_keys"] == before.rows["api_keys"], "a key was minted through X's subtree"

    # check_permission says the same about the child; the rest of the tenant is not bound.
    question = {"agent_id": child, "action": "write", "resource": "api/v1/credentials"}
    answer = ok(await client.post("/api/v1/policies/evaluate", json=question, headers=bearer(root["access_token"])))
    assert answer["allowed"] is False and answer["matched_policy"]["name"] == "no new API keys for X"
    sibling, _, sibling_token = await make_child(client, root["access_token"], "sibling")
    mint = await client.post("/api/v1/credentials", json={"agent_id": sibling["id"]}, headers=bearer(sibling_token))
    ok(mint, 201)


async def test_a_denied_agent_cannot_act_through_a_delegate(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "root")
    x = await child_with_key(client, root["access_token"], "x")
    helper = await child_with_key(client, root["access_token"], "helper")
    lent = ok(await delegate(client, x["token"], helper["agent"]["id"], ["agents.read"]), 201)
    blind = deny_minting_keys(x["agent"]["id"]) | {
        "name": "X reads no agent",
        "actions": ["read"],
        "resources": ["api/v1/agents/**"],
    }
    ok(await client.post("/api/v1/policies", json=blind, headers=bearer(root["access_token"])), 201)
    acting_for_x = ok(await exchange(client, lent["credential"], actor_token=helper["token"]))["access_token"]
    for token, who in ((x["token"], "X"), (acting_for_x, "a delegate acting for X")):
        refused = await client.get(f"/api/v1/agents/{x['agent']['id']}", headers=bearer(token))
        body = assert_error(refused, 403, "access_denied", who)
        assert "X reads no agent" in body["error_description"]
    # The helper acting for itself is not bound by X's denial.
    ok(await client.get(f"/api/v1/agents/{helper['agent']['id']}", headers=bearer(helper["token"])))


async def test_an_allow_naming_an_agent_does_not_extend_to_its_children(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "root")
    x, _, x_token = await make_child(client, root["access_token"], "x")
    created = ok(
        await client.post(
            "/api/v1/agents",
            json={"name": "c", "agent_type": "tool", "scopes": ["agents.read"]},
            headers=bearer(x_token),
        ),
        201,
    )
    allow = {
        "name": "x may use the vault",
        "effect": "allow",
        "subjects": {"agent_ids": [x["id"]]},
        "actions": ["write"],
        "resources": ["vault/**"],
    }
    ok(await client.post("/api/v1/policies", json=allow, headers=bearer(root["access_token"])), 201)
    auth = bearer(root["access_token"])
    for agent_id, allowed in ((x["id"], True), (created["agent"]["id"], False)):
        question = {"agent_id": agent_id, "action": "write", "resource": "vault/keys"}
        answer = ok(await client.post("/api/v1/policies/evaluate", json=question, headers=auth))
        assert answer["allowed"] is allowed and (answer["basis"] == "policy") is allowed, (agent_id, answer)
