"""Helpers shared by the suite (importable as ``support``; ``tests`` is on pytest's pythonpath): the test
databases, a quickstart tenant, the RFC 6749 error-shape check and the app's route table.

Test modules import from here, never from ``conftest``: several directories have a conftest.py, and which one
``import conftest`` finds depends on collection order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from agentauth.api.app import create_app
from agentauth.api.deps import get_principal
from agentauth.settings import Settings

POSTGRES_ENABLED = os.environ.get("AGENTAUTH_TEST_POSTGRES") == "1"
REDIS_URL = os.environ.get("AGENTAUTH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BASE_POSTGRES_URL = os.environ.get("AGENTAUTH_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _worker_postgres_url() -> str:
    """Under pytest-xdist each worker has a database of its own (``test_gw0``, ...): tests reset the schema."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return BASE_POSTGRES_URL
    url = make_url(BASE_POSTGRES_URL)
    return url.set(database=f"{url.database}_{worker}").render_as_string(hide_password=False)


POSTGRES_URL = _worker_postgres_url()


async def ensure_postgres_database() -> None:
    """Create this worker's database (from the configured one) if it does not exist yet."""
    if POSTGRES_URL == BASE_POSTGRES_URL:
        return
    name = make_url(POSTGRES_URL).database
    engine = create_async_engine(BASE_POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
            if not exists:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


def require_redis() -> None:
    """Skips the calling test unless the Redis at REDIS_URL answers PING within a second."""
    try:
        client = Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        try:
            reachable = bool(client.ping())
        finally:
            client.close()
    except Exception:
        reachable = False
    if not reachable:
        pytest.skip(f"Redis at {REDIS_URL} is not reachable (set AGENTAUTH_TEST_REDIS_URL)")


ISSUER_URL = "http://testserver"
BACKENDS = ["sqlite", "postgres"] if POSTGRES_ENABLED else ["sqlite"]
# Every scope that manages agents, API keys and delegations: what the delegation-authority tests delegate.
MANAGE_SCOPES = [
    "agents.read",
    "agents.write",
    "credentials.read",
    "credentials.write",
    "delegations.read",
    "delegations.write",
]


async def reset_postgres(url: str = POSTGRES_URL) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def quickstart(client: httpx.AsyncClient, name: str = "agent", agent_type: str = "assistant") -> dict[str, Any]:
    response = await client.post("/api/v1/agents/quickstart", json={"name": name, "agent_type": agent_type})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def status_entry(vc: dict[str, Any], purpose: str = "revocation") -> dict[str, Any]:
    """The ``BitstringStatusListEntry`` of ``purpose`` in a credential's ``vc`` claim (every credential we issue
    carries two, revocation and suspension, at the same index of a list and of its suspension twin)."""
    entries = vc["credentialStatus"]
    found = [entry for entry in entries if entry["statusPurpose"] == purpose]
    assert len(found) == 1, entries
    return dict(found[0])


def status_urls(vc: dict[str, Any]) -> list[str]:
    """The URL of every status list a credential's ``vc`` claim names (its revocation list and suspension twin)."""
    return [str(entry["statusListCredential"]) for entry in vc["credentialStatus"]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- responses ----------------------------------------------------------------------------------------------


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error(
    response: httpx.Response,
    status: int | set[int],
    error: str | set[str] | None,
    what: str = "",
    *,
    challenge: str | None = None,
) -> dict[str, Any]:
    """An RFC 6749 section 5.2 error: exactly ``error`` and ``error_description`` at the top level, the right
    status (or one of a set) and error code (``None``: any code); on 401 a ``WWW-Authenticate`` header (RFC 6749
    5.2 / RFC 6750 3), and on bearer errors naming the error code. No stack trace in the body. ``what`` labels
    the request in failure messages."""
    label = f"[{what}] " if what else ""
    statuses = {status} if isinstance(status, int) else status
    assert response.status_code in statuses, f"{label}expected {status}, got {response.status_code}: {response.text}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "error_description"}, f"{label}{body}"
    if error is not None:
        assert body["error"] in ({error} if isinstance(error, str) else error), f"{label}{body}"
    assert isinstance(body["error_description"], str) and body["error_description"], f"{label}{body}"
    assert "Traceback" not in response.text and 'File "' not in response.text, label
    header = response.headers.get("www-authenticate")
    if response.status_code == 401:
        assert header, f"{label}401 without WWW-Authenticate"
    if body["error"] in ("invalid_token", "insufficient_scope"):
        assert header is not None and header.startswith(("Bearer ", "DPoP ")), f"{label}{header}"
        assert f'error="{body["error"]}"' in header, f"{label}{header}"
    if challenge is not None:
        assert header is not None and header.startswith(challenge), f"{label}{header}"
    return body


# -- the route table ----------------------------------------------------------------------------------------

PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(effective path, route) of every APIRoute, descending into included routers (FastAPI >= 0.16x keeps them
    unflattened under ``original_router``)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):
            context = getattr(route, "include_context", None)
            yield from api_routes(route.original_router.routes, prefix + getattr(context, "prefix", ""))


def route_table(app_routes: list[Any]) -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) for every method of every APIRoute, sorted."""
    return sorted((m, path, r) for path, r in api_routes(app_routes) for m in r.methods)


def app_route_table() -> list[tuple[str, str, APIRoute]]:
    """The route table of an app built from default settings (nothing is opened until the lifespan runs)."""
    table = route_table(create_app(Settings(issuer_url=ISSUER_URL, data_dir=Path("unused"))).routes)
    assert len(table) > 20, "the route walker found the app's routes"
    return table


def requires_principal(route: APIRoute) -> bool:
    """Whether the route authenticates its caller (depends, at any depth, on ``get_principal``)."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if dependency.call is get_principal:
            return True
        pending.extend(dependency.dependencies)
    return False


def path_params(path: str) -> list[str]:
    return PATH_PARAM.findall(path)


def fill_path(path: str, ids: dict[str, str]) -> str:
    """``path`` with each ``{param}`` replaced by ``ids[param]``; an unknown parameter fails the test, so a new
    route taking an id cannot slip past the tests that iterate the route table."""
    missing = [p for p in path_params(path) if p not in ids]
    if missing:
        pytest.fail(f"route {path} takes parameter(s) {missing} this test does not know: give it ids to try there")
    return PATH_PARAM.sub(lambda m: ids[m.group(1)], path)
