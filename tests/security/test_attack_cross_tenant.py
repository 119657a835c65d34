"""Cross-tenant access on every route, generated from ``create_app(...).routes`` (DESIGN "Nothing crosses
tenants"): tenant B's full-scope token against tenant A's object ids, for every route taking a path parameter
and every method, and for every id carried in a body or a query. Each is refused (404/403), changes nothing,
and leaks nothing of A. A route whose parameter this file does not know fails the suite until it is covered."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from security_support import TOKEN, World, assert_unchanged, decode, exchange_data, make_world, snapshot

from agentauth import paths
from agentauth.bootstrap import Services
from support import app_route_table, assert_error, bearer, fill_path, ok, path_params, requires_principal, status_entry

pytestmark = pytest.mark.anyio

ROUTES = app_route_table()
# The owner console's pages (/console/...) authenticate a person's session cookie, not a bearer token: their
# tenant isolation, CSRF and hostile ids are tests/security/test_attack_console.py's.
ID_ROUTES = [(m, p, r) for m, p, r in ROUTES if path_params(p) and not p.startswith(paths.CONSOLE + "/")]
# Public by design, so "another tenant" means nothing there: a did:key document is derivable from the DID; a
# status list is published for offline verifiers (lists are shared by every tenant).
PUBLIC = {
    "/api/v1/agents/{agent_id}/did.json",
    "/api/v1/status-lists/{list_id}",
    "/api/v1/status-lists/{list_id}/suspension",
}
POLICY = {"name": "deny tools", "effect": "deny", "subjects": {"agent_types": ["tool"]}, "actions": ["write"],
          "resources": ["reports/**"]}  # fmt: skip
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/api/v1/agents/{agent_id}"): {"name": "renamed", "trust_level": "untrusted"},
    ("PUT", "/api/v1/policies/{policy_id}"): POLICY | {"name": "replaced", "effect": "allow"},
    ("PUT", "/api/v1/resource-servers/{server_id}"): {"name": "renamed", "access": "any_agent"},
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): {"url": "http://127.0.0.1:9/stolen", "events": ["*"]},
}


def body_for(method: str, path: str, route: APIRoute) -> dict[str, Any] | None:
    if route.body_field is None:
        return None
    if (method, path) not in BODIES:
        pytest.fail(f"{method} {path} takes a body: add a valid one to BODIES in {__name__}")
    return BODIES[(method, path)]


class Victim:
    def __init__(
        self, w: World, policy: dict[str, Any], server: dict[str, Any], webhook: dict[str, Any], delivery: int
    ) -> None:
        self.w, self.policy, self.server, self.webhook, self.delivery = w, policy, server, webhook, delivery

    def objects(self) -> dict[str, list[str]]:
        """A's objects, by the path-parameter name that takes them."""
        status_url = status_entry(decode(self.w.a_token)[1]["vc"])["statusListCredential"]
        return {
            "agent_id": [self.w.a["agent"]["id"], self.w.child_id],
            "credential_id": [self.w.a["api_key_id"], self.w.child["api_key_id"]],
            "delegation_id": [self.w.delegation["id"]],
            "policy_id": [self.policy["id"]],
            "server_id": [self.server["id"]],
            "webhook_id": [self.webhook["id"]],
            "delivery_id": [str(self.delivery)],
            "list_id": [status_url.rsplit("/", 1)[1]],
        }

    def secrets(self) -> list[str]:
        a = self.w.a
        return [
            a["agent"]["name"],
            a["api_key"],
            a["refresh_token"],
            a["private_key_jwk"]["d"],
            self.w.child["api_key"],
            self.webhook["secret"],
        ]

    async def view(self, client: httpx.AsyncClient) -> list[Any]:
        """What A sees of its own objects through its own token."""
        urls = ["/api/v1/agents", "/api/v1/credentials", "/api/v1/delegations", "/api/v1/policies"]
        urls += [f"/api/v1/agents/{i}" for i in self.objects()["agent_id"]]
        urls += [f"/api/v1/credentials/{i}" for i in self.objects()["credential_id"]]
        urls += [f"/api/v1/delegations/{self.w.delegation['id']}", f"/api/v1/policies/{self.policy['id']}"]
        urls += [f"/api/v1/resource-servers/{self.server['id']}", f"/api/v1/webhooks/{self.webhook['id']}"]
        urls += [f"/api/v1/webhooks/{self.webhook['id']}/deliveries"]
        return [ok(await client.get(url, headers=bearer(self.w.a_token))) for url in urls]


@pytest.fixture
async def victim(client: httpx.AsyncClient, services: Services) -> Victim:
    w = await make_world(client)
    auth = bearer(w.a_token)
    policy = ok(await client.post("/api/v1/policies", json=POLICY, headers=auth), 201)
    server = {"identifier": "https://victim.example.com/mcp", "name": "victim"}
    registered = ok(await client.post("/api/v1/resource-servers", json=server, headers=auth), 201)
    hook = {"url": "http://127.0.0.1:9/victim", "events": ["*"]}
    webhook = ok(await client.post("/api/v1/webhooks", json=hook, headers=auth), 201)
    await services.webhook_worker.fan_out()  # its own webhook.created is owed to it: a delivery to aim at
    deliveries = ok(await client.get(f"/api/v1/webhooks/{webhook['id']}/deliveries", headers=auth))["items"]
    return Victim(w, policy, registered, webhook, deliveries[0]["id"])


def combinations(path: str, objects: dict[str, list[str]]) -> list[dict[str, str]]:
    names = path_params(path)
    fill_path(path, dict.fromkeys(objects, "x"))  # an unknown parameter fails here
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(objects[n] for n in names))]


def test_every_id_route_is_either_guarded_or_known_public() -> None:
    assert len(ID_ROUTES) >= 17
    assert {p for _, p, r in ID_ROUTES if not requires_principal(r)} == PUBLIC


@pytest.mark.parametrize(("method", "path", "route"), ID_ROUTES, ids=[f"{m} {p}" for m, p, _ in ID_ROUTES])
async def test_other_tenant_is_refused_on_every_id_route(
    client: httpx.AsyncClient, services: Services, victim: Victim, method: str, path: str, route: APIRoute
) -> None:
    w = victim.w
    seen_by_a = await victim.view(client)
    before = await snapshot(services)
    combos = combinations(path, victim.objects())
    for ids in combos:
        response = await client.request(
            method, fill_path(path, ids), json=body_for(method, path, route), headers=bearer(w.b_token)
        )
        if path in PUBLIC:
            assert response.status_code == 200, response.text
        else:
            assert_error(response, {403, 404}, {"not_found", "access_denied"}, f"{method} {fill_path(path, ids)}")
        for secret in victim.secrets():
            assert secret not in response.text
    await assert_unchanged(services, before, f"by B's {method} {path}")
    assert await victim.view(client) == seen_by_a
    # The control: the owner's token gets through, so the refusal above was about the tenant.
    own = await client.request(
        method, fill_path(path, combos[-1]), json=body_for(method, path, route), headers=bearer(w.a_token)
    )
    assert own.status_code < 300, own.text


BODY_IDS = [
    (m, p, r, name)
    for m, p, r in ROUTES
    if r.body_field is not None and requires_principal(r)
    for name in r.body_field.field_info.annotation.model_fields  # type: ignore[union-attr]
    if name.endswith("_id")
]
QUERY_IDS = [(m, p, q.name) for m, p, r in ROUTES for q in r.dependant.query_params if q.name.endswith("_id")]
VALID_BODIES: dict[str, dict[str, Any]] = {
    "/api/v1/credentials": {"name": "k"},
    "/api/v1/delegations": {"scopes": ["api.read"]},
    "/api/v1/policies/evaluate": {"action": "read", "resource": "reports/q3"},
    "/api/v1/agents": {"name": "n", "agent_type": "tool"},
    "/api/v1/policies": POLICY,
}


def test_body_and_query_ids_are_found() -> None:
    assert {(p, n) for _, p, _, n in BODY_IDS} >= {
        ("/api/v1/credentials", "agent_id"),
        ("/api/v1/delegations", "delegate_agent_id"),
        ("/api/v1/policies/evaluate", "agent_id"),
    }
    assert ("GET", "/api/v1/credentials", "agent_id") in QUERY_IDS
    assert ("GET", "/api/v1/audit/events", "target_id") in QUERY_IDS


@pytest.mark.parametrize(
    ("method", "path", "route", "field"), BODY_IDS, ids=[f"{m} {p} {n}" for m, p, _, n in BODY_IDS]
)
async def test_other_tenants_id_in_a_body_is_not_found(
    client: httpx.AsyncClient, services: Services, victim: Victim, method: str, path: str, route: APIRoute, field: str
) -> None:
    if not field.endswith("agent_id"):
        pytest.fail(f"{path} takes {field} in its body: teach {__name__} which object ids to try")
    if (path, field) == ("/api/v1/delegations", "delegate_agent_id"):
        # By design B may delegate to A's agents (issue 12 item 16); that this gives B nothing over A (and A
        # nothing over B) is tested in test_attack_cross_tenant_delegation.py.
        for agent_id in victim.objects()["agent_id"]:
            body = VALID_BODIES[path] | {field: agent_id}
            response = await client.request(method, path, json=body, headers=bearer(victim.w.b_token))
            assert response.status_code == 201 and response.json()["delegate_agent_id"] == agent_id, response.text
        return
    before = await snapshot(services)
    for agent_id in victim.objects()["agent_id"]:
        body = VALID_BODIES[path] | {field: agent_id}
        response = await client.request(method, path, json=body, headers=bearer(victim.w.b_token))
        assert_error(response, 404, "not_found", f"{path} {field}={agent_id}")
    await assert_unchanged(services, before, f"by B naming A's agents in {path}")
    own = VALID_BODIES[path] | {field: victim.w.child_id}
    assert (await client.request(method, path, json=own, headers=bearer(victim.w.a_token))).status_code < 300


@pytest.mark.parametrize(("method", "path", "name"), QUERY_IDS, ids=[f"{m} {p} ?{n}" for m, p, n in QUERY_IDS])
async def test_other_tenants_id_in_a_query_reveals_nothing(
    client: httpx.AsyncClient, services: Services, victim: Victim, method: str, path: str, name: str
) -> None:
    before = await snapshot(services)
    everything = [i for ids in victim.objects().values() for i in ids if not i.isdecimal()]
    for value in everything:
        response = await client.request(method, path, params={name: value}, headers=bearer(victim.w.b_token))
        if response.status_code == 200:
            items = response.json()["items"]
            assert items == [], f"?{name}={value} shows A's objects to B: {items}"
        else:
            assert_error(response, 404, "not_found", f"?{name}={value}")
    await assert_unchanged(services, before, f"by B's queries on {path}")


async def test_other_tenant_cannot_exchange_or_use_a_delegation(
    client: httpx.AsyncClient, services: Services, victim: Victim
) -> None:
    w = victim.w
    before = await snapshot(services)
    by_token = exchange_data(w.delegation["credential"], w.b_token)
    assert_error(await client.post(TOKEN, data=by_token), 400, "invalid_grant", "B exchanging A's delegation")
    by_key = exchange_data(w.delegation["credential"]) | {"client_secret": w.b["api_key"]}
    assert_error(await client.post(TOKEN, data=by_key), 400, "invalid_grant", "B exchanging with its API key")
    await assert_unchanged(services, before, "by B's exchanges")
