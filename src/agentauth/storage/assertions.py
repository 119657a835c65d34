"""Seen jwt-bearer assertion ids (RFC 7523 section 3, item 7: replay protection), atomic by primary key."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import CursorResult, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage.models import UsedAssertionRow


async def forget_expired(session: AsyncSession, now: datetime, leeway: timedelta, limit: int = 5000) -> int:
    """Forget up to ``limit`` ids of assertions that can no longer be accepted (``exp`` + ``leeway`` passed), so
    the table holds only what replay protection needs; the number forgotten (``limit``: call again)."""
    row = UsedAssertionRow
    gone = select(row.issuer, row.jti).where(row.expires_at < now - leeway).limit(limit)
    result = await session.execute(delete(row).where(tuple_(row.issuer, row.jti).in_(gone)))
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
