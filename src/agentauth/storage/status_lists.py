"""Status lists repository: list rows, exclusive block reservations, revoked indexes, published credentials."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentauth.storage.db import SqliteSessionMaker, sqlite_datetime
from agentauth.storage.models import CredentialRow, StatusBlockRow, StatusListRow


async def open_list(session: AsyncSession, size: int, now: datetime) -> tuple[int, int]:
    """(id, size) of the oldest open list, creating one when none is open."""
    row = (
        await session.scalars(select(StatusListRow).where(StatusListRow.state == "open").order_by(StatusListRow.id))
    ).first()
    if row is None:
        row = StatusListRow(size=size, created_at=now, purpose="revocation", allocated=0, version=0, state="open")
        session.add(row)
        await session.flush()
    return row.id, row.size


async def taken_blocks(session: AsyncSession, list_id: int) -> set[int]:
    return set(await session.scalars(select(StatusBlockRow.block).where(StatusBlockRow.list_id == list_id)))


async def oldest_open(session: AsyncSession) -> tuple[int, int] | None:
    """(id, size) of the oldest open list, if any (a read: ``open_list`` creates one)."""
    row = (
        await session.execute(
            select(StatusListRow.id, StatusListRow.size).where(StatusListRow.state == "open").order_by(StatusListRow.id)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def reserve_blocks(
    sessions: async_sessionmaker[AsyncSession], list_id: int, blocks: Sequence[int], now: datetime, per_list: int
) -> list[int]:
    """Reserve those blocks of an open list in one short write transaction; the blocks we got (another process
    may hold some: the primary key decides, and a conflicting row is skipped, not an error). The list turns full
    when all ``per_list`` blocks are reserved. On SQLite in one hop to the writer's own connection, so the write
    lock is held for the statements alone (see ``SqliteSessionMaker.write``)."""
    if isinstance(sessions, SqliteSessionMaker):
        return await sessions.write(functools.partial(_sqlite_reserve, list_id, list(blocks), now, per_list))
    async with sessions.begin() as session:
        state = await session.scalar(select(StatusListRow.state).where(StatusListRow.id == list_id))
        if state != "open":
            return []
        # Ascending: two replicas inserting overlapping blocks in random order could each hold one the other
        # waits for (a unique-index wait on an uncommitted row); in one order they queue instead.
        rows = [{"list_id": list_id, "block": block, "reserved_at": now} for block in sorted(blocks)]
        inserted = await session.execute(
            pg_insert(StatusBlockRow).values(rows).on_conflict_do_nothing().returning(StatusBlockRow.block)
        )
        got = sorted(inserted.scalars())
        if got:
            allocated = StatusListRow.allocated + len(got)
            await session.execute(
                update(StatusListRow)
                .where(StatusListRow.id == list_id)
                .values(allocated=allocated, state=case((allocated >= per_list, "full"), else_=StatusListRow.state))
            )
        return got


def _sqlite_reserve(
    list_id: int, blocks: list[int], now: datetime, per_list: int, connection: sqlite3.Connection
) -> list[int]:
    state = connection.execute("SELECT state FROM status_lists WHERE id = ?", (list_id,)).fetchone()
    if state is None or state[0] != "open":
        return []
    got = sorted(
        block
        for (block,) in connection.execute(
            "INSERT INTO status_blocks (list_id, block, reserved_at) SELECT ?, value, ? FROM json_each(?) WHERE true "
            "ON CONFLICT DO NOTHING RETURNING block",
            (list_id, sqlite_datetime(now), json.dumps(blocks)),
        )
    )
    if got:
        connection.execute(
            "UPDATE status_lists SET allocated = allocated + ?, "
            "state = CASE WHEN allocated + ? >= ? THEN 'full' ELSE state END WHERE id = ?",
            (len(got), len(got), per_list, list_id),
        )
    return got


async def mark_full(session: AsyncSession, list_id: int) -> None:
    await session.execute(update(StatusListRow).where(StatusListRow.id == list_id).values(state="full"))


async def exists(session: AsyncSession, list_id: int) -> bool:
    return (await session.get(StatusListRow, list_id)) is not None


async def snapshot(
    session: AsyncSession, list_id: int
) -> tuple[int, int, int | None, str | None, datetime | None] | None:
    """(size, version, published_version, published_jwt, published_at) of a list, or None."""
    row = await session.get(StatusListRow, list_id, populate_existing=True)
    if row is None:
        return None
    return row.size, row.version, row.published_version, row.published_jwt, row.published_at


async def revoked_indexes(session: AsyncSession, list_id: int) -> list[int]:
    rows = await session.scalars(
        select(CredentialRow.status_index).where(
            CredentialRow.status_list_id == list_id, CredentialRow.revoked_at.is_not(None)
        )
    )
    return list(rows)


async def store_published(session: AsyncSession, list_id: int, version: int, jwt: str, now: datetime) -> None:
    """Keep the signed list for ``version`` unless a newer one was stored meanwhile."""
    await session.execute(
        update(StatusListRow)
        .where(
            StatusListRow.id == list_id,
            (StatusListRow.published_version.is_(None)) | (StatusListRow.published_version <= version),
        )
        .values(published_version=version, published_jwt=jwt, published_at=now)
    )


async def invalidate_published(session: AsyncSession) -> None:
    """Forget every cached signed list (they must be re-signed, e.g. after their key was dropped)."""
    await session.execute(update(StatusListRow).values(published_version=None, published_jwt=None))


async def lists_in_state(session: AsyncSession, state: str) -> list[tuple[int, datetime | None]]:
    rows = await session.execute(select(StatusListRow.id, StatusListRow.cleared_at).where(StatusListRow.state == state))
    return [(r[0], r[1]) for r in rows]


async def has_live_credentials(session: AsyncSession, list_id: int, now: datetime) -> bool:
    row = (
        await session.execute(
            select(CredentialRow.jti)
            .where(CredentialRow.status_list_id == list_id, CredentialRow.expires_at > now)
            .limit(1)
        )
    ).first()
    return row is not None


async def clear(session: AsyncSession, list_id: int, now: datetime) -> None:
    """Forget a full list's expired credentials and reservations; its bits read zero from the next version."""
    await session.execute(delete(CredentialRow).where(CredentialRow.status_list_id == list_id))
    await session.execute(delete(StatusBlockRow).where(StatusBlockRow.list_id == list_id))
    await session.execute(
        update(StatusListRow)
        .where(StatusListRow.id == list_id, StatusListRow.state == "full")
        .values(state="cleared", cleared_at=now, allocated=0, version=StatusListRow.version + 1)
    )


async def reopen(session: AsyncSession, list_id: int) -> None:
    await session.execute(
        update(StatusListRow).where(StatusListRow.id == list_id, StatusListRow.state == "cleared").values(state="open")
    )


async def newest_block(session: AsyncSession, list_id: int) -> datetime | None:
    value: datetime | None = await session.scalar(
        select(func.max(StatusBlockRow.reserved_at)).where(StatusBlockRow.list_id == list_id)
    )
    return value
