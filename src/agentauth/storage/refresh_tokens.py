"""Refresh tokens repository. Rotation is one conditional UPDATE: of concurrent uses, exactly one wins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage.models import RefreshTokenRow
from agentauth.storage.records import RefreshToken


def to_record(row: RefreshTokenRow) -> RefreshToken:
    return RefreshToken(
        id=row.id,
        family_id=row.family_id,
        agent_id=row.agent_id,
        tenant_id=row.tenant_id,
        api_key_id=row.api_key_id,
        client_id=row.client_id,
        scopes=tuple(row.scopes),
        status=row.status,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
    )


async def insert(session: AsyncSession, **values: Any) -> None:
    session.add(RefreshTokenRow(**values))
    await session.flush()


async def consume(session: AsyncSession, token_hash: str, now: datetime) -> RefreshToken | None:
    """Mark an active, unexpired token used and return it; None if this call did not win it."""
    result = await session.execute(
        update(RefreshTokenRow)
        .where(
            RefreshTokenRow.token_hash == token_hash,
            RefreshTokenRow.status == "active",
            RefreshTokenRow.expires_at > now,
        )
        .values(status="used", used_at=now)
        .returning(RefreshTokenRow)
    )
    row = result.scalars().first()
    return to_record(row) if row else None


async def find(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    row = (await session.scalars(select(RefreshTokenRow).where(RefreshTokenRow.token_hash == token_hash))).first()
    return to_record(row) if row else None


async def revoke_family(session: AsyncSession, family_id: str) -> int:
    result = await session.execute(
        update(RefreshTokenRow)
        .where(RefreshTokenRow.family_id == family_id, RefreshTokenRow.status != "revoked")
        .values(status="revoked")
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def revoke_where(
    session: AsyncSession, *, agent_ids: list[str] | None = None, api_key_id: str | None = None
) -> int:
    statement = update(RefreshTokenRow).where(RefreshTokenRow.status != "revoked")
    if agent_ids is not None:
        statement = statement.where(RefreshTokenRow.agent_id.in_(agent_ids))
    if api_key_id is not None:
        statement = statement.where(RefreshTokenRow.api_key_id == api_key_id)
    result = await session.execute(statement.values(status="revoked"))
    return int(result.rowcount)  # type: ignore[attr-defined]
