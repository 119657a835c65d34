"""What the storage contract tests share (importable as ``port_support``; ``conftest`` builds it per test)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentauth.storage.asyncpg_ports import AsyncpgPorts
from agentauth.storage.sqlalchemy_ports import SqlAlchemyPorts
from agentauth.storage.sqlite_onehop import SqliteOneHopPorts


@dataclass
class Store:
    """One implementation under test, and a neutral way in: plain SQLAlchemy sessions on the same database, for
    seeding rows and for reading back what the implementation wrote."""

    name: str
    ports: SqlAlchemyPorts | SqliteOneHopPorts | AsyncpgPorts
    neutral: async_sessionmaker[AsyncSession]
    engine: AsyncEngine

    @property
    def sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"
