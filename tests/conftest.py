"""Suite-wide fixtures: a real database per test (a SQLite file, and PostgreSQL when enabled), services built
by the real composition root, and an httpx client speaking ASGI to the real app.

PostgreSQL runs when AGENTAUTH_TEST_POSTGRES=1 (``.ci/run`` sets it); then it must be reachable - a
configured-but-missing database fails the run instead of silently skipping half the suite.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agentauth.api.app import create_app
from agentauth.bootstrap import Services, build_services
from agentauth.keys import generate_kek
from agentauth.settings import Settings

POSTGRES_ENABLED = os.environ.get("AGENTAUTH_TEST_POSTGRES") == "1"
POSTGRES_URL = os.environ.get(
    "AGENTAUTH_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
ISSUER_URL = "http://testserver"
BACKENDS = ["sqlite", "postgres"] if POSTGRES_ENABLED else ["sqlite"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def reset_postgres(url: str = POSTGRES_URL) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_factory(tmp_path: Path, backend: str) -> Any:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "issuer_url": ISSUER_URL,
            "data_dir": tmp_path / "data",
            "key_encryption_key": generate_kek(),
            "quickstart_rate_per_ip": 10_000,
            "token_rate_per_ip": 100_000,
            "token_rate_per_client": 100_000,
        }
        if backend == "postgres":
            values["database_url"] = POSTGRES_URL
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def services(settings_factory: Any, backend: str) -> AsyncIterator[Services]:
    if backend == "postgres":
        await reset_postgres()
    svc = await build_services(settings_factory())
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services=services)
    app.state.services = services  # ASGITransport does not run the lifespan
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as http:
        yield http


async def quickstart(client: httpx.AsyncClient, name: str = "agent", agent_type: str = "assistant") -> dict[str, Any]:
    response = await client.post("/api/v1/agents/quickstart", json={"name": name, "agent_type": agent_type})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tenant_factory(client: httpx.AsyncClient) -> Any:
    async def make(name: str = "agent") -> dict[str, Any]:
        return await quickstart(client, name)

    return make


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A run that selected nothing must not look green (pytest's own exit code 5 covers the plain case).
    if session.testscollected == 0 and exitstatus == 0:
        session.exitstatus = 5
