"""Issued credentials (access tokens, identity and delegation credentials) and their status slots.

An access token minted with a refresh token records that token's family (``refresh_family_id``, see
``refresh_tokens``): revoking the access token revokes the family's refresh tokens, revoking a refresh token
revokes the family's access tokens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage.db import sqlite_datetime
from agentauth.storage.models import CredentialRow, StatusListRow
from agentauth.storage.records import Credential


def to_record(row: CredentialRow) -> Credential:
    return Credential(
        jti=row.jti,
        kind=row.kind,
        agent_id=row.agent_id,
        tenant_id=row.tenant_id,
        client_id=row.client_id,
        api_key_id=row.api_key_id,
        refresh_family_id=row.refresh_family_id,
        delegation_id=row.delegation_id,
        scopes=tuple(row.scopes),
        status_list_id=row.status_list_id,
        status_index=row.status_index,
        kid=row.kid,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


async def insert(session: AsyncSession, **values: Any) -> None:
    session.add(CredentialRow(**values))
    await session.flush()


async def get(session: AsyncSession, jti: str) -> Credential | None:
    row = await session.get(CredentialRow, jti)
    return to_record(row) if row else None


async def revoke(
    session: AsyncSession,
    now: datetime,
    *,
    jtis: Sequence[str] | None = None,
    agent_ids: Sequence[str] | None = None,
    api_key_id: str | None = None,
    refresh_family_id: str | None = None,
    refresh_family_ids: Collection[str] | None = None,
    delegation_ids: Sequence[str] | None = None,
    kid: str | None = None,
) -> list[Credential]:
    """Revoke every unrevoked, unexpired credential matching all given filters; bump the versions of the
    status lists whose bits changed (in this transaction), and return what was revoked."""
    conditions: list[ColumnElement[bool]] = [CredentialRow.revoked_at.is_(None), CredentialRow.expires_at > now]
    if jtis is not None:
        conditions.append(CredentialRow.jti.in_(list(jtis)))
    if agent_ids is not None:
        conditions.append(CredentialRow.agent_id.in_(list(agent_ids)))
    if api_key_id is not None:
        conditions.append(CredentialRow.api_key_id == api_key_id)
    if refresh_family_id is not None:
        conditions.append(CredentialRow.refresh_family_id == refresh_family_id)
    if refresh_family_ids is not None:
        conditions.append(CredentialRow.refresh_family_id.in_(sorted(set(refresh_family_ids))))
    if delegation_ids is not None:
        conditions.append(CredentialRow.delegation_id.in_(list(delegation_ids)))
    if kid is not None:
        conditions.append(CredentialRow.kid == kid)
    if len(conditions) == 2:
        raise ValueError("refusing to revoke every credential: give a filter")
    result = await session.execute(
        update(CredentialRow).where(*conditions).values(revoked_at=now).returning(CredentialRow)
    )
    revoked = [to_record(r) for r in result.scalars().all()]
    list_ids = sorted({c.status_list_id for c in revoked})
    if list_ids:
        await session.execute(
            update(StatusListRow).where(StatusListRow.id.in_(list_ids)).values(version=StatusListRow.version + 1)
        )
    return revoked


async def families_of(session: AsyncSession, jtis: Sequence[str]) -> dict[str, str]:
    """``jti -> refresh family`` of those of ``jtis`` minted with a refresh token (revoked or expired included: a
    dead access token still names the grant its refresh token belongs to)."""
    rows = await session.execute(
        select(CredentialRow.jti, CredentialRow.refresh_family_id).where(
            CredentialRow.jti.in_(list(jtis)), CredentialRow.refresh_family_id.is_not(None)
        )
    )
    return {jti: family for jti, family in rows if family is not None}


# -- the same, for the sqlite3 module inside the single writer's transaction (the hot revocation round) --------

# One row of what ``sqlite_revoke`` revoked: (jti, kind, tenant_id, status_list_id, refresh_family_id).
SqliteRevoked = tuple[str, str, str, int, str | None]


def sqlite_families_of(connection: sqlite3.Connection, jtis: Sequence[str]) -> dict[str, str]:
    rows = connection.execute(
        "SELECT jti, refresh_family_id FROM credentials WHERE jti IN (SELECT value FROM json_each(?)) "
        "AND refresh_family_id IS NOT NULL",
        (orjson.dumps(list(jtis)).decode(),),
    ).fetchall()
    return {jti: family for jti, family in rows}


def sqlite_revoke(connection: sqlite3.Connection, now: datetime, jtis: Sequence[str]) -> list[SqliteRevoked]:
    """``revoke`` by jti, without the status-list version bump (the caller bumps once for the whole round)."""
    at = sqlite_datetime(now)
    rows: list[SqliteRevoked] = connection.execute(
        "UPDATE credentials SET revoked_at = ? WHERE jti IN (SELECT value FROM json_each(?)) "
        "AND revoked_at IS NULL AND expires_at > ? RETURNING jti, kind, tenant_id, status_list_id, refresh_family_id",
        (at, orjson.dumps(list(jtis)).decode(), at),
    ).fetchall()
    return rows
