"""Delegation to an agent of another tenant (issue 12 item 16), through the REST API on SQLite and PostgreSQL.

Tenants A (root ``a``, child ``a2``), B (root ``b``, child ``b2``) and C (root ``c``), each its own quickstart.
The rules (``issuer/delegations.py``): any active agent may be the delegate; the two agents become *delegation
peers* - each sees the other, marked, and nothing else of the other tenant; neither may manage the other; the
delegate acts only within the delegated scopes over the delegator's tenant; authority received by delegation is
re-delegated only within the root delegator's tenant or down into the acting delegate's own subtree, never into
a third tenant; revoking the delegation or deactivating either side kills it at once, offline included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from api_support import assert_unchanged, snapshot
from delegation_support import child_with_key, claims, delegate, exchange, offline_verifier

from agentauth.bootstrap import Services
from agentauth.vc import DELEGATION_CREDENTIAL, VerificationError
from support import ISSUER_URL, MANAGE_SCOPES, assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio

MANAGE = MANAGE_SCOPES
RELAY = ["agents.read", "api.read", "delegations.read", "delegations.write"]
POLICY = {"name": "no reports", "effect": "deny", "subjects": {"all": True}, "actions": ["delete"],
          "resources": ["reports/**"]}  # fmt: skip


@dataclass
class Tenants:
    a: dict[str, Any]
    a2: dict[str, Any]
    b: dict[str, Any]
    b2: dict[str, Any]
    c: dict[str, Any]
    policy: dict[str, Any]

    def token(self, who: str) -> str:
        agent = getattr(self, who)
        return str(agent.get("access_token") or agent["token"])

    def id(self, who: str) -> str:
        return str(getattr(self, who)["agent"]["id"])


@pytest.fixture
async def t(client: httpx.AsyncClient) -> Tenants:
    a, b, c = [await quickstart(client, n) for n in ("a", "b", "c")]
    a2 = await child_with_key(client, a["access_token"], "a2")
    b2 = await child_with_key(client, b["access_token"], "b2")
    policy = ok(await client.post("/api/v1/policies", json=POLICY, headers=bearer(a["access_token"])), 201)
    return Tenants(a, a2, b, b2, c, policy)


async def grant(
    client: httpx.AsyncClient, token: str, delegate_id: str, scopes: list[str], **kw: Any
) -> dict[str, Any]:
    return ok(await delegate(client, token, delegate_id, scopes, **kw), 201)


async def acting(client: httpx.AsyncClient, delegation: dict[str, Any], actor_token: str) -> str:
    token: str = ok(await exchange(client, delegation["credential"], actor_token=actor_token))["access_token"]
    return token


async def get_agent(client: httpx.AsyncClient, token: str, agent_id: str) -> httpx.Response:
    return await client.get(f"/api/v1/agents/{agent_id}", headers=bearer(token))


async def evaluate(client: httpx.AsyncClient, token: str, agent_id: str, action: str, resource: str) -> dict[str, Any]:
    body = {"agent_id": agent_id, "action": action, "resource": resource}
    return ok(await client.post("/api/v1/policies/evaluate", json=body, headers=bearer(token)))


async def works(client: httpx.AsyncClient, token: str) -> bool:
    return (await client.get("/api/v1/agents", headers=bearer(token))).status_code == 200


# -- the documented flow ------------------------------------------------------------------------------------


async def test_delegating_to_another_tenants_agent(client: httpx.AsyncClient, t: Tenants) -> None:
    delegation = await grant(client, t.token("a"), t.id("b"), ["api.write", "agents.read"])
    assert delegation["delegator_agent_id"] == t.id("a") and delegation["delegate_agent_id"] == t.id("b")
    assert claims(delegation["credential"])["sub"] == t.b["agent"]["did"]

    # check_permission by the delegator: the delegated scopes allow, nothing else does - in particular not what B
    # holds in its own tenant (every quickstart agent holds api.read there).
    allowed = await evaluate(client, t.token("a"), t.id("b"), "write", "files/q3.pdf")
    assert allowed["allowed"] is True and allowed["basis"] == "delegation"
    assert allowed["delegation_id"] == delegation["id"]
    assert (await evaluate(client, t.token("a"), t.id("b"), "read", "api/v1/agents/x"))["allowed"] is True
    for action, resource in (("admin", "files/q3.pdf"), ("read", "files/q3.pdf"), ("read", "api/v1/credentials/x")):
        denied = await evaluate(client, t.token("a"), t.id("b"), action, resource)
        assert denied["allowed"] is False and denied["effect"] == "deny", (action, resource)
    # The tenant's own policies judge the peer too.
    assert (await evaluate(client, t.token("a"), t.id("b"), "delete", "reports/x"))["basis"] == "policy"
    # The other way round B holds nothing from A to use on A.
    assert (await evaluate(client, t.token("b"), t.id("a"), "write", "files/q3.pdf"))["allowed"] is False

    # The exchange: sub is the delegator, act the delegate, the delegated scopes, A's tenant.
    exchanged = ok(await exchange(client, delegation["credential"], actor_token=t.token("b")))
    body = claims(exchanged["access_token"])
    assert body["sub"] == t.a["agent"]["did"] and body["act"] == {"sub": t.b["agent"]["did"]}
    assert set(body["scope"].split()) == {"api.write", "agents.read"}
    subject = body["vc"]["credentialSubject"]
    assert subject["agentId"] == t.id("a") and subject["tenantId"] == t.a["agent"]["tenant_id"]
    assert subject["actorAgentId"] == t.id("b")
    # Over A's tenant only: A's subtree, none of B's tenant, no peers of A; and no scope it was not given.
    token = exchanged["access_token"]
    listed = ok(await client.get("/api/v1/agents", headers=bearer(token)))
    assert {x["id"] for x in listed["items"]} == {t.id("a"), t.id("a2")} and listed["total"] == 2
    for other in ("b", "b2"):
        assert_error(await get_agent(client, token, t.id(other)), 404, "not_found")
    assert_error(await client.get("/api/v1/credentials", headers=bearer(token)), 403, "insufficient_scope")
    assert_error(await client.get("/api/v1/audit/events", headers=bearer(token)), 403, "insufficient_scope")
    # The delegate introspects its token (with its API key: it is the token's client).
    seen = ok(await client.post("/api/v1/auth/introspect", data={"token": token, "client_secret": t.b["api_key"]}))
    assert seen["active"] is True and seen["agent_id"] == t.id("a") and seen["client_id"] == t.id("b")


# -- peers ------------------------------------------------------------------------------------------------


async def test_peers_see_each_other_and_nothing_else(client: httpx.AsyncClient, t: Tenants) -> None:
    delegation = await grant(client, t.token("a"), t.id("b"), ["api.read"])
    for viewer, peer in (("b", "a"), ("a", "b")):
        seen = ok(await get_agent(client, t.token(viewer), t.id(peer)))
        assert seen["relationship"] == "delegation_peer" and seen["did"] == getattr(t, peer)["agent"]["did"]
        assert seen["tenant_id"] == getattr(t, peer)["agent"]["tenant_id"] != getattr(t, viewer)["agent"]["tenant_id"]
        assert seen["scopes"] == [] and seen["description"] is None and seen["parent_id"] is None
        # Lists: the own subtree plus the peer, marked; totals count what paging returns.
        page = ok(await client.get("/api/v1/agents", headers=bearer(t.token(viewer))))
        child = t.id(f"{viewer}2")
        assert {x["id"] for x in page["items"]} == {t.id(viewer), child, t.id(peer)} and page["total"] == 3
        marks = {x["id"]: x["relationship"] for x in page["items"]}
        assert marks == {t.id(viewer): "member", child: "member", t.id(peer): "delegation_peer"}
        paged = [
            ok(await client.get("/api/v1/agents", params={"limit": 1, "offset": i}, headers=bearer(t.token(viewer))))
            for i in range(4)
        ]
        assert [p["total"] for p in paged] == [3, 3, 3, 3] and paged[3]["items"] == []
        assert [p["items"][0]["id"] for p in paged[:3]] == [x["id"] for x in page["items"]]
        # Nothing else of the other tenant: not the peer's child, whose id it could have learnt elsewhere.
        assert_error(await get_agent(client, t.token(viewer), t.id(f"{peer}2")), 404, "not_found")
    # Peers are the two agents' own relationship: their children, and third tenants, see neither.
    for viewer, foreign in (("a2", "b"), ("b2", "a"), ("c", "a"), ("c", "b")):
        assert_error(await get_agent(client, t.token(viewer), t.id(foreign)), 404, "not_found")
        listed = ok(await client.get("/api/v1/agents", headers=bearer(t.token(viewer))))
        assert t.id(foreign) not in {x["id"] for x in listed["items"]}
    # The delegation is gone: so is the peer.
    ok(await client.delete(f"/api/v1/delegations/{delegation['id']}", headers=bearer(t.token("a"))))
    assert_error(await get_agent(client, t.token("b"), t.id("a")), 404, "not_found")
    assert ok(await client.get("/api/v1/agents", headers=bearer(t.token("b"))))["total"] == 2
    assert_error(await client.post("/api/v1/policies/evaluate", json={"agent_id": t.id("b"), "action": "read",
                 "resource": "files/x"}, headers=bearer(t.token("a"))), 404, "not_found")  # fmt: skip


async def test_a_peer_sees_no_credentials_audit_or_policies_of_the_other_tenant(
    client: httpx.AsyncClient, t: Tenants
) -> None:
    delegation = await grant(client, t.token("a"), t.id("b"), ["api.read", "agents.read"])
    foreign = [t.id("a2"), t.a["api_key_id"], t.a2["agent"]["did"], t.policy["id"], t.a["agent"]["description"] or ""]
    foreign = [f for f in foreign if f]
    texts = {}
    for url in ("/api/v1/agents", "/api/v1/credentials", "/api/v1/delegations", "/api/v1/policies",
                "/api/v1/audit/events?limit=100"):  # fmt: skip
        response = await client.get(url, headers=bearer(t.token("b")))
        assert response.status_code == 200, response.text
        texts[url] = response.text
    everything = "\n".join(texts.values())
    for item in foreign:
        assert item not in everything, f"{item} of tenant A is visible to its peer B"
    # What B does see: the delegation it is party to (and its own tenant's note of it in its audit log).
    assert delegation["id"] in texts["/api/v1/delegations"]
    assert ok(await client.get(f"/api/v1/delegations/{delegation['id']}", headers=bearer(t.token("b"))))["id"]
    assert "delegation.received" in texts["/api/v1/audit/events?limit=100"]
    for query in ({"agent_id": t.id("a")}, {"agent_id": t.id("a2")}):
        assert_error(
            await client.get("/api/v1/credentials", params=query, headers=bearer(t.token("b"))), 404, "not_found"
        )
    assert_error(
        await client.get(f"/api/v1/credentials/{t.a['api_key_id']}", headers=bearer(t.token("b"))), 404, "not_found"
    )
    assert_error(await client.get(f"/api/v1/policies/{t.policy['id']}", headers=bearer(t.token("b"))), 404, "not_found")


# -- no management across tenants -------------------------------------------------------------------------


async def test_a_delegation_grants_no_management_over_the_other_tenant(
    client: httpx.AsyncClient, services: Services, t: Tenants
) -> None:
    delegation = await grant(client, t.token("a"), t.id("b"), MANAGE)
    as_b_for_a = await acting(client, delegation, t.token("b"))
    a2_key = ok(await client.get("/api/v1/credentials", params={"agent_id": t.id("a2")}, headers=bearer(t.token("a"))))
    a2_key_id = a2_key["items"][0]["id"]
    b_key_id = t.b["api_key_id"]
    before = await snapshot(services)

    def manage(target: str, key_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
        return [
            ("PATCH", f"/api/v1/agents/{target}", {"name": "owned"}),
            ("DELETE", f"/api/v1/agents/{target}", None),
            ("POST", f"/api/v1/agents/{target}/deactivate", None),
            ("POST", "/api/v1/agents", {"name": "n", "agent_type": "tool"}),
            ("POST", "/api/v1/credentials", {"agent_id": target}),
            ("POST", f"/api/v1/credentials/{key_id}/rotate", None),
            ("POST", f"/api/v1/credentials/{key_id}/revoke", None),
            ("DELETE", f"/api/v1/credentials/{key_id}", None),
        ]

    # Each side with its own token on the peer: the usual answers for what is not yours.
    for token, target, key_id in ((t.token("b"), t.id("a"), t.a["api_key_id"]), (t.token("a"), t.id("b"), b_key_id)):
        for method, path, body in manage(target, key_id):
            response = await client.request(method, path, json=body, headers=bearer(token))
            if path == "/api/v1/agents":
                assert response.status_code == 201  # a child of its own, below: removed again at the end
                continue
            assert_error(response, {403, 404}, {"not_found", "access_denied"}, f"{method} {path}")
    # The delegate acting for A, with every management scope delegated: nothing of A's, nothing above it.
    for target, key_id in ((t.id("a"), t.a["api_key_id"]), (t.id("a2"), a2_key_id)):
        for method, path, body in manage(target, key_id):
            response = await client.request(method, path, json=body, headers=bearer(as_b_for_a))
            assert_error(response, 403, "access_denied", f"acting {method} {path}")
    # Tokens: revocation answers 200 and revokes nothing of the other side. (Refresh tokens are left out: one
    # of ours is its own credential - whoever holds it may revoke it, and could redeem it anyway; test_token_pairs.)
    for caller, victim_tokens in ((t.token("b"), [t.token("a")]),
                                  (as_b_for_a, [t.token("a"), t.token("a2")]),
                                  (t.token("a"), [t.token("b")])):  # fmt: skip
        for victim in victim_tokens:
            assert (await client.post("/api/v1/auth/revoke", data={"token": victim}, headers=bearer(caller))).is_success
    # The delegate cannot revoke the delegation it holds (only the delegator side can), by either route.
    for token in (t.token("b"), as_b_for_a):
        revoke = await client.post(f"/api/v1/delegations/{delegation['id']}/revoke", headers=bearer(token))
        assert_error(revoke, 403, "access_denied")
        assert (
            await client.post("/api/v1/auth/revoke", data={"token": delegation["credential"]}, headers=bearer(token))
        ).is_success
    # Only the two children made by the owners' own tokens are new; nothing else changed.
    after = await snapshot(services)
    assert after.counts["agents"] == before.counts["agents"] + 2
    for table in ("api_keys", "delegations", "refresh_tokens", "policies"):
        assert after.rows[table] == before.rows[table], table
    for token in (t.token("a"), t.token("a2"), t.token("b"), as_b_for_a):
        assert await works(client, token)
    assert (await client.post("/api/v1/auth/token", data={"grant_type": "client_credentials",
            "client_secret": t.a["api_key"]})).status_code == 200  # fmt: skip


# -- re-delegation and depth --------------------------------------------------------------------------------


async def test_redelegation_stays_in_the_roots_tenant_or_the_delegates_subtree(
    client: httpx.AsyncClient, services: Services, t: Tenants
) -> None:
    delegation = await grant(client, t.token("a"), t.id("b"), RELAY, max_chain_depth=1)
    b_for_a = await acting(client, delegation, t.token("b"))
    # Into a third tenant: refused, and nothing changes.
    before = await snapshot(services)
    refused = await delegate(client, b_for_a, t.id("c"), ["agents.read"])
    assert "another tenant" in assert_error(refused, 403, "access_denied")["error_description"]
    # Back to the root delegator: a cycle.
    assert_error(await delegate(client, b_for_a, t.id("a"), ["agents.read"]), 400, "invalid_request")
    await assert_unchanged(services, before, "by refused re-delegations")
    # Down into B's own subtree, and within A's tenant: allowed (depth 1 -> 0).
    to_b2 = await grant(client, b_for_a, t.id("b2"), ["agents.read", "delegations.write"])
    assert to_b2["max_chain_depth"] == 0 and to_b2["chain_depth"] == 2
    assert (await grant(client, b_for_a, t.id("a2"), ["agents.read"]))["delegator_agent_id"] == t.id("b")
    b2_for_a = await acting(client, to_b2, t.token("b2"))
    body = claims(b2_for_a)
    assert body["sub"] == t.a["agent"]["did"]
    assert body["act"] == {"sub": t.b2["agent"]["did"], "act": {"sub": t.b["agent"]["did"]}}
    assert body["vc"]["credentialSubject"]["tenantId"] == t.a["agent"]["tenant_id"]
    listed = ok(await client.get("/api/v1/agents", headers=bearer(b2_for_a)))
    assert {x["id"] for x in listed["items"]} == {t.id("a"), t.id("a2")}
    # Depth 0: no further hop, into any tenant.
    for target in ("b", "a2", "c"):
        assert_error(await delegate(client, b2_for_a, t.id(target), ["agents.read"]), 403, "access_denied")
    # B2 acting under the chain is not a peer of A (the peers are the two agents of a direct delegation).
    assert_error(await get_agent(client, t.token("b2"), t.id("a")), 404, "not_found")
    # A delegation of depth 0 allows no re-delegation at all, not even into the delegate's own subtree.
    flat = await grant(client, t.token("a"), t.id("b"), RELAY, max_chain_depth=0)
    flat_token = await acting(client, flat, t.token("b"))
    assert_error(await delegate(client, flat_token, t.id("b2"), ["agents.read"]), 403, "access_denied")
    # B's own authority is B's to lend: with its own token it may delegate to C (a root delegation of B's tenant).
    assert (await grant(client, t.token("b"), t.id("c"), ["api.read"]))["delegator_agent_id"] == t.id("b")


async def test_a_child_delegates_across_tenants_and_its_root_governs_it(client: httpx.AsyncClient, t: Tenants) -> None:
    """A2 (a child of A) lends to B: A2 and B are peers (A is not); A, above A2, may revoke it; acting under a
    delegation from A, A2 could not have sent A's authority out of the tenant."""
    to_b = await grant(client, t.token("a2"), t.id("b"), ["api.read"])
    assert ok(await get_agent(client, t.token("b"), t.id("a2")))["relationship"] == "delegation_peer"
    assert_error(await get_agent(client, t.token("b"), t.id("a")), 404, "not_found")
    relay = await grant(client, t.token("a"), t.id("a2"), RELAY)
    a2_for_a = await acting(client, relay, t.token("a2"))
    assert_error(await delegate(client, a2_for_a, t.id("b"), ["api.read"]), 403, "access_denied")
    b_token = await acting(client, to_b, t.token("b"))
    assert claims(b_token)["sub"] == t.a2["agent"]["did"]
    ok(await client.delete(f"/api/v1/delegations/{to_b['id']}", headers=bearer(t.token("a"))))
    assert (await client.post("/api/v1/auth/token", data={"grant_type": "client_credentials",
            "client_secret": t.b["api_key"]})).status_code == 200  # fmt: skip
    assert_error(await client.get("/api/v1/agents", headers=bearer(b_token)), 401, "invalid_token")


# -- revocation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["revoke", "revoke_credential", "deactivate_delegator", "deactivate_delegate"])
async def test_revoking_or_deactivating_either_side_kills_it_at_once_offline_too(
    client: httpx.AsyncClient, t: Tenants, how: str
) -> None:
    """A2 -> B2 across tenants, B2 -> (its own subtree) a grandchild; both exchanged. Revoking the delegation (by
    id or as its credential, RFC 7009), deactivating the delegator (by A) or the delegate (by B, its tenant's
    root) kills every token resting on it, online and for an offline verifier with fresh status lists."""
    first = await grant(client, t.token("a2"), t.id("b2"), RELAY)
    b2_for_a2 = await acting(client, first, t.token("b2"))
    grandchild = await child_with_key(client, t.token("b2"), "b2-child")
    second = await grant(client, b2_for_a2, grandchild["agent"]["id"], ["agents.read"])
    gc_for_a2 = await acting(client, second, grandchild["token"])
    tokens, credentials = [b2_for_a2, gc_for_a2], [first["credential"], second["credential"]]
    verifier = await offline_verifier(client, *tokens, *credentials)
    for token in tokens:
        assert await works(client, token) and verifier.verify_access_token(token, audience=ISSUER_URL).scopes
    for credential in credentials:
        verifier.verify_credential(credential, expected_type=DELEGATION_CREDENTIAL)

    if how == "revoke":
        ok(await client.delete(f"/api/v1/delegations/{first['id']}", headers=bearer(t.token("a2"))))
    elif how == "revoke_credential":
        revoked = await client.post(
            "/api/v1/auth/revoke", data={"token": first["credential"]}, headers=bearer(t.token("a2"))
        )
        assert revoked.is_success
    elif how == "deactivate_delegator":
        ok(await client.delete(f"/api/v1/agents/{t.id('a2')}", headers=bearer(t.token("a"))))
    else:
        ok(await client.delete(f"/api/v1/agents/{t.id('b2')}", headers=bearer(t.token("b"))))

    for token in tokens:
        assert_error(await client.get("/api/v1/agents", headers=bearer(token)), 401, "invalid_token")
    verifier = await offline_verifier(client, *tokens, *credentials)
    for jwt in [*tokens, *credentials]:
        with pytest.raises(VerificationError) as caught:
            if jwt in tokens:
                verifier.verify_access_token(jwt, audience=ISSUER_URL)
            else:
                verifier.verify_credential(jwt, expected_type=DELEGATION_CREDENTIAL)
        assert caught.value.code == "revoked", caught.value
    states = ok(await client.get(f"/api/v1/delegations/{first['id']}", headers=bearer(t.token("a"))))
    assert states["status"] == "revoked"
    # The delegation is dead for the exchange too (a deactivated delegate has no key left: B tries in its place).
    by = {"api_key": t.b2["key"]} if how != "deactivate_delegate" else {"actor_token": t.token("b")}
    assert_error(await exchange(client, first["credential"], **by), 400, "invalid_grant")
    # The other tenant's own agents are untouched (deactivating the delegate's side did not reach A, nor back).
    assert await works(client, t.token("a")) and await works(client, t.token("b"))
