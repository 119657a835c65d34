"""API keys repository: looked up by their public prefix; only a keyed hash of the secret is stored."""

from __future__ import annotations

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


async def get(session: AsyncSession, key_id: str) -> ApiKey | None:
    row = await session.get(ApiKeyRow, key_id)
    return to_record(row) if row else None
