"""Policies repository, with a per-tenant version bumped in the same transaction as any change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.storage.models import PolicyRow, PolicyVersionRow
from agentauth.storage.records import PolicyRecord


def to_record(row: PolicyRow) -> PolicyRecord:
    return PolicyRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        description=row.description,
        effect=row.effect,
        subjects=dict(row.subjects),
        actions=tuple(row.actions),
        resources=tuple(row.resources),
        conditions=dict(row.conditions),
        priority=row.priority,
        enabled=row.enabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def version(session: AsyncSession, tenant_id: str) -> int:
    value = await session.scalar(select(PolicyVersionRow.version).where(PolicyVersionRow.tenant_id == tenant_id))
    return int(value or 0)


async def bump_version(session: AsyncSession, tenant_id: str) -> None:
    result = await session.execute(
        update(PolicyVersionRow)
        .where(PolicyVersionRow.tenant_id == tenant_id)
        .values(version=PolicyVersionRow.version + 1)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        try:
            async with session.begin_nested():
                session.add(PolicyVersionRow(tenant_id=tenant_id, version=1))
                await session.flush()
        except IntegrityError:
            await session.execute(
                update(PolicyVersionRow)
                .where(PolicyVersionRow.tenant_id == tenant_id)
                .values(version=PolicyVersionRow.version + 1)
            )


async def list_for_tenant(session: AsyncSession, tenant_id: str) -> list[PolicyRecord]:
    rows = await session.scalars(
        select(PolicyRow).where(PolicyRow.tenant_id == tenant_id).order_by(PolicyRow.priority.desc(), PolicyRow.id)
    )
    return [to_record(r) for r in rows]


async def get(session: AsyncSession, tenant_id: str, policy_id: str) -> PolicyRecord | None:
    row = await session.get(PolicyRow, policy_id)
    return to_record(row) if row is not None and row.tenant_id == tenant_id else None


async def insert(session: AsyncSession, **values: Any) -> PolicyRecord:
    row = PolicyRow(**values)
    session.add(row)
    await session.flush()
    await bump_version(session, row.tenant_id)
    return to_record(row)


async def update_fields(session: AsyncSession, tenant_id: str, policy_id: str, **values: Any) -> PolicyRecord | None:
    await session.execute(
        update(PolicyRow).where(PolicyRow.id == policy_id, PolicyRow.tenant_id == tenant_id).values(**values)
    )
    await bump_version(session, tenant_id)
    row = await session.get(PolicyRow, policy_id, populate_existing=True)
    return to_record(row) if row is not None and row.tenant_id == tenant_id else None


async def remove(session: AsyncSession, tenant_id: str, policy_id: str) -> bool:
    result = await session.execute(delete(PolicyRow).where(PolicyRow.id == policy_id, PolicyRow.tenant_id == tenant_id))
    if result.rowcount:  # type: ignore[attr-defined]
        await bump_version(session, tenant_id)
        return True
    return False
