"""``GET /ready`` (issue 16 item 6): readiness, apart from ``/health`` (liveness). 200 only while the database
answers and the key ring has an active key; 503 ``temporarily_unavailable`` with ``Retry-After`` while the
database does not answer - and 200 again, from the same process, once it does. It writes nothing (it is polled).

The database goes away as it does for each backend: SQLite's read connection is pointed at a path that cannot be
opened (a data directory gone), PostgreSQL is reached through a TCP proxy run by the test, which is then closed:
open connections reset, new ones refused - a closed port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import STATE_TABLES, table_rows
from sqlalchemy.engine import make_url

from agentauth.api.app import create_app
from agentauth.api.errors import RETRY_AFTER_SECONDS
from agentauth.bootstrap import Services, build_services
from agentauth.storage.db import SqliteSessionMaker
from live_server import free_port
from support import ISSUER_URL, POSTGRES_URL, assert_error, ok, reset_postgres

pytestmark = pytest.mark.anyio

WATCHED_TABLES = (*STATE_TABLES, "audit_events", "signing_keys", "status_lists")


def assert_not_ready(response: httpx.Response) -> None:
    assert_error(response, 503, "temporarily_unavailable")
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error_description"] == "the database is unavailable"


@contextlib.asynccontextmanager
async def client_for(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services=services)
    app.state.services = services  # ASGITransport does not run the lifespan
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as http:
        yield http


async def test_ready_when_the_database_answers_and_health_stays_liveness(
    client: httpx.AsyncClient, services: Services
) -> None:
    before = await table_rows(services, WATCHED_TABLES)
    for _ in range(3):
        response = await client.get("/ready")
        body = ok(response)
        assert body == {"status": "ready", "database": "ok", "active_kid": services.keys.ring.active.kid}
        assert response.headers["cache-control"] == "no-store"
    assert await table_rows(services, WATCHED_TABLES) == before, "a readiness probe wrote to the database"
    assert ok(await client.get("/health"))["status"] == "ok"


class ClosablePort:
    """127.0.0.1:``port`` forwarding to ``target``; ``close`` closes the listener and resets every connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        for pipe in list(self.pipes):
            pipe.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)
        await self.server.wait_closed()
        self.server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, upstream_writer]
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink))
            self.pipes.add(pipe)
            pipe.add_done_callback(self.pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.transport.abort()


async def test_not_ready_while_sqlite_cannot_be_opened_and_ready_again_after(
    services: Services, backend: str, tmp_path: Path
) -> None:
    if backend != "sqlite":
        pytest.skip("the SQLite fault; PostgreSQL has its own test")
    reads = services.core.reads
    assert isinstance(reads, SqliteSessionMaker)
    async with client_for(services) as http:
        ok(await http.get("/ready"))
        await reads.reopen(str(tmp_path / "gone" / "agentauth.db"))  # a data directory that is not there
        try:
            assert_not_ready(await http.get("/ready"))
            assert ok(await http.get("/health"))["status"] == "ok", "liveness does not depend on the database"
        finally:
            await reads.reopen()
        ok(await http.get("/ready"))


async def test_not_ready_while_postgres_is_behind_a_closed_port_and_ready_again_after(
    settings_factory: Any, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("the PostgreSQL fault; SQLite has its own test")
    url = make_url(POSTGRES_URL)
    port = ClosablePort((url.host or "127.0.0.1", url.port or 5432))
    await reset_postgres()  # a ring sealed with another test's key-encryption key would not open
    await port.open()
    proxied = url.set(host="127.0.0.1", port=port.port).render_as_string(hide_password=False)
    try:
        services = await build_services(settings_factory(database_url=proxied, db_connect_timeout=2))
        try:
            async with client_for(services) as http:
                ok(await http.get("/ready"))
                await port.close()
                for _ in range(2):  # the pooled connection reset, then a new one refused
                    assert_not_ready(await http.get("/ready"))
                assert ok(await http.get("/health"))["status"] == "ok"
                await port.open()
                for _ in range(20):  # the pool replaces its dead connections on its own
                    if (await http.get("/ready")).status_code == 200:
                        break
                    await asyncio.sleep(0.25)
                ok(await http.get("/ready"))
        finally:
            await services.close()
    finally:
        if port.server is not None:
            await port.close()
