"""Suite-wide fixtures: a real database per test (a SQLite file, and PostgreSQL when enabled), services built
by the real composition root, and an httpx client speaking ASGI to the real app.

PostgreSQL runs when AGENTAUTH_TEST_POSTGRES=1 (``.ci/run`` sets it); then it must be reachable - a
configured-but-missing database fails the run instead of silently skipping half the suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentauth.api.app import create_app
from agentauth.bootstrap import Services, build_services
from agentauth.keys import generate_kek
from agentauth.settings import Settings
from support import BACKENDS, POSTGRES_URL, ensure_postgres_database, quickstart, reset_postgres
from support import ISSUER_URL as ISSUER_URL  # re-exported: import from support in new code
from support import POSTGRES_ENABLED as POSTGRES_ENABLED
from support import bearer as bearer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
            "webhook_allow_loopback": True,  # webhook receivers of the tests listen on 127.0.0.1
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


@pytest.fixture
def tenant_factory(client: httpx.AsyncClient) -> Any:
    async def make(name: str = "agent") -> dict[str, Any]:
        return await quickstart(client, name)

    return make


def pytest_configure(config: pytest.Config) -> None:
    if POSTGRES_ENABLED:
        asyncio.run(ensure_postgres_database())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A run that selected nothing must not look green (pytest's own exit code 5 covers the plain case).
    if session.testscollected == 0 and exitstatus == 0:
        session.exitstatus = 5
