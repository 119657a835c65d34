"""SQL-injection, path and odd strings in every id, query parameter and JSON name (OWASP A03): never a 5xx,
never a change of state, never another tenant's data, and afterwards every table is still there.

Ids (path parameters, ids in bodies, token-endpoint parameters) are refused with a 4xx. Free-text names are
data, not syntax: they are either stored exactly as sent (and read back byte for byte) or refused with a 4xx.
Filters in queries either match nothing or are refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute
from security_support import (
    EXCHANGE,
    INTROSPECT,
    JWT_BEARER,
    REVOKE,
    TOKEN,
    World,
    assert_unchanged,
    snapshot,
)
from sqlalchemy import inspect, text

from agentauth import paths
from agentauth.bootstrap import Services
from support import app_route_table, bearer, fill_path, ok, path_params

pytestmark = pytest.mark.anyio

PAYLOADS: dict[str, str] = {
    "SQL tautology": "' OR '1'='1",
    "SQL drop": '"; DROP TABLE agents; --',
    "SQL comment": "agt_x' --",
    "SQL union": "x' UNION SELECT did FROM agents --",
    "SQL stacked": "1; DELETE FROM api_keys",
    "path traversal": "../../etc/passwd",
    "encoded traversal": "..%2f..%2fetc%2fpasswd",
    "windows traversal": "..\\..\\windows\\win.ini",
    "percent-encoded NUL": "%00",
    "LIKE wildcards": "%_%",
    "very long": "a" * 5000,
    "unicode": "агент-🤖-\u202e-ﬁ-\u0301",
    "CRLF": "x\r\nX-Injected: 1",
    "operator object text": '{"$ne": null}',
}
ROUTES = app_route_table()
# The owner console's pages (/console/...) authenticate a person's session cookie, not a bearer token: their
# tenant isolation, CSRF and hostile ids are tests/security/test_attack_console.py's.
ID_ROUTES = [(m, p, r) for m, p, r in ROUTES if path_params(p) and not p.startswith(paths.CONSOLE + "/")]
QUERY_ROUTES = [(m, p, r) for m, p, r in ROUTES if r.dependant.query_params]
POLICY = {"name": "p", "effect": "deny", "subjects": {"all": True}, "actions": ["write"], "resources": ["x/**"]}
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/api/v1/agents/{agent_id}"): {"description": "changed"},
    ("PUT", "/api/v1/policies/{policy_id}"): POLICY,
    ("PUT", "/api/v1/resource-servers/{server_id}"): {"name": "renamed"},
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): {"active": False},
}
TABLES = {"agents", "api_keys", "refresh_tokens", "credentials", "delegations", "policies", "signing_keys",
          "status_lists", "audit_events", "used_assertions"}  # fmt: skip


def assert_no_5xx(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"[{what}] {response.status_code}: {response.text}"
    assert "Traceback" not in response.text and "sqlalchemy" not in response.text.lower(), what


async def assert_tables_intact(client: httpx.AsyncClient, services: Services, w: World) -> None:
    """Every table is still there, still holds the world's rows, and the API still serves them."""
    async with services.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        assert tables >= TABLES, TABLES - tables
        agents = (await conn.execute(text("SELECT count(*) FROM agents"))).scalar_one()
    assert agents >= 3
    assert ok(await client.get("/api/v1/agents", headers=bearer(w.a_token)))["total"] >= 2


# -- ids in paths -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "route"), ID_ROUTES, ids=[f"{m} {p}" for m, p, _ in ID_ROUTES])
async def test_hostile_path_ids_are_4xx_and_change_nothing(
    client: httpx.AsyncClient, services: Services, world: World, method: str, path: str, route: APIRoute
) -> None:
    body = BODIES.get((method, path)) if route.body_field is not None else None
    if route.body_field is not None and body is None:
        pytest.fail(f"{method} {path} takes a body: add a valid one to BODIES in {__name__}")
    before = await snapshot(services)
    for name, payload in PAYLOADS.items():
        url = fill_path(path, dict.fromkeys(path_params(path), quote(payload, safe="")))
        response = await client.request(method, url, json=body, headers=bearer(world.a_token))
        assert_no_5xx(response, f"{name} in {method} {path}")
        assert 400 <= response.status_code < 500, f"[{name} in {method} {path}] {response.status_code}: {response.text}"
    await assert_unchanged(services, before, f"by hostile ids in {method} {path}")
    await assert_tables_intact(client, services, world)


# -- query parameters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "route"), QUERY_ROUTES, ids=[f"{m} {p}" for m, p, _ in QUERY_ROUTES])
async def test_hostile_query_values_match_nothing(
    client: httpx.AsyncClient, services: Services, world: World, method: str, path: str, route: APIRoute
) -> None:
    before = await snapshot(services)
    for param in route.dependant.query_params:
        for name, payload in PAYLOADS.items():
            response = await client.request(method, path, params={param.name: payload}, headers=bearer(world.a_token))
            what = f"{name} in {method} {path}?{param.name}"
            assert_no_5xx(response, what)
            if response.status_code == 200:  # a free-text filter: it must match nothing, not everything
                assert response.json()["items"] == [], f"[{what}] the filter matched: {response.text[:300]}"
            else:
                assert 400 <= response.status_code < 500, what
    await assert_unchanged(services, before, f"by hostile queries on {path}")
    await assert_tables_intact(client, services, world)


# -- ids and secrets in bodies --------------------------------------------------------------------------------


def id_requests(w: World, payload: str) -> list[tuple[str, str, dict[str, Any], dict[str, str] | None]]:
    """(method, path, body, headers): every request that takes an id or a token in its body."""
    auth = bearer(w.a_token)
    return [
        ("POST", "/api/v1/credentials", {"agent_id": payload}, auth),
        ("POST", "/api/v1/delegations", {"delegate_agent_id": payload, "scopes": ["api.read"]}, auth),
        ("POST", "/api/v1/policies/evaluate", {"agent_id": payload, "action": "read", "resource": "x"}, auth),
        ("POST", TOKEN, {"grant_type": "client_credentials", "client_secret": payload}, None),
        (
            "POST",
            TOKEN,
            {"grant_type": "client_credentials", "client_secret": w.a["api_key"], "client_id": payload},
            None,
        ),
        ("POST", TOKEN, {"grant_type": "client_credentials", "client_secret": w.a["api_key"], "scope": payload}, None),
        ("POST", TOKEN, {"grant_type": "refresh_token", "refresh_token": payload}, None),
        ("POST", TOKEN, {"grant_type": "refresh_token", "refresh_token": "rt_" + payload}, None),
        ("POST", TOKEN, {"grant_type": JWT_BEARER, "assertion": payload}, None),
        ("POST", TOKEN, {"grant_type": EXCHANGE, "subject_token": payload, "subject_token_type": payload}, None),
        ("POST", TOKEN, {"grant_type": payload}, None),
        ("POST", INTROSPECT, {"token": payload, "token_type_hint": payload}, auth),
        ("POST", INTROSPECT, {"token": "rt_" + payload}, auth),
        ("POST", REVOKE, {"token": payload}, auth),
        ("POST", REVOKE, {"token": "rt_" + payload}, auth),
        ("POST", INTROSPECT, {"token": w.a_token, "client_secret": "ak_live_" + payload}, None),
    ]


@pytest.mark.parametrize("encoding", ["json", "form"])
async def test_hostile_ids_and_tokens_in_bodies_change_nothing(
    client: httpx.AsyncClient, services: Services, world: World, encoding: str
) -> None:
    before = await snapshot(services)
    for name, payload in PAYLOADS.items():
        for method, path, body, headers in id_requests(world, payload):
            if encoding == "form" and not path.startswith("/api/v1/auth/"):
                continue
            sent = {"json": body} if encoding == "json" else {"data": body}
            response = await client.request(method, path, headers=headers, **sent)  # type: ignore[arg-type]
            what = f"{name} in {path} {sorted(body)}"
            assert_no_5xx(response, what)
            if path in (INTROSPECT, REVOKE) and headers is not None and response.status_code != 400:
                # RFC 7009 2.2 / RFC 7662 2.2: an unknown token is no error (a 400 for unusable input is fine).
                assert response.status_code == 200 and response.text in ("", '{"active":false}'), what
            else:
                assert 400 <= response.status_code < 500, f"[{what}] {response.status_code}: {response.text}"
    await assert_unchanged(services, before, f"by hostile ids in {encoding} bodies")
    await assert_tables_intact(client, services, world)


# -- free-text names ----------------------------------------------------------------------------------------


NAMED = [
    ("quickstart", "POST", "/api/v1/agents/quickstart", {"agent_type": "tool"}, "name"),
    ("child agent", "POST", "/api/v1/agents", {"agent_type": "tool"}, "name"),
    ("child description", "POST", "/api/v1/agents", {"agent_type": "tool", "name": "d"}, "description"),
    ("API key", "POST", "/api/v1/credentials", {}, "name"),
    ("policy", "POST", "/api/v1/policies", {k: v for k, v in POLICY.items() if k != "name"}, "name"),
    ("policy resource", "POST", "/api/v1/policies", POLICY, "resources"),
]


@pytest.mark.parametrize(("label", "method", "path", "base", "field"), NAMED, ids=[n[0] for n in NAMED])
async def test_hostile_names_are_stored_exactly_or_refused(
    client: httpx.AsyncClient,
    services: Services,
    world: World,
    label: str,
    method: str,
    path: str,
    base: dict[str, Any],
    field: str,
) -> None:
    for name, payload in PAYLOADS.items():
        value: Any = [payload] if field == "resources" else payload
        before = await snapshot(services)
        response = await client.request(method, path, json=base | {field: value}, headers=bearer(world.a_token))
        what = f"{name} as {label} {field}"
        assert_no_5xx(response, what)
        if response.status_code >= 400:
            await assert_unchanged(services, before, what)
            continue
        created = response.json()
        stored = created.get("agent", created)[field]
        assert stored == (value if field == "resources" else payload.strip()), what
        after = await snapshot(services)
        grown = {t: after.counts[t] - before.counts[t] for t in after.counts if after.counts[t] != before.counts[t]}
        assert all(n >= 0 for n in grown.values()) and grown.get("agents", 0) <= 1, (what, grown)
    await assert_tables_intact(client, services, world)


# -- NUL ----------------------------------------------------------------------------------------------------


NUL = "agt\u0000x"


async def test_nul_in_ids_queries_and_names_is_a_4xx(
    client: httpx.AsyncClient, services: Services, world: World
) -> None:
    """The NUL character is valid JSON and valid percent-encoding; PostgreSQL text cannot hold it (SQLite can).
    Regression: it used to reach asyncpg, whose error was mapped to 503 temporarily_unavailable on every route."""
    auth = bearer(world.a_token)
    requests: list[tuple[str, str, dict[str, Any]]] = []
    for method, path, route in ID_ROUTES:
        url = fill_path(path, dict.fromkeys(path_params(path), quote(NUL, safe="")))
        requests.append((method, url, {"json": BODIES.get((method, path)) if route.body_field else None}))
    for method, path, route in QUERY_ROUTES:
        requests += [(method, path, {"params": {q.name: NUL}}) for q in route.dependant.query_params]
    requests += [(m, p, {"json": b}) for m, p, b, _ in id_requests(world, NUL) if not p.startswith("/api/v1/auth/")]
    requests += [(m, p, {"json": base | {f: [NUL] if f == "resources" else NUL}}) for _, m, p, base, f in NAMED]
    before = await snapshot(services)
    failures = []
    for method, url, kwargs in requests:
        response = await client.request(method, url, headers=auth, **kwargs)
        if response.status_code >= 500:
            failures.append(
                f"{method} {url.replace(NUL, '<NUL>')} {kwargs.get('params') or ''}: {response.status_code}"
            )
    assert not failures, f"{len(failures)} of {len(requests)} requests answered 5xx:\n" + "\n".join(failures)
    after = await snapshot(services)
    assert after.counts["agents"] - before.counts["agents"] <= 3  # names are data: stored or refused
    await assert_tables_intact(client, services, world)
