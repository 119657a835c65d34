"""Helpers shared by the suite (importable as ``support``; ``tests`` is on pytest's pythonpath).

Test modules import from here, never from ``conftest``: several directories have a conftest.py, and which one
``import conftest`` finds depends on collection order.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_ENABLED = os.environ.get("AGENTAUTH_TEST_POSTGRES") == "1"
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


ISSUER_URL = "http://testserver"
BACKENDS = ["sqlite", "postgres"] if POSTGRES_ENABLED else ["sqlite"]


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


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
