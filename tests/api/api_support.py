"""Helpers for the bad-input, tenancy, flow and storage tests (``api_support``: the suite-wide ``support`` is
tests/support.py, which also holds the RFC 6749 error-shape check and the app's route table): table snapshots
read straight from the database, tenants built through the REST API, valid bodies for the routes, and clients
over services built with other settings."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
import pytest
from fastapi.routing import APIRoute
from mcp.client import Client
from sqlalchemy import inspect, text

from agentauth.api.app import create_app
from agentauth.bootstrap import Services, build_services
from agentauth.keys import KeyPair
from agentauth.mcp.embedded import EmbeddedBackend
from agentauth.mcp.remote import RestBackend
from agentauth.mcp.server import build_server
from agentauth.vc import create_agent_assertion
from support import ISSUER_URL, assert_error, bearer, ok, quickstart, reset_postgres

TOKEN = "/api/v1/auth/token"
MAX_BODY = 64 * 1024
FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON_CT = {"content-type": "application/json"}
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_ENDPOINT_URL = f"{ISSUER_URL}{TOKEN}"

# Tables whose row count a refused request must not change. audit_events and status_blocks may grow on a
# failure (a failed authentication is audited; a status slot may be reserved before a grant is refused).
COUNTED_TABLES = ("agents", "api_keys", "refresh_tokens", "credentials", "used_assertions")
# Tables whose rows (every column) a refused request must leave exactly as they were.
STATE_TABLES = ("agents", "api_keys", "refresh_tokens", "credentials", "used_assertions", "delegations", "policies")
# Touched by a *successful* authentication at most once a minute: a hint, not state.
VOLATILE_COLUMNS = frozenset({"last_used_at"})


async def row_counts(services: Services) -> dict[str, int]:
    async with services.engine.connect() as conn:
        return {t: int((await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()) for t in COUNTED_TABLES}  # noqa: S608


async def table_rows(services: Services, tables: tuple[str, ...] = STATE_TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables`` (volatile columns left out), sorted, for before/after equality."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with services.engine.connect() as conn:
        for table in tables:
            result = await conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
            keep = [i for i, name in enumerate(result.keys()) if name not in VOLATILE_COLUMNS]
            out[table] = sorted((tuple(row[i] for i in keep) for row in result), key=repr)
    return out


@dataclass
class Snapshot:
    counts: dict[str, int]
    rows: dict[str, list[tuple[Any, ...]]]


async def snapshot(services: Services) -> Snapshot:
    return Snapshot(await row_counts(services), await table_rows(services))


async def assert_unchanged(services: Services, before: Snapshot, what: str = "") -> None:
    after = await snapshot(services)
    assert after.counts == before.counts, f"row counts changed {what}: {before.counts} -> {after.counts}"
    for table, rows in before.rows.items():
        assert after.rows[table] == rows, f"rows of {table} changed {what}"


async def dump_database(services: Services) -> str:
    """Every value of every row of every table, as text (bytes also as hex and latin-1)."""
    parts: list[str] = []
    async with services.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert {"agents", "api_keys", "refresh_tokens", "signing_keys", "audit_events"} <= set(tables)
        for table in tables:
            for row in await conn.execute(text(f"SELECT * FROM {table}")):  # noqa: S608
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        raw = bytes(value)
                        parts += [raw.hex(), raw.decode("latin-1")]
                    else:
                        parts.append(str(value))
    return "\n".join(parts)


# -- a tenant built through the REST API --------------------------------------------------------------------


@dataclass
class Root:
    """A quickstart root agent and one child agent (no keys): a cheap world for single-request tests."""

    root: dict[str, Any]
    child: dict[str, Any]

    @property
    def token(self) -> str:
        return str(self.root["access_token"])

    @property
    def agent_id(self) -> str:
        return str(self.root["agent"]["id"])


@dataclass
class Tenant(Root):
    """A root (as ``Root``) whose child has its own API key and token, plus a delegation (root -> child) and a
    policy."""

    child_key: dict[str, Any]
    child_token: str
    delegation: dict[str, Any]
    policy: dict[str, Any]
    server: dict[str, Any]
    webhook: dict[str, Any]
    delivery: dict[str, Any]

    @property
    def key_id(self) -> str:
        return str(self.root["api_key_id"])


POLICY_BODY: dict[str, Any] = {
    "name": "no writes to the reports",
    "effect": "deny",
    "subjects": {"agent_types": ["tool"]},
    "actions": ["write"],
    "resources": ["reports/**"],
}


SERVER_BODY: dict[str, Any] = {"name": "files", "kind": "mcp", "scopes": [{"name": "files.read"}]}


async def client_credentials(client: httpx.AsyncClient, api_key: str, scope: str | None = None) -> dict[str, Any]:
    data = {"grant_type": "client_credentials", "client_secret": api_key}
    if scope is not None:
        data["scope"] = scope
    return ok(await client.post(TOKEN, data=data))


async def works(client: httpx.AsyncClient, access_token: str) -> bool:
    """Whether the access token is accepted by a protected route (401 invalid_token otherwise)."""
    response = await client.get("/api/v1/agents", headers=bearer(access_token))
    if response.status_code == 401:
        assert_error(response, 401, "invalid_token")
        return False
    assert response.status_code == 200, response.text
    return True


async def make_child(
    client: httpx.AsyncClient, token: str, name: str, **fields: Any
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(agent, its API key as created, an access token of that key): a child of the token's agent."""
    body = {"name": name, "agent_type": "tool", **fields}
    agent = (ok(await client.post("/api/v1/agents", json=body, headers=bearer(token)), 201))["agent"]
    key = ok(await client.post("/api/v1/credentials", json={"agent_id": agent["id"]}, headers=bearer(token)), 201)
    return agent, key, (await client_credentials(client, key["raw_key"]))["access_token"]


async def make_tenant(client: httpx.AsyncClient, name: str = "tenant") -> Tenant:
    root = await quickstart(client, name)
    token = root["access_token"]
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["agent.*"]}
    webhook = ok(await client.post("/api/v1/webhooks", json=hook, headers=bearer(token)), 201)
    child, child_key, child_token = await make_child(client, token, f"{name}-child")
    delegation = ok(
        await client.post(
            "/api/v1/delegations",
            json={"delegate_agent_id": child["id"], "scopes": ["api.read"]},
            headers=bearer(token),
        ),
        201,
    )
    policy = ok(await client.post("/api/v1/policies", json=POLICY_BODY, headers=bearer(token)), 201)
    registered = SERVER_BODY | {"identifier": f"https://{root['agent']['id']}.example.com/mcp"}
    server = ok(await client.post("/api/v1/resource-servers", json=registered, headers=bearer(token)), 201)
    # The child's agent.created is owed to the webhook: the fan-out puts its delivery in the outbox.
    await client._transport.app.state.services.webhook_worker.fan_out()  # type: ignore[attr-defined]
    log = ok(await client.get(f"/api/v1/webhooks/{webhook['id']}/deliveries", headers=bearer(token)))
    return Tenant(root, child, child_key, child_token, delegation, policy, server, webhook, log["items"][0])


async def make_root(client: httpx.AsyncClient, name: str = "root") -> Root:
    root = await quickstart(client, name)
    body = {"name": f"{name}-child", "agent_type": "tool"}
    child = ok(await client.post("/api/v1/agents", json=body, headers=bearer(root["access_token"])), 201)["agent"]
    return Root(root, child)


def tenant_ids(tenant: Tenant) -> dict[str, str]:
    """Path parameters filled with the tenant's objects (agent_id: its child)."""
    return {
        "agent_id": tenant.child["id"],
        "credential_id": tenant.key_id,
        "delegation_id": tenant.delegation["id"],
        "policy_id": tenant.policy["id"],
        "server_id": tenant.server["id"],
        "webhook_id": tenant.webhook["id"],
        "delivery_id": str(tenant.delivery["id"]),
    }


def assertion_for(quickstart_response: dict[str, Any], now: datetime | None = None, **kw: Any) -> str:
    """A jwt-bearer assertion signed with the agent's private key, for the token endpoint."""
    pair = KeyPair.from_jwk(quickstart_response["private_key_jwk"])
    return create_agent_assertion(
        pair, audience=kw.pop("audience", TOKEN_ENDPOINT_URL), now=now or datetime.now(UTC), **kw
    )


def form(*pairs: tuple[str, str]) -> dict[str, Any]:
    """Request arguments for a form body given as pairs (so a parameter can repeat)."""
    return {"content": urlencode(pairs).encode(), "headers": FORM}


def basic(user: str, secret: str) -> str:
    """RFC 6749 section 2.3.1: both parts form-urlencoded, then HTTP Basic (a did:key id contains ':')."""
    return "Basic " + base64.b64encode(f"{quote_plus(user)}:{quote_plus(secret)}".encode()).decode()


# -- the route table (built by support.app_route_table) -----------------------------------------------------


def by_resource(routes: list[tuple[str, str, APIRoute]]) -> dict[str, list[tuple[str, str, APIRoute]]]:
    """Routes grouped by their resource (``/api/v1/<resource>/...``), for one test per resource."""
    groups: dict[str, list[tuple[str, str, APIRoute]]] = {}
    for method, path, route in routes:
        groups.setdefault("/".join(path.split("/")[:4]), []).append((method, path, route))
    return groups


def valid_body(method: str, path: str, route: APIRoute, ids: dict[str, str]) -> dict[str, Any] | None:
    """A plausible valid request body for a route (None for routes without one); a route with a body the
    tests do not know fails the test."""
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/api/v1/agents/quickstart"): {"name": "newcomer", "agent_type": "assistant"},
        ("POST", "/api/v1/agents"): {"name": "new-agent", "agent_type": "tool"},
        ("PATCH", "/api/v1/agents/{agent_id}"): {"name": "renamed", "description": "changed"},
        ("POST", "/api/v1/credentials"): {"name": "another key"},
        ("POST", "/api/v1/delegations"): {"delegate_agent_id": ids.get("agent_id", ""), "scopes": ["api.read"]},
        ("POST", "/api/v1/policies"): POLICY_BODY,
        ("PUT", "/api/v1/policies/{policy_id}"): POLICY_BODY | {"name": "replaced", "priority": 7},
        ("POST", "/api/v1/resource-servers"): SERVER_BODY | {"identifier": "https://another.example.com/mcp"},
        ("PUT", "/api/v1/resource-servers/{server_id}"): SERVER_BODY | {"name": "renamed"},
        ("POST", "/api/v1/webhooks"): {"url": "http://127.0.0.1:9/other", "events": ["*"]},
        ("PATCH", "/api/v1/webhooks/{webhook_id}"): {"active": False},
        ("POST", "/api/v1/policies/evaluate"): {
            "agent_id": ids.get("agent_id", ""),
            "action": "read",
            "resource": "reports/q3",
        },
    }
    if route.body_field is None:
        return None
    if (method, path) not in bodies:
        pytest.fail(f"{method} {path} takes a body the tests do not know: add a valid one to api_support.valid_body")
    return bodies[(method, path)]


# -- services with other settings ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def custom_client(
    settings_factory: Any, backend: str, **overrides: Any
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """Services built from ``settings_factory(**overrides)`` and a client to their app - the ``services`` and
    ``client`` fixtures' pattern, for tests that must not use those fixtures' default settings."""
    if backend == "postgres":
        await reset_postgres()
    services = await build_services(settings_factory(**overrides))
    try:
        app = create_app(services=services)
        app.state.services = services
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as http:
            yield services, http
    finally:
        await services.close()


@contextlib.asynccontextmanager
async def lenient_client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A client to an app over the given services that returns the app's 500 instead of raising it, so a
    test can assert on what a real HTTP client would see."""
    app = create_app(services=services)
    app.state.services = services
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as http:
        yield http


@contextlib.asynccontextmanager
async def mcp_client(services: Services, backend_kind: str, client_ip: str) -> AsyncIterator[Client]:
    """An in-process MCP client over the embedded backend or the REST-backed one (real HTTP to the app, from
    ``client_ip``): the two ways an MCP tool reaches the use cases."""
    backend: Any
    if backend_kind == "embedded":
        backend = EmbeddedBackend(lambda: services)
    else:
        app = create_app(services=services)
        app.state.services = services
        backend = RestBackend(ISSUER_URL, transport=httpx.ASGITransport(app=app, client=(client_ip, 50000)))
    try:
        async with Client(build_server(backend, token_in_header=False)) as client:
            yield client
    finally:
        if isinstance(backend, RestBackend):
            await backend.aclose()
