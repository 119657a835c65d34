"""Helpers shared by the suite (importable as ``support``; ``tests`` is on pytest's pythonpath).

Test modules import from here, never from ``conftest``: several directories have a conftest.py, and which one
``import conftest`` finds depends on collection order.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_ENABLED = os.environ.get("AGENTAUTH_TEST_POSTGRES") == "1"
POSTGRES_URL = os.environ.get("AGENTAUTH_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
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
