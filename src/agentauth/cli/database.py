"""``agentauth db``: the schema of the configured database (``AGENTAUTH_DATABASE_URL``, or the SQLite file in
``AGENTAUTH_DATA_DIR``). The service upgrades to its own newest migration at every start; these commands show
where a database is, upgrade it ahead of a deploy, or take it back for an older release."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from agentauth.cli.shared import CliError, _settings

T = TypeVar("T")


def _on_engine(work: Callable[..., Awaitable[T]], *args: object) -> T:
    from sqlalchemy.exc import SQLAlchemyError

    from agentauth.keyfile import private_dir
    from agentauth.storage.db import create_engine

    settings = _settings()
    url = settings.effective_database_url
    if settings.database_url is None:
        private_dir(settings.data_dir)

    async def run() -> T:
        engine = create_engine(url)
        try:
            return await work(engine, *args)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except SQLAlchemyError as exc:
        raise CliError(f"database: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None


def db_current() -> None:
    """Print the database's migration and the newest one this release ships."""
    from agentauth.storage.migrate import current_revision, head_revision

    current = _on_engine(current_revision)
    head = head_revision()
    state = "up to date" if current == head else "behind: agentauth db upgrade" if current else "no schema yet"
    typer.echo(f"database {current or '-'}, release head {head} ({state})")


def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target migration (default: this release's newest).")] = "head",
) -> None:
    """Apply migrations up to REVISION (what every start does for head)."""
    from agentauth.storage.migrate import current_revision, revisions, upgrade

    _check(revision, revisions())
    _on_engine(upgrade, revision)
    typer.echo(f"database at {_on_engine(current_revision)}")


def db_downgrade(
    revision: Annotated[str, typer.Argument(help='Target migration, or "base" for no schema.')],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: later migrations' columns and their data go.")] = False,
) -> None:
    """Undo migrations down to REVISION, for an older release. Drops what later migrations added, data included."""
    from agentauth.storage.migrate import current_revision, downgrade, revisions

    _check(revision, [*revisions(), "base"])
    if not yes:
        raise CliError(f"downgrading to {revision} drops what later migrations added, data included: add --yes")
    _on_engine(downgrade, revision)
    typer.echo(f"database at {_on_engine(current_revision) or 'base (no schema)'}")


def _check(revision: str, known: list[str]) -> None:
    if revision != "head" and revision not in known:
        raise CliError(f"unknown migration {revision!r}: this release has {', '.join(known)}")
