"""API keys repository: looked up by their public prefix; only a keyed hash of the secret is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage.models import ApiKeyRow
from agentauth.storage.records import ApiKey, ApiKeyStatus


def to_record(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        agent_id=row.agent_id,
        tenant_id=row.tenant_id,
        prefix=row.prefix,
        key_hash=row.key_hash,
        name=row.name,
        scopes=tuple(row.scopes),
        status=ApiKeyStatus(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        replaced_by=row.replaced_by,
    )


async def insert(session: AsyncSession, **values: Any) -> ApiKey:
    row = ApiKeyRow(**values)
    session.add(row)
    await session.flush()
    return to_record(row)


async def get(session: AsyncSession, key_id: str) -> ApiKey | None:
    row = await session.get(ApiKeyRow, key_id)
    return to_record(row) if row else None


async def list_for_agents(
    session: AsyncSession, agent_ids: list[str], limit: int, offset: int
) -> tuple[list[ApiKey], int]:
    condition = ApiKeyRow.agent_id.in_(agent_ids)
    total = await session.scalar(select(func.count()).select_from(ApiKeyRow).where(condition)) or 0
    rows = await session.scalars(
        select(ApiKeyRow).where(condition).order_by(ApiKeyRow.created_at, ApiKeyRow.id).limit(limit).offset(offset)
    )
    return [to_record(r) for r in rows], total


async def revoke(session: AsyncSession, key_id: str, now: datetime, replaced_by: str | None = None) -> bool:
    """Active -> revoked, atomically; False if it was not active (already revoked or rotated)."""
    result = await session.execute(
        update(ApiKeyRow)
        .where(ApiKeyRow.id == key_id, ApiKeyRow.status == ApiKeyStatus.ACTIVE)
        .values(status=ApiKeyStatus.REVOKED, revoked_at=now, replaced_by=replaced_by)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def revoke_for_agents(session: AsyncSession, agent_ids: list[str], now: datetime) -> list[str]:
    ids = list(
        await session.scalars(
            select(ApiKeyRow.id).where(ApiKeyRow.agent_id.in_(agent_ids), ApiKeyRow.status == ApiKeyStatus.ACTIVE)
        )
    )
    if ids:
        await session.execute(
            update(ApiKeyRow)
            .where(ApiKeyRow.id.in_(ids), ApiKeyRow.status == ApiKeyStatus.ACTIVE)
            .values(status=ApiKeyStatus.REVOKED, revoked_at=now)
        )
    return ids


async def touch(session: AsyncSession, key_id: str, now: datetime) -> None:
    """The last-used hint, unless another transaction holds the key (an issuing round: skipped, not waited for -
    see ``statements.touch_keys``)."""
    unless_held = select(ApiKeyRow.id).where(ApiKeyRow.id == key_id).with_for_update(key_share=True, skip_locked=True)
    await session.execute(update(ApiKeyRow).where(ApiKeyRow.id.in_(unless_held)).values(last_used_at=now))
