"""Helpers for the bad-input, tenancy, flow and storage tests (``api_support``: the suite-wide ``support`` is
tests/support.py): table snapshots read straight from the database, the RFC 6749 error-shape check, tenants
built through the REST API, the app's route table, and clients over services built with other settings."""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import inspect, text

from agentauth.api.app import create_app
from agentauth.api.deps import get_principal
from agentauth.bootstrap import Services, build_services
from agentauth.keys import KeyPair
from agentauth.settings import Settings
from agentauth.vc import create_agent_assertion
from support import ISSUER_URL, bearer, quickstart, reset_postgres

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


def assert_error(
    response: httpx.Response,
    status: int,
    error: str | set[str],
    *,
    challenge: str | None = None,
    what: str = "",
) -> dict[str, Any]:
    """An RFC 6749 section 5.2 error: exactly ``error`` and ``error_description`` at the top level, the right
    status; on 401 a ``WWW-Authenticate`` header (RFC 6749 5.2 / RFC 6750 3), and on bearer errors naming the
    error code. ``what`` labels the request in failure messages."""
    label = f"[{what}] " if what else ""
    assert response.status_code == status, f"{label}expected {status}, got {response.status_code}: {response.text}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "error_description"}, f"{label}{body}"
    expected = {error} if isinstance(error, str) else error
    assert body["error"] in expected, f"{label}{body}"
    assert isinstance(body["error_description"], str) and body["error_description"], f"{label}{body}"
    assert "Traceback" not in response.text and 'File "' not in response.text, label
    header = response.headers.get("www-authenticate")
    if status == 401:
        assert header, f"{label}401 without WWW-Authenticate"
    if body["error"] in ("invalid_token", "insufficient_scope"):
        assert header is not None and header.startswith("Bearer "), f"{label}{header}"
        assert f'error="{body["error"]}"' in header, f"{label}{header}"
    if challenge is not None:
        assert header is not None and header.startswith(challenge), f"{label}{header}"
    return body


# -- a tenant built through the REST API --------------------------------------------------------------------


@dataclass
class Tenant:
    """A quickstart root agent plus what the tests need: a child agent with its own API key and token, a
    delegation (root -> child) and a policy."""

    root: dict[str, Any]
    child: dict[str, Any]
    child_key: dict[str, Any]
    child_token: str
    delegation: dict[str, Any]
    policy: dict[str, Any]

    @property
    def token(self) -> str:
        return str(self.root["access_token"])

    @property
    def agent_id(self) -> str:
        return str(self.root["agent"]["id"])

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


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def client_credentials(client: httpx.AsyncClient, api_key: str, scope: str | None = None) -> dict[str, Any]:
    data = {"grant_type": "client_credentials", "client_secret": api_key}
    if scope is not None:
        data["scope"] = scope
    return ok(await client.post(TOKEN, data=data))


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
    return Tenant(root, child, child_key, child_token, delegation, policy)


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


def app_route_table() -> list[tuple[str, str, APIRoute]]:
    """The route table of an app built from default settings (nothing is opened until the lifespan runs)."""
    return route_table(create_app(Settings(issuer_url=ISSUER_URL, data_dir=Path("unused"))).routes)


# -- the route table ----------------------------------------------------------------------------------------


def api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(effective path, route) of every APIRoute, descending into included routers (FastAPI keeps them
    unflattened since 0.16x)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):
            context = getattr(route, "include_context", None)
            yield from api_routes(route.original_router.routes, prefix + getattr(context, "prefix", ""))


def requires_principal(route: APIRoute) -> bool:
    """Whether the route authenticates its caller (depends, at any depth, on ``get_principal``)."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if dependency.call is get_principal:
            return True
        pending.extend(dependency.dependencies)
    return False


def route_table(app_routes: list[Any]) -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) for every method of every APIRoute, sorted."""
    return sorted((m, path, r) for path, r in api_routes(app_routes) for m in r.methods)


def by_resource(routes: list[tuple[str, str, APIRoute]]) -> dict[str, list[tuple[str, str, APIRoute]]]:
    """Routes grouped by their resource (``/api/v1/<resource>/...``), for one test per resource."""
    groups: dict[str, list[tuple[str, str, APIRoute]]] = {}
    for method, path, route in routes:
        groups.setdefault("/".join(path.split("/")[:4]), []).append((method, path, route))
    return groups


def path_params(path: str) -> list[str]:
    return re.findall(r"{([^}:]+)(?::[^}]*)?}", path)


def fill_path(path: str, ids: dict[str, str]) -> str:
    """``path`` with each ``{param}`` replaced by ``ids[param]``; an unknown parameter fails the test, so a new
    route taking an id cannot slip past the tests that iterate the route table."""
    missing = [p for p in path_params(path) if p not in ids]
    if missing:
        pytest.fail(f"route {path} takes parameter(s) {missing} the tests do not know: cover them in api_support.py")
    return re.sub(r"{([^}:]+)(?::[^}]*)?}", lambda m: ids[m.group(1)], path)


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
