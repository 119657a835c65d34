"""Refresh tokens repository. Rotation is one conditional UPDATE: of concurrent uses, exactly one wins (the
refresh_token grant's write plan, ``grant_statements.ROTATE``).

A refresh token belongs to a *family* (``family_id``): the grant it was issued for, renewed by every rotation. The
access tokens minted with each refresh token of a family record that family (``credentials.refresh_family_id``).
Revoking an access token revokes its family's refresh tokens (``revoke_families``: the grant cannot be renewed);
revoking a refresh token revokes the family and then its access tokens (``credentials.revoke(refresh_family_ids=
...)``), in one transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage import statements
from agentauth.storage.models import RefreshTokenRow
from agentauth.storage.records import RefreshToken, RefreshTokenStatus


def to_record(row: RefreshTokenRow) -> RefreshToken:
    return RefreshToken(
        id=row.id,
        family_id=row.family_id,
        agent_id=row.agent_id,
        tenant_id=row.tenant_id,
        api_key_id=row.api_key_id,
        client_id=row.client_id,
        scopes=tuple(row.scopes),
        status=RefreshTokenStatus(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        resources=tuple(row.resources) if row.resources is not None else None,
        subject=row.subject,
        agent_acts=bool(row.agent_acts),
        dpop_jkt=row.dpop_jkt,
    )


async def insert(session: AsyncSession, **values: Any) -> None:
    session.add(RefreshTokenRow(**values))
    await session.flush()


async def find(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    row = (await session.scalars(select(RefreshTokenRow).where(RefreshTokenRow.token_hash == token_hash))).first()
    return to_record(row) if row else None


async def revoke_where(
    session: AsyncSession, *, agent_ids: list[str] | None = None, api_key_id: str | None = None
) -> int:
    statement = update(RefreshTokenRow).where(RefreshTokenRow.status != RefreshTokenStatus.REVOKED)
    if agent_ids is not None:
        statement = statement.where(RefreshTokenRow.agent_id.in_(agent_ids))
    if api_key_id is not None:
        statement = statement.where(RefreshTokenRow.api_key_id == api_key_id)
    result = await session.execute(statement.values(status=RefreshTokenStatus.REVOKED))
    return int(result.rowcount)  # type: ignore[attr-defined]


# Bounds the re-runs of ``revoke_families`` on PostgreSQL (see there); each re-run means a refresh committed while
# the previous one waited, so more than two happen only when one client refreshes in a tight loop meanwhile.
FAMILY_REVOKE_PASSES = 8


async def revoke_families(session: AsyncSession, family_ids: Collection[str]) -> dict[str, str]:
    """Revoke every refresh token of these families; returns ``family_id -> tenant_id`` of those that had any
    token not yet revoked.

    PostgreSQL (READ COMMITTED): a refresh that rotated a token of the family but has not committed holds that
    row; the UPDATE waits for it, then revokes the spent token - but the token the refresh inserted is not in the
    statement's snapshot. So the UPDATE runs again until a pass finds nothing: a refresh either committed before a
    pass (and is seen by the next one) or tries to rotate a row this transaction has revoked (and then finds it no
    longer active). SQLite has one writer, so one pass is enough. A caller revoking the families' access tokens
    does so *after* this, in a statement whose snapshot includes what such a refresh minted."""
    families = sorted(set(family_ids))
    found: dict[str, str] = {}
    if not families:
        return found
    passes = FAMILY_REVOKE_PASSES if session.get_bind().dialect.name == "postgresql" else 1
    for _ in range(passes):
        rows = (await session.execute(statements.revoke_families(families))).all()
        if not rows:
            break
        found.update({family_id: tenant_id for family_id, tenant_id in rows})
    return found
