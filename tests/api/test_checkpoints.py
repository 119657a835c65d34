"""SQLite checkpoints run in the background of a serving process, never inside a committing transaction."""

from __future__ import annotations

import asyncio
import contextlib
import os

import httpx
import pytest
from lifecycle_support import client_token

from agentauth.bootstrap import Services
from agentauth.storage.db import SqliteSessionMaker
from support import quickstart

pytestmark = pytest.mark.anyio


def file_size(path: str) -> int:
    return os.stat(path).st_size


async def test_the_wal_is_copied_back_by_the_background_checkpointer(
    client: httpx.AsyncClient, services: Services
) -> None:
    if not isinstance(services.sessions, SqliteSessionMaker):
        pytest.skip("SQLite only")
    database = services.engine.url.database
    assert database is not None
    tenant = await quickstart(client, "wal")
    size = file_size(database)
    for _ in range(40):
        await client_token(client, tenant["api_key"])
    # Committing never checkpoints: everything written so far is still in the WAL, the file has not grown.
    assert file_size(database) == size
    assert file_size(database + "-wal") > 0

    task = asyncio.create_task(services.sessions.checkpoints(every=0.05))
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if file_size(database) > size:
                break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert file_size(database) > size, "the checkpointer did not copy the WAL into the database"
