"""Issued credentials (access tokens, identity and delegation credentials) and their status slots.

An access token minted with a refresh token records that token's family (``refresh_family_id``, see
``refresh_tokens``): revoking the access token revokes the family's refresh tokens, revoking a refresh token
revokes the family's access tokens.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage import statements
from agentauth.storage.models import CredentialRow
from agentauth.storage.records import Credential, CredentialKind


def to_record(row: CredentialRow) -> Credential:
    return Credential(
        jti=row.jti,
        kind=CredentialKind(row.kind),
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
    conditions: list[ColumnElement[bool]] = [statements.live_credential(now)]
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
    if len(conditions) == 1:
        raise ValueError("refusing to revoke every credential: give a filter")
    result = await session.execute(
        update(CredentialRow).where(*conditions).values(revoked_at=now).returning(CredentialRow)
    )
    revoked = [to_record(r) for r in result.scalars().all()]
    list_ids = sorted({c.status_list_id for c in revoked})
    if list_ids:
        await session.execute(statements.bump_list_versions(list_ids))
    return revoked
