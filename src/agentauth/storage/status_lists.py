"""Status lists repository: list rows, exclusive block reservations, revoked indexes, published credentials."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage.models import CredentialRow, StatusBlockRow, StatusListRow
from agentauth.storage.records import StatusListState


async def open_list(session: AsyncSession, size: int, now: datetime) -> tuple[int, int]:
    """(id, size) of the oldest open list, creating one when none is open."""
    row = (
        await session.scalars(
            select(StatusListRow).where(StatusListRow.state == StatusListState.OPEN).order_by(StatusListRow.id)
        )
    ).first()
    if row is None:
        row = StatusListRow(
            size=size, created_at=now, purpose="revocation", allocated=0, version=0, state=StatusListState.OPEN
        )
        session.add(row)
        await session.flush()
    return row.id, row.size


async def taken_blocks(session: AsyncSession, list_id: int) -> set[int]:
    return set(await session.scalars(select(StatusBlockRow.block).where(StatusBlockRow.list_id == list_id)))


async def oldest_open(session: AsyncSession) -> tuple[int, int] | None:
    """(id, size) of the oldest open list, if any (a read: ``open_list`` creates one)."""
    row = (
        await session.execute(
            select(StatusListRow.id, StatusListRow.size)
            .where(StatusListRow.state == StatusListState.OPEN)
            .order_by(StatusListRow.id)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def mark_full(session: AsyncSession, list_id: int) -> None:
    await session.execute(update(StatusListRow).where(StatusListRow.id == list_id).values(state=StatusListState.FULL))


async def exists(session: AsyncSession, list_id: int) -> bool:
    return (await session.get(StatusListRow, list_id)) is not None


# Per purpose, the list row's (version, published version, published credential, published at) columns: a
# revocation list and its suspension twin share their indexes and their row, each with its own publication.
_PUBLICATION = {
    "revocation": (
        StatusListRow.version, StatusListRow.published_version, StatusListRow.published_jwt,
        StatusListRow.published_at,
    ),
    "suspension": (
        StatusListRow.suspension_version, StatusListRow.suspension_published_version,
        StatusListRow.suspension_published_jwt, StatusListRow.suspension_published_at,
    ),
}  # fmt: skip
_MARKED = {"revocation": CredentialRow.revoked_at, "suspension": CredentialRow.suspended_at}
PURPOSES = tuple(_PUBLICATION)


async def snapshot(
    session: AsyncSession, list_id: int, purpose: str = "revocation"
) -> tuple[int, int, int | None, str | None, datetime | None] | None:
    """(size, version, published_version, published_jwt, published_at) of a list's ``purpose`` half, or None."""
    row = (
        await session.execute(select(StatusListRow.size, *_PUBLICATION[purpose]).where(StatusListRow.id == list_id))
    ).first()
    if row is None:
        return None
    return row[0], row[1], row[2], row[3], row[4]


async def marked_indexes(session: AsyncSession, list_id: int, purpose: str = "revocation") -> list[int]:
    """The indexes whose ``purpose`` bit is set: revoked, or suspended, credentials of the list."""
    rows = await session.scalars(
        select(CredentialRow.status_index).where(CredentialRow.status_list_id == list_id, _MARKED[purpose].is_not(None))
    )
    return list(rows)


async def store_published(
    session: AsyncSession, list_id: int, version: int, jwt: str, now: datetime, purpose: str = "revocation"
) -> None:
    """Keep the signed list for ``version`` unless a newer one was stored meanwhile."""
    _, published_version, published_jwt, published_at = _PUBLICATION[purpose]
    await session.execute(
        update(StatusListRow)
        .where(StatusListRow.id == list_id, (published_version.is_(None)) | (published_version <= version))
        .values({published_version: version, published_jwt: jwt, published_at: now})
    )


async def invalidate_published(session: AsyncSession) -> None:
    """Forget every cached signed list (they must be re-signed, e.g. after their key was dropped)."""
    await session.execute(
        update(StatusListRow).values(
            published_version=None, published_jwt=None, suspension_published_version=None,
            suspension_published_jwt=None,
        )
    )  # fmt: skip


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
        .where(StatusListRow.id == list_id, StatusListRow.state == StatusListState.FULL)
        .values(
            state=StatusListState.CLEARED,
            cleared_at=now,
            allocated=0,
            version=StatusListRow.version + 1,
            suspension_version=StatusListRow.suspension_version + 1,
        )
    )


async def reopen(session: AsyncSession, list_id: int) -> None:
    await session.execute(
        update(StatusListRow)
        .where(StatusListRow.id == list_id, StatusListRow.state == StatusListState.CLEARED)
        .values(state=StatusListState.OPEN)
    )


async def newest_block(session: AsyncSession, list_id: int) -> datetime | None:
    value: datetime | None = await session.scalar(
        select(func.max(StatusBlockRow.reserved_at)).where(StatusBlockRow.list_id == list_id)
    )
    return value
