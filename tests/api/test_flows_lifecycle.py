"""Lifecycles through the real app: API key rotation and revocation, deactivating a child agent, updates and
trust-level rules, child scopes, list pagination, and the audit log (own tenant, outcome filter, cursor)."""

from __future__ import annotations

import httpx
import pytest
from api_support import TOKEN, client_credentials, make_child, works

from support import assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio


async def key_works(client: httpx.AsyncClient, raw_key: str) -> bool:
    response = await client.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": raw_key})
    if response.status_code == 401:
        assert_error(response, 401, "invalid_client", challenge="Basic")
        return False
    assert response.status_code == 200, response.text
    return True


async def refresh_works(client: httpx.AsyncClient, refresh_token: str) -> bool:
    response = await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": refresh_token})
    if response.status_code == 400:
        assert_error(response, 400, "invalid_grant")
        return False
    assert response.status_code == 200, response.text
    return True


# -- API keys ----------------------------------------------------------------------------------------------


async def test_rotate_issues_a_new_key_and_kills_the_old_one_and_its_tokens(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "rotator")
    admin = root["access_token"]
    key = ok(
        await client.post("/api/v1/credentials", json={"name": "ci", "scopes": ["agents.read"]}, headers=bearer(admin)),
        201,
    )
    issued = await client_credentials(client, key["raw_key"])
    rotated = ok(await client.post(f"/api/v1/credentials/{key['id']}/rotate", headers=bearer(admin)))
    assert rotated["old_credential_id"] == key["id"] and rotated["id"] != key["id"]
    assert rotated["raw_key"] != key["raw_key"] and rotated["raw_key"].startswith("ak_live_")
    assert rotated["scopes"] == ["agents.read"] and rotated["name"] == "ci" and rotated["status"] == "active"
    assert await key_works(client, rotated["raw_key"])
    assert not await key_works(client, key["raw_key"])
    assert not await works(client, issued["access_token"])
    assert not await refresh_works(client, issued["refresh_token"])
    old = ok(await client.get(f"/api/v1/credentials/{key['id']}", headers=bearer(admin)))
    assert old["status"] != "active" and old["revoked_at"] is not None
    # Rotating again is a conflict: the old key is no longer active.
    again = await client.post(f"/api/v1/credentials/{key['id']}/rotate", headers=bearer(admin))
    assert_error(again, 409, "conflict")
    # The quickstart key and its tokens are untouched.
    assert await works(client, admin) and await key_works(client, root["api_key"])


@pytest.mark.parametrize("how", ["POST revoke", "DELETE"])
async def test_revoking_a_key_kills_its_tokens_only(client: httpx.AsyncClient, how: str) -> None:
    root = await quickstart(client, "revoker")
    admin = root["access_token"]
    key = ok(await client.post("/api/v1/credentials", json={}, headers=bearer(admin)), 201)
    issued = await client_credentials(client, key["raw_key"])
    url = f"/api/v1/credentials/{key['id']}"
    revoked = ok(
        await (
            client.post(f"{url}/revoke", headers=bearer(admin))
            if how == "POST revoke"
            else client.delete(url, headers=bearer(admin))
        )
    )
    assert revoked["status"] == "revoked" and revoked["revoked_at"] is not None
    assert not await key_works(client, key["raw_key"])
    assert not await works(client, issued["access_token"])
    assert not await refresh_works(client, issued["refresh_token"])
    assert await works(client, admin), "tokens of other keys live on"
    # Idempotent: revoking again reports the same state.
    assert ok(await client.post(f"{url}/revoke", headers=bearer(admin)))["status"] == "revoked"


# -- agents ------------------------------------------------------------------------------------------------


async def test_deactivating_a_child_kills_its_tokens_keys_and_subtree(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "parent")
    admin = root["access_token"]
    child, child_key, child_token = await make_child(client, admin, "child")
    grandchild, grand_key, grand_token = await make_child(client, child_token, "grandchild")
    child_refresh = (await client_credentials(client, child_key["raw_key"]))["refresh_token"]
    done = ok(await client.delete(f"/api/v1/agents/{child['id']}", headers=bearer(admin)))
    assert done["status"] == "deactivated" and done["is_active"] is False
    for token in (child_token, grand_token):
        assert not await works(client, token)
    for raw in (child_key["raw_key"], grand_key["raw_key"]):
        assert not await key_works(client, raw)
    assert not await refresh_works(client, child_refresh)
    for agent_id in (child["id"], grandchild["id"]):
        seen = ok(await client.get(f"/api/v1/agents/{agent_id}", headers=bearer(admin)))
        assert seen["status"] == "deactivated" and seen["is_active"] is False
    keys = ok(await client.get("/api/v1/credentials", params={"agent_id": child["id"]}, headers=bearer(admin)))
    assert [k["status"] for k in keys["items"]] == ["revoked"]
    assert_error(
        await client.patch(f"/api/v1/agents/{child['id']}", json={"name": "x"}, headers=bearer(admin)), 409, "conflict"
    )
    assert await works(client, admin) and await key_works(client, root["api_key"])


async def test_update_changes_only_what_was_given(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "updater")
    admin = root["access_token"]
    child, _, _ = await make_child(client, admin, "before", description="old")
    updated = ok(await client.patch(f"/api/v1/agents/{child['id']}", json={"name": "  after  "}, headers=bearer(admin)))
    assert updated["name"] == "after" and updated["description"] == "old"
    assert updated["updated_at"] > child["updated_at"] and updated["created_at"] == child["created_at"]
    again = ok(await client.patch(f"/api/v1/agents/{child['id']}", json={"description": "new"}, headers=bearer(admin)))
    assert (again["name"], again["description"]) == ("after", "new")
    assert ok(await client.get(f"/api/v1/agents/{child['id']}", headers=bearer(admin))) == again


async def test_trust_level_rules(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "trust")
    admin = root["access_token"]
    assert root["agent"]["trust_level"] == "basic"
    above = await client.post(
        "/api/v1/agents", json={"name": "c", "agent_type": "tool", "trust_level": "verified"}, headers=bearer(admin)
    )
    assert_error(above, 403, "access_denied")
    child, _, child_token = await make_child(client, admin, "low", trust_level="untrusted")
    assert child["trust_level"] == "untrusted"
    url = f"/api/v1/agents/{child['id']}"
    assert_error(await client.patch(url, json={"trust_level": "trusted"}, headers=bearer(admin)), 403, "access_denied")
    assert ok(await client.patch(url, json={"trust_level": "basic"}, headers=bearer(admin)))["trust_level"] == "basic"
    own = f"/api/v1/agents/{root['agent']['id']}"
    assert_error(
        await client.patch(own, json={"trust_level": "untrusted"}, headers=bearer(admin)), 403, "access_denied"
    )
    assert_error(
        await client.patch(url, json={"trust_level": "verified"}, headers=bearer(child_token)), 403, "access_denied"
    )
    assert ok(await client.get(own, headers=bearer(admin)))["trust_level"] == "basic"


async def test_child_scopes_are_a_subset_of_the_parents(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "scoper")
    admin = root["access_token"]
    scopes = ["agents.read", "agents.write", "credentials.write"]
    child, _, child_token = await make_child(client, admin, "limited", scopes=scopes)
    assert child["scopes"] == scopes
    excess = await client.post(
        "/api/v1/agents",
        json={"name": "g", "agent_type": "tool", "scopes": ["audit.read"]},
        headers=bearer(child_token),
    )
    assert_error(excess, 400, "invalid_scope")
    key = await client.post(
        "/api/v1/credentials", json={"agent_id": child["id"], "scopes": ["audit.read"]}, headers=bearer(admin)
    )
    assert_error(key, 400, "invalid_scope")
    inherited = ok(
        await client.post("/api/v1/agents", json={"name": "g", "agent_type": "tool"}, headers=bearer(child_token)), 201
    )
    assert inherited["agent"]["scopes"] == scopes


async def test_a_narrowed_token_cannot_create_a_child_with_more_scopes(client: httpx.AsyncClient) -> None:
    """A child holding its own did:key could use every scope of its grant through jwt-bearer: its grant must stay
    within the creating token's scopes, not just within the parent agent's."""
    root = await quickstart(client, "escalation")
    narrow = (await client_credentials(client, root["api_key"], "agents.read agents.write"))["access_token"]
    response = await client.post(
        "/api/v1/agents",
        json={"name": "c", "agent_type": "tool", "scopes": ["audit.read", "policies.write"]},
        headers=bearer(narrow),
    )
    assert_error(response, 400, "invalid_scope")
    default = ok(
        await client.post("/api/v1/agents", json={"name": "d", "agent_type": "tool"}, headers=bearer(narrow)), 201
    )
    assert sorted(default["agent"]["scopes"]) == ["agents.read", "agents.write"]


# -- pagination and the audit log ------------------------------------------------------------------------


async def test_list_pagination(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "pager")
    admin = root["access_token"]
    for i in range(4):
        ok(
            await client.post("/api/v1/agents", json={"name": f"c{i}", "agent_type": "tool"}, headers=bearer(admin)),
            201,
        )
    everything = ok(await client.get("/api/v1/agents", headers=bearer(admin)))
    assert everything["total"] == 5 and len(everything["items"]) == 5 and everything["limit"] == 50
    seen = []
    for offset in (0, 2, 4):
        page = ok(await client.get("/api/v1/agents", params={"limit": 2, "offset": offset}, headers=bearer(admin)))
        assert page["total"] == 5 and (page["limit"], page["offset"]) == (2, offset)
        assert len(page["items"]) == (1 if offset == 4 else 2)
        seen += [a["id"] for a in page["items"]]
    assert sorted(seen) == sorted(a["id"] for a in everything["items"]) and len(set(seen)) == 5
    beyond = ok(await client.get("/api/v1/agents", params={"offset": 5}, headers=bearer(admin)))
    assert beyond["items"] == [] and beyond["total"] == 5
    keys = ok(await client.get("/api/v1/credentials", params={"limit": 1}, headers=bearer(admin)))
    assert keys["total"] == 1 and len(keys["items"]) == 1


async def test_audit_log_own_tenant_outcome_filter_and_cursor(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "audited")
    admin = root["access_token"]
    other = await quickstart(client, "stranger")
    for i in range(3):
        ok(
            await client.post("/api/v1/agents", json={"name": f"c{i}", "agent_type": "tool"}, headers=bearer(admin)),
            201,
        )
    ok(await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": root["refresh_token"]}))
    reuse = await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": root["refresh_token"]})
    assert_error(reuse, 400, "invalid_grant")
    fresh = (await client_credentials(client, root["api_key"]))["access_token"]

    full = ok(await client.get("/api/v1/audit/events", params={"limit": 100}, headers=bearer(fresh)))["items"]
    ids = [e["id"] for e in full]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids)) and len(ids) >= 8
    strangers = {other["agent"]["id"], other["api_key_id"]}
    assert not [e for e in full if {e["actor"], e["target_id"]} & strangers]
    assert {"agent.registered", "agent.created", "token.refreshed", "refresh_token.reuse_detected"} <= {
        e["action"] for e in full
    }

    failures = ok(await client.get("/api/v1/audit/events", params={"outcome": "failure"}, headers=bearer(fresh)))[
        "items"
    ]
    assert failures and all(e["outcome"] == "failure" for e in failures)
    assert "refresh_token.reuse_detected" in {e["action"] for e in failures}
    successes = ok(
        await client.get("/api/v1/audit/events", params={"outcome": "success", "limit": 100}, headers=bearer(fresh))
    )
    assert {e["id"] for e in successes["items"]} == {e["id"] for e in full if e["outcome"] == "success"}

    paged, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = ok(await client.get("/api/v1/audit/events", params=params, headers=bearer(fresh)))
        assert len(page["items"]) <= 3
        paged += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == ids
    created = ok(await client.get("/api/v1/audit/events", params={"action": "agent.created"}, headers=bearer(fresh)))
    assert len(created["items"]) == 3 and all(e["actor"] == root["agent"]["id"] for e in created["items"])
