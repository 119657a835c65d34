"""A fresh database per test for every implementation of the storage ports (``storage/ports.py``).

``sqlalchemy-sqlite``: the SQLAlchemy implementation on a SQLite file (what an in-memory database gets);
``onehop-sqlite``: the one-hop sqlite3 implementation on a SQLite file (the embedded default);
``sqlalchemy-postgres``: the SQLAlchemy implementation on PostgreSQL, when AGENTAUTH_TEST_POSTGRES=1;
``asyncpg-postgres``: the asyncpg implementation on PostgreSQL (what PostgreSQL gets), likewise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from port_support import Store

from agentauth.storage.asyncpg_ports import AsyncpgPorts
from agentauth.storage.db import SqliteSessionMaker, StorageSessions, create_engine, session_factory
from agentauth.storage.migrate import migrate
from agentauth.storage.sqlalchemy_ports import SqlAlchemyPorts
from agentauth.storage.sqlite_onehop import SqliteOneHopPorts
from support import POSTGRES_ENABLED, POSTGRES_URL, reset_postgres

IMPLEMENTATIONS = ["sqlalchemy-sqlite", "onehop-sqlite"] + (
    ["sqlalchemy-postgres", "asyncpg-postgres"] if POSTGRES_ENABLED else []
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=IMPLEMENTATIONS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    name = str(request.param)
    if name.endswith("postgres"):
        await reset_postgres()
        url = POSTGRES_URL
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'ports.db'}"
    engine = create_engine(url)
    read_engine = create_engine(url, read_only=True) if url.startswith("sqlite") else engine
    await migrate(engine)
    makers: list[Any] = []
    ports: SqlAlchemyPorts | SqliteOneHopPorts | AsyncpgPorts | None = None
    try:
        if name == "onehop-sqlite":
            writes, reads = session_factory(engine), session_factory(read_engine)
            assert isinstance(writes, SqliteSessionMaker) and isinstance(reads, SqliteSessionMaker)
            makers = [writes, reads]
            ports = SqliteOneHopPorts(writes, reads)
        elif name == "asyncpg-postgres":
            ports = AsyncpgPorts(engine)
        else:
            ports = SqlAlchemyPorts(StorageSessions(engine), StorageSessions(read_engine))
        yield Store(name, ports, StorageSessions(engine), engine)
    finally:
        if isinstance(ports, AsyncpgPorts):
            await ports.close()
        for maker in makers:
            maker.close()
        if read_engine is not engine:
            await read_engine.dispose()
        await engine.dispose()
