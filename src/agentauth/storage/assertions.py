"""Seen jwt-bearer assertion ids (RFC 7523 section 3, item 7: replay protection), atomic by primary key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage.models import UsedAssertionRow


async def remember(session: AsyncSession, issuer: str, jti: str, expires_at: datetime) -> bool:
    """Record a (issuer, jti); False when it was already used."""
    try:
        async with session.begin_nested():
            session.add(UsedAssertionRow(issuer=issuer, jti=jti, expires_at=expires_at))
            await session.flush()
    except IntegrityError:
        return False
    return True


async def forget_expired(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(UsedAssertionRow).where(UsedAssertionRow.expires_at < now))
