"""A delegate acts *for* its delegator, never *on* it (issue 12 item 4).

The attack: the root delegates ``credentials.write`` to a child, the child exchanges the delegation for a token
(``sub`` = root, ``act`` = child) and revokes the root's own API key - and with it every token that key issued.
One rule now judges every change (``Principal.may_manage``): under a delegation the target's owner must be in the
acting delegate's own subtree and never the delegator. Each refusal here changes nothing (every table
snapshotted) and the victim's key and tokens still work; a control shows the same token may still manage what
lies in the delegate's own subtree, so the refusals are about the rule, not the token.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from security_support import TOKEN, assert_unchanged, client_credentials, exchange_data, is_active, make_child, snapshot

from agentauth.bootstrap import Services
from support import MANAGE_SCOPES, assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio

MANAGE = MANAGE_SCOPES


async def delegate(client: httpx.AsyncClient, token: str, delegate_id: str, scopes: list[str]) -> httpx.Response:
    body = {"delegate_agent_id": delegate_id, "scopes": scopes}
    return await client.post("/api/v1/delegations", json=body, headers=bearer(token))


async def act_for(client: httpx.AsyncClient, delegator_token: str, who: dict[str, Any]) -> str:
    """The delegator delegates MANAGE to ``who``, which exchanges it: the token ``who`` acts with."""
    created = ok(await delegate(client, delegator_token, who["agent"]["id"], MANAGE), 201)
    exchanged = ok(await client.post(TOKEN, data=exchange_data(created["credential"], who["access_token"])))
    token: str = exchanged["access_token"]
    return token


@pytest.fixture
async def world(client: httpx.AsyncClient) -> dict[str, Any]:
    root = await quickstart(client, "root")
    b = await make_child(client, root["access_token"], "b")
    return {"root": root, "b": b, "acting": await act_for(client, root["access_token"], b)}


async def refused(services: Services, request: Any, status: int, error: str, what: str) -> None:
    before = await snapshot(services)
    assert_error(await request, status, error, what)
    await assert_unchanged(services, before, f"by {what}")


async def test_delegate_cannot_revoke_or_rotate_the_delegators_api_key(
    client: httpx.AsyncClient, services: Services, world: dict[str, Any]
) -> None:
    root, acting = world["root"], world["acting"]
    key_id = root["api_key_id"]
    # The delegate sees the key (credentials.read was delegated) ...
    assert ok(await client.get(f"/api/v1/credentials/{key_id}", headers=bearer(acting)))["status"] == "active"
    # ... and may not revoke or rotate it, by any route.
    for method, path in (
        ("DELETE", f"/api/v1/credentials/{key_id}"),
        ("POST", f"/api/v1/credentials/{key_id}/revoke"),
        ("POST", f"/api/v1/credentials/{key_id}/rotate"),
    ):
        await refused(services, client.request(method, path, headers=bearer(acting)), 403, "access_denied", path)
    # The key still works, and so does the token it issued.
    assert (await client_credentials(client, root["api_key"])).status_code == 200
    assert await is_active(client, root["access_token"])


async def test_delegate_cannot_deactivate_or_change_the_delegator(
    client: httpx.AsyncClient, services: Services, world: dict[str, Any]
) -> None:
    root_id, acting = world["root"]["agent"]["id"], world["acting"]
    for method, path, body in (
        ("DELETE", f"/api/v1/agents/{root_id}", None),
        ("POST", f"/api/v1/agents/{root_id}/deactivate", None),
        ("PATCH", f"/api/v1/agents/{root_id}", {"name": "owned"}),
    ):
        request = client.request(method, path, json=body, headers=bearer(acting))
        await refused(services, request, 403, "access_denied", f"{method} {path}")
    assert await is_active(client, world["root"]["access_token"])


async def test_delegate_cannot_revoke_the_delegators_tokens(
    client: httpx.AsyncClient, services: Services, world: dict[str, Any]
) -> None:
    root, acting = world["root"], world["acting"]
    # The root's access token (and with it its pair), and a token of its own API key. Its refresh token is left
    # out: one of ours is its own credential, so whoever holds it may revoke it (tests/api/test_token_pairs.py).
    other = await client_credentials(client, root["api_key"])
    before = await snapshot(services)
    for token in (root["access_token"], other.json()["access_token"]):
        revoked = await client.post("/api/v1/auth/revoke", data={"token": token}, headers=bearer(acting))
        assert revoked.status_code == 200  # RFC 7009 section 2.2: no oracle, and nothing revoked
    await assert_unchanged(services, before, "by the delegate's revocations")
    assert await is_active(client, root["access_token"])


async def test_delegate_cannot_revoke_delegations_granted_from_above(
    client: httpx.AsyncClient, services: Services, world: dict[str, Any]
) -> None:
    root, acting = world["root"], world["acting"]
    c = await make_child(client, root["access_token"], "c")
    to_c = ok(await delegate(client, root["access_token"], c["agent"]["id"], ["agents.read"]), 201)
    mine = ok(await client.get("/api/v1/delegations", params={"role": "delegate"}, headers=bearer(acting)))
    for delegation_id in (to_c["id"], mine["items"][0]["id"]):
        path = f"/api/v1/delegations/{delegation_id}"
        await refused(services, client.delete(path, headers=bearer(acting)), 403, "access_denied", path)


async def test_an_ancestor_acting_for_its_descendant_cannot_touch_that_descendant(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The other shape of the same hole: B delegates to its own parent, the root. Acting for B, the root is still
    the delegate - it may not deactivate B, revoke B's keys or tokens, or revoke what B granted (with its own
    token it may: the refusals are about acting under the delegation)."""
    root = await quickstart(client, "root")
    b = await make_child(client, root["access_token"], "b", scopes=[*MANAGE, "api.read"])
    x = await make_child(client, root["access_token"], "x")
    b_to_x = ok(await delegate(client, b["access_token"], x["agent"]["id"], ["api.read"]), 201)
    root_for_b = await act_for(client, b["access_token"], root)
    b_id, key_id = b["agent"]["id"], b["api_key_id"]
    for method, path in (
        ("DELETE", f"/api/v1/agents/{b_id}"),
        ("POST", f"/api/v1/credentials/{key_id}/revoke"),
        ("DELETE", f"/api/v1/delegations/{b_to_x['id']}"),
    ):
        await refused(services, client.request(method, path, headers=bearer(root_for_b)), 403, "access_denied", path)
    before = await snapshot(services)
    assert (
        await client.post("/api/v1/auth/revoke", data={"token": b["access_token"]}, headers=bearer(root_for_b))
    ).is_success
    await assert_unchanged(services, before, "by the root revoking B's token while acting for B")
    assert await is_active(client, b["access_token"])
    # With its own token the root may do all of it.
    assert (await client.delete(f"/api/v1/delegations/{b_to_x['id']}", headers=bearer(root["access_token"]))).is_success
    assert (await client.delete(f"/api/v1/agents/{b_id}", headers=bearer(root["access_token"]))).is_success


async def test_control_the_delegate_still_manages_its_own_subtree(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    """Within the delegate's own subtree (and the delegator's), the delegated scopes do what they say."""
    b, acting = world["b"], world["acting"]
    grandchild = await make_child(client, b["access_token"], "grandchild")
    keys = ok(
        await client.get("/api/v1/credentials", params={"agent_id": grandchild["agent"]["id"]}, headers=bearer(acting))
    )
    revoked = ok(await client.post(f"/api/v1/credentials/{keys['items'][0]['id']}/revoke", headers=bearer(acting)))
    assert revoked["status"] == "revoked"
    assert (await client_credentials(client, grandchild["api_key"])).status_code == 401
    renamed = ok(
        await client.patch(f"/api/v1/agents/{grandchild['agent']['id']}", json={"name": "g"}, headers=bearer(acting))
    )
    assert renamed["name"] == "g"
    assert (
        await client.post("/api/v1/auth/revoke", data={"token": grandchild["access_token"]}, headers=bearer(acting))
    ).is_success
    assert not await is_active(client, grandchild["access_token"])


async def test_delegate_cannot_change_the_delegators_policies(client: httpx.AsyncClient, services: Services) -> None:
    """The tenant's policies are its root's own: a delegate holding a delegated policies.write - of this tenant or
    of another - cannot create, replace or delete them (it could lift the root's denials or lock the root out)."""
    root = await quickstart(client, "root")
    inside = await make_child(client, root["access_token"], "inside")
    outside = await quickstart(client, "outside")
    policy = {"name": "p", "effect": "deny", "subjects": {"agent_ids": [inside["agent"]["id"]]}}
    policy |= {"actions": ["write"], "resources": ["**"]}
    existing = ok(await client.post("/api/v1/policies", json=policy, headers=bearer(root["access_token"])), 201)
    for who in (inside, outside):
        created = ok(await delegate(client, root["access_token"], who["agent"]["id"], ["policies.write"]), 201)
        data = exchange_data(created["credential"], who["access_token"])
        acting = ok(await client.post(TOKEN, data=data))["access_token"]
        for method, path, body in (
            ("POST", "/api/v1/policies", policy),
            ("PUT", f"/api/v1/policies/{existing['id']}", policy | {"effect": "allow"}),
            ("DELETE", f"/api/v1/policies/{existing['id']}", None),
        ):
            request = client.request(method, path, json=body, headers=bearer(acting))
            await refused(services, request, 403, "access_denied", f"{method} {path} by {who['agent']['name']}")
    # The root itself still manages them.
    assert (
        await client.delete(f"/api/v1/policies/{existing['id']}", headers=bearer(root["access_token"]))
    ).status_code == 204
