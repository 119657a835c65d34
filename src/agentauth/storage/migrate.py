"""Alembic migrations on the service's own async engine: ``upgrade head`` at every start, and what ``agentauth db``
runs (``current``, ``upgrade``, ``downgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant: replicas starting together on PostgreSQL serialize their migrations on this lock.
_PG_MIGRATION_LOCK = 0x41474E54


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(_locked(connection), "head")


async def migrate(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def _locked(connection: Connection) -> Config:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration this release ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def revisions() -> list[str]:
    """Every migration this release ships, oldest first."""
    return [
        script.revision for script in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
    ]


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None: no schema yet)."""
    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.upgrade(_locked(sync), revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Back to ``revision`` ("base": no schema). The columns and tables of later migrations are dropped, data
    included; the service of an older release then runs on it."""
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.downgrade(_locked(sync), revision))
