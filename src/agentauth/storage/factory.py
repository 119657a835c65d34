"""Chooses the storage ports' implementation for a backend, once (called by ``bootstrap``; see ``ports``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentauth.storage.asyncpg_ports import AsyncpgPorts
from agentauth.storage.db import PoolLimits, SqliteSessionMaker, Timeouts
from agentauth.storage.policy_reads import PolicyReadsOf
from agentauth.storage.ports import StoragePorts
from agentauth.storage.sqlalchemy_ports import SqlAlchemyPorts
from agentauth.storage.sqlite_onehop import SqliteOneHopPorts


def storage_ports(
    sessions: async_sessionmaker[AsyncSession],
    reads: async_sessionmaker[AsyncSession],
    timeouts: Timeouts | None = None,
    pool: PoolLimits | None = None,
) -> StoragePorts:
    """A SQLite file gets the one-hop implementation (its session makers own the hop connections); PostgreSQL
    through asyncpg the asyncpg one (a pool of its own of ``pool``'s size, filled from the engine); every other
    database - an in-memory SQLite - the SQLAlchemy one."""
    if isinstance(sessions, SqliteSessionMaker) and isinstance(reads, SqliteSessionMaker):
        onehop = SqliteOneHopPorts(sessions, reads)
        return StoragePorts(onehop, onehop, onehop, onehop, onehop, onehop, onehop, onehop, PolicyReadsOf(onehop))
    engine = sessions.kw.get("bind")
    if isinstance(engine, AsyncEngine) and engine.url.get_driver_name() == "asyncpg":
        direct = AsyncpgPorts(engine, timeouts, pool)
        return StoragePorts(direct, direct, direct, direct, direct, direct, direct, direct, PolicyReadsOf(direct))
    orm = SqlAlchemyPorts(sessions, reads)
    return StoragePorts(orm, orm, orm, orm, orm, orm, orm, orm, PolicyReadsOf(orm))


async def close_ports(ports: StoragePorts) -> None:
    """Release what the chosen implementation holds of its own (the asyncpg pool; the others use the engines')."""
    if isinstance(ports.writes, AsyncpgPorts):
        await ports.writes.close()
