"""Repository of issuer signing keys (sealed private keys, states, timestamps)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage.models import SigningKeyRow

_PG_KEYRING_LOCK = 0x4B455953
_TIME_FIELDS = ("created_at", "activated_at", "retired_at", "remove_after")


async def lock_key_ring(session: AsyncSession) -> None:
    """Serialize ring creation/rotation across replicas (SQLite already holds its write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_KEYRING_LOCK})


async def load_records(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.scalars(select(SigningKeyRow))).all()
    return [
        {
            "kid": r.kid,
            "state": r.state,
            "public_jwk": r.public_jwk,
            "sealed_private_key": r.sealed_private_key,
            **{f: (getattr(r, f).isoformat() if getattr(r, f) else None) for f in _TIME_FIELDS},
        }
        for r in rows
    ]


async def replace_records(session: AsyncSession, records: list[dict[str, Any]]) -> None:
    """Make the table hold exactly ``records`` (upsert by kid, delete the rest) inside the caller's transaction."""
    keep = {r["kid"] for r in records}
    existing = {row.kid: row for row in (await session.scalars(select(SigningKeyRow))).all()}
    for kid in set(existing) - keep:
        await session.execute(delete(SigningKeyRow).where(SigningKeyRow.kid == kid))
    for record in records:
        values = {
            "state": record["state"],
            "public_jwk": record["public_jwk"],
            "sealed_private_key": record["sealed_private_key"],
            **{f: (datetime.fromisoformat(record[f]) if record.get(f) else None) for f in _TIME_FIELDS},
        }
        row = existing.get(record["kid"])
        if row is None:
            session.add(SigningKeyRow(kid=record["kid"], **values))
        else:
            for name, value in values.items():
                setattr(row, name, value)
    await session.flush()
