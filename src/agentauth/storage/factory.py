"""Chooses the storage ports' implementation for a backend, once (called by ``bootstrap``; see ``ports``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentauth.storage.db import SqliteSessionMaker
from agentauth.storage.ports import StoragePorts
from agentauth.storage.sqlalchemy_ports import SqlAlchemyPorts
from agentauth.storage.sqlite_onehop import SqliteOneHopPorts


def storage_ports(sessions: async_sessionmaker[AsyncSession], reads: async_sessionmaker[AsyncSession]) -> StoragePorts:
    """A SQLite file gets the one-hop implementation (its session makers own the hop connections); every other
    database - PostgreSQL, an in-memory SQLite - the SQLAlchemy one."""
    if isinstance(sessions, SqliteSessionMaker) and isinstance(reads, SqliteSessionMaker):
        onehop = SqliteOneHopPorts(sessions, reads)
        return StoragePorts(onehop, onehop, onehop, onehop, onehop, onehop, onehop, onehop)
    orm = SqlAlchemyPorts(sessions, reads)
    return StoragePorts(orm, orm, orm, orm, orm, orm, orm, orm)
