"""Nothing crosses tenants, and an agent sees and changes only its own subtree (DESIGN "Tenancy").

The cross-tenant tests are generated from the app's route table: every /api/v1 route taking an id is called with
another tenant's full-scope token and the first tenant's objects; a new route with an id parameter the tests do
not know fails them until it is covered."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import httpx
import pytest
from api_support import Tenant, assert_unchanged, by_resource, make_child, make_tenant, snapshot, valid_body

from agentauth.bootstrap import Services
from agentauth.did import did_key_document
from support import (
    ISSUER_URL,
    app_route_table,
    bearer,
    fill_path,
    ok,
    path_params,
    requires_principal,
    route_table,
    status_entry,
)

pytestmark = pytest.mark.anyio

ROUTES = app_route_table()
# Public by design: a did:key document is derivable from the DID itself; a status list is published for
# offline verifiers. Nothing else taking an id may be reachable without a token.
PUBLIC = {
    "/api/v1/agents/{agent_id}/did.json",
    "/api/v1/status-lists/{list_id}",
    "/api/v1/status-lists/{list_id}/suspension",
}
ID_ROUTES = [(m, p, r) for m, p, r in ROUTES if p.startswith("/api/v1/") and path_params(p)]
GUARDED = [(m, p, r) for m, p, r in ID_ROUTES if p not in PUBLIC]
# Policies belong to the tenant, not to an agent: the subtree tests cannot give them a sibling's owner.
TENANT_WIDE = {"policy_id", "server_id", "webhook_id", "delivery_id"}


def jwt_payload(jwt: str) -> dict[str, Any]:
    segment = jwt.split(".")[1]
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return payload


def objects_of(t: Tenant) -> dict[str, list[str]]:
    """The tenant's objects of each kind an id parameter can name."""
    return {
        "agent_id": [t.agent_id, t.child["id"]],
        "credential_id": [t.key_id, t.child_key["id"]],
        "delegation_id": [t.delegation["id"]],
        "policy_id": [t.policy["id"]],
        "server_id": [t.server["id"]],
        "webhook_id": [t.webhook["id"]],
        "delivery_id": [str(t.delivery["id"])],
    }


def combinations(path: str, objects: dict[str, list[str]]) -> list[dict[str, str]]:
    names = path_params(path)
    unknown = [n for n in names if n not in objects]
    if unknown:
        pytest.fail(f"{path} takes {unknown}: add the object kind to objects_of() in test_tenancy.py")
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(objects[n] for n in names))]


async def view_of(client: httpx.AsyncClient, t: Tenant) -> list[Any]:
    """Everything the tenant sees of its own objects, read through its own token."""
    reads = [f"/api/v1/agents/{i}" for i in objects_of(t)["agent_id"]]
    reads += [f"/api/v1/credentials/{i}" for i in objects_of(t)["credential_id"]]
    reads += [f"/api/v1/delegations/{t.delegation['id']}", f"/api/v1/policies/{t.policy['id']}"]
    reads += [f"/api/v1/resource-servers/{t.server['id']}"]
    reads += ["/api/v1/agents", "/api/v1/credentials", "/api/v1/delegations", "/api/v1/policies"]
    reads += ["/api/v1/resource-servers", "/api/v1/webhooks", f"/api/v1/webhooks/{t.webhook['id']}"]
    reads += [f"/api/v1/webhooks/{t.webhook['id']}/deliveries"]
    return [ok(await client.get(url, headers=bearer(t.token))) for url in reads]


def assert_refused(response: httpx.Response, secrets: list[str], what: str) -> None:
    assert response.status_code in (403, 404), f"[{what}] {response.status_code}: {response.text}"
    body = response.json()
    assert set(body) == {"error", "error_description"}, what
    assert body["error"] in ("not_found", "access_denied", "insufficient_scope"), f"[{what}] {body}"
    for secret in secrets:
        assert secret not in response.text, what


@pytest.fixture
async def tenants(client: httpx.AsyncClient) -> tuple[Tenant, Tenant]:
    return await make_tenant(client, "alice"), await make_tenant(client, "bob")


def test_only_the_public_routes_take_an_id_without_a_token() -> None:
    assert {p for _, p, r in ID_ROUTES if not requires_principal(r)} == PUBLIC
    assert all(requires_principal(r) for _, _, r in GUARDED)
    assert {p for _, p, _ in GUARDED} >= {"/api/v1/agents/{agent_id}", "/api/v1/credentials/{credential_id}/rotate"}
    assert len(GUARDED) >= 15


async def test_the_live_app_has_the_route_table_the_tests_were_generated_from(client: httpx.AsyncClient) -> None:
    live = route_table(client._transport.app.routes)  # type: ignore[attr-defined]
    assert [(m, p) for m, p, _ in live] == [(m, p) for m, p, _ in ROUTES]


GUARDED_GROUPS = by_resource(GUARDED)


@pytest.mark.parametrize("resource", GUARDED_GROUPS)
async def test_other_tenant_gets_404_and_changes_nothing(
    client: httpx.AsyncClient, services: Services, tenants: tuple[Tenant, Tenant], resource: str
) -> None:
    """Every route of the resource taking an id, every method, each of A's objects, with B's full-scope token."""
    a, b = tenants
    seen_by_a = await view_of(client, a)
    before = await snapshot(services)
    for method, path, route in GUARDED_GROUPS[resource]:
        for ids in combinations(path, objects_of(a)):
            body = valid_body(method, path, route, ids)
            response = await client.request(method, fill_path(path, ids), json=body, headers=bearer(b.token))
            assert_refused(response, [a.root["agent"]["did"], a.root["agent"]["name"]], f"{method} {path} {ids}")
        await assert_unchanged(services, before, f"by {method} {path}")
    assert await view_of(client, a) == seen_by_a

    # The same requests with the owner's token work: the refusals were about the tenant, not the requests.
    # (Reads first and revocations last, on the child's objects.)
    def destructive(method: str, path: str) -> bool:
        return method == "DELETE" or path.endswith(("/revoke", "/deactivate"))

    for method, path, route in sorted(GUARDED_GROUPS[resource], key=lambda x: (x[0] != "GET", destructive(x[0], x[1]))):
        ids = combinations(path, objects_of(a))[-1]
        own = await client.request(
            method, fill_path(path, ids), json=valid_body(method, path, route, ids), headers=bearer(a.token)
        )
        assert own.status_code < 300, f"{method} {path}: {own.text}"


BODY_ID_FIELDS = [
    (m, p, r, name)
    for m, p, r in ROUTES
    if r.body_field is not None and requires_principal(r)
    for name in r.body_field.field_info.annotation.model_fields  # type: ignore[union-attr]
    if name.endswith("agent_id")
]


# Naming another tenant's agent as the delegate is the point of cross-tenant delegation (issue 12 item 16); what
# that may and may not do is tested in tests/security/test_attack_cross_tenant_delegation.py.
CROSS_TENANT_BY_DESIGN = {("/api/v1/delegations", "delegate_agent_id")}


def test_body_id_fields_are_found() -> None:
    found = {(p, n) for _, p, _, n in BODY_ID_FIELDS}
    assert ("/api/v1/credentials", "agent_id") in found
    assert ("/api/v1/delegations", "delegate_agent_id") in found


async def test_other_tenants_agent_named_in_a_body_is_not_found(
    client: httpx.AsyncClient, services: Services, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    before = await snapshot(services)
    for method, path, route, field in BODY_ID_FIELDS:
        if (path, field) in CROSS_TENANT_BY_DESIGN:
            continue
        for agent_id in objects_of(a)["agent_id"]:
            body = (valid_body(method, path, route, {}) or {}) | {field: agent_id}
            response = await client.request(method, path, json=body, headers=bearer(b.token))
            assert_refused(response, [a.root["agent"]["did"]], f"{method} {path} {field}={agent_id}")
            assert response.status_code == 404
    listing = await client.get("/api/v1/credentials", params={"agent_id": a.child["id"]}, headers=bearer(b.token))
    assert_refused(listing, [], "GET /api/v1/credentials?agent_id=")
    await assert_unchanged(services, before)
    for method, path, route, field in BODY_ID_FIELDS:  # the owner's own requests work
        body = (valid_body(method, path, route, {}) or {}) | {field: a.child["id"]}
        assert (await client.request(method, path, json=body, headers=bearer(a.token))).status_code < 300


async def test_lists_never_show_another_tenants_objects(
    client: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    # A delivery id is a small number (it would match any digit); the webhook's id stands for its deliveries.
    named = {k: v for k, v in objects_of(a).items() if k != "delivery_id"}
    foreign = [i for ids in named.values() for i in ids] + [a.root["agent"]["did"], a.root["agent"]["name"]]
    own = [b.agent_id, b.key_id, b.delegation["id"], b.policy["id"], b.webhook["id"]]
    texts = []
    for url in ["/api/v1/agents", "/api/v1/credentials", "/api/v1/delegations", "/api/v1/policies",
                "/api/v1/audit/events?limit=100", "/api/v1/webhooks"]:  # fmt: skip
        response = await client.get(url, headers=bearer(b.token))
        assert response.status_code == 200, response.text
        texts.append(response.text)
    everything = "\n".join(texts)
    assert all(i in everything for i in own), "B's own objects are listed (the check is not vacuous)"
    for item in foreign:
        assert item not in everything, f"{item} of tenant A is visible to tenant B"


async def test_other_tenant_cannot_revoke_or_introspect_tokens(
    client: httpx.AsyncClient, services: Services, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    before = await snapshot(services)
    # (Not A's refresh token: holding one is enough to revoke it, issue 12 item 18 - test_token_pairs.py.)
    for token in (a.token, a.child_token):
        revoked = await client.post("/api/v1/auth/revoke", data={"token": token}, headers=bearer(b.token))
        assert revoked.status_code == 200  # RFC 7009 2.2: no hint whether the token exists
        seen = await client.post("/api/v1/auth/introspect", data={"token": token}, headers=bearer(b.token))
        assert seen.status_code == 200 and seen.json() == {"active": False}
    await assert_unchanged(services, before)
    assert (await client.get("/api/v1/agents", headers=bearer(a.token))).status_code == 200
    refreshed = await client.post(
        "/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": a.root["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text


# -- inside one tenant: a child sees only its own subtree ---------------------------------------------------


@pytest.fixture
async def family(client: httpx.AsyncClient) -> dict[str, Any]:
    """Root A with children C1 (``tenant.child``, own key and token) and C2 (own key, delegation A -> C2)."""
    a = await make_tenant(client, "parent")
    c2, c2_key, _ = await make_child(client, a.token, "sibling")
    to_c2 = ok(
        await client.post(
            "/api/v1/delegations", json={"delegate_agent_id": c2["id"], "scopes": ["api.read"]}, headers=bearer(a.token)
        ),
        201,
    )
    outside = {  # objects outside C1's subtree: the parent's and the sibling's
        "agent_id": [a.agent_id, c2["id"]],
        "credential_id": [a.key_id, c2_key["id"]],
        "delegation_id": [to_c2["id"]],
    }
    return {"a": a, "c2": c2, "c2_key": c2_key, "outside": outside}


@pytest.mark.parametrize("resource", GUARDED_GROUPS)
async def test_child_cannot_reach_its_parent_or_sibling(
    client: httpx.AsyncClient, services: Services, family: dict[str, Any], resource: str
) -> None:
    a: Tenant = family["a"]
    seen_by_a = await view_of(client, a)
    before = await snapshot(services)
    for method, path, route in GUARDED_GROUPS[resource]:
        if set(path_params(path)) & TENANT_WIDE:
            continue  # no owner agent: see test_child_cannot_rule_its_root
        for ids in combinations(path, family["outside"]):
            body = valid_body(method, path, route, ids)
            response = await client.request(method, fill_path(path, ids), json=body, headers=bearer(a.child_token))
            assert_refused(response, [family["c2"]["did"], family["c2_key"]["prefix"]], f"{method} {path} {ids}")
        await assert_unchanged(services, before, f"by {method} {path}")
    assert await view_of(client, a) == seen_by_a


async def test_child_lists_only_its_own_subtree(client: httpx.AsyncClient, family: dict[str, Any]) -> None:
    a: Tenant = family["a"]
    c1 = a.child
    grandchild, _, _ = await make_child(client, a.child_token, "grandchild")
    agents = ok(await client.get("/api/v1/agents", headers=bearer(a.child_token)))
    assert sorted(x["id"] for x in agents["items"]) == sorted([c1["id"], grandchild["id"]]) and agents["total"] == 2
    keys = ok(await client.get("/api/v1/credentials", headers=bearer(a.child_token)))
    assert {k["agent_id"] for k in keys["items"]} <= {c1["id"], grandchild["id"]} and keys["total"] == 2
    delegations = ok(await client.get("/api/v1/delegations", headers=bearer(a.child_token)))
    assert [d["delegate_agent_id"] for d in delegations["items"]] == [c1["id"]]
    # The parent sees the whole family.
    assert ok(await client.get("/api/v1/agents", headers=bearer(a.token)))["total"] == 4


async def test_childs_audit_log_shows_only_its_subtree(client: httpx.AsyncClient, family: dict[str, Any]) -> None:
    a: Tenant = family["a"]
    events = ok(await client.get("/api/v1/audit/events", params={"limit": 100}, headers=bearer(a.child_token)))
    assert events["items"], "the child's own events are listed"
    outside = {a.agent_id, a.key_id, family["c2"]["id"], family["c2_key"]["id"]}
    leaked = [e for e in events["items"] if {e["actor"], e["target_id"]} & outside and e["actor"] != a.child["id"]]
    assert leaked == []


async def test_child_cannot_rule_its_root(client: httpx.AsyncClient, family: dict[str, Any]) -> None:
    a: Tenant = family["a"]
    deny_all = {"name": "lockout", "effect": "deny", "subjects": {"all": True}, "actions": ["*"], "resources": ["**"]}
    created = await client.post("/api/v1/policies", json=deny_all, headers=bearer(a.child_token))
    root_access = await client.get("/api/v1/agents", headers=bearer(a.token))
    assert created.status_code == 403 or root_access.status_code == 200, (created.text, root_access.text)


# -- the public routes reveal nothing secret -----------------------------------------------------------------


async def test_public_id_routes_reveal_nothing_secret(
    client: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    secrets = [
        a.root["api_key"],
        a.root["refresh_token"],
        a.token,
        a.root["private_key_jwk"]["d"],
        a.child_key["raw_key"],
    ]
    did = a.root["agent"]["did"]
    document = await client.get(f"/api/v1/agents/{a.agent_id}/did.json")
    assert document.status_code == 200
    assert document.json() == did_key_document(did), "exactly what the DID itself implies"
    list_url = status_entry(jwt_payload(a.token)["vc"])["statusListCredential"]
    status_list = await client.get(list_url.removeprefix(ISSUER_URL))
    assert status_list.status_code == 200
    subject = jwt_payload(status_list.text)["vc"]["credentialSubject"]
    assert set(subject) <= {"id", "type", "statusPurpose", "encodedList", "ttl"}, subject
    for response in (document, status_list):
        for secret in [*secrets, a.agent_id, a.root["agent"]["name"], a.key_id]:
            assert secret not in response.text
    assert did not in status_list.text
