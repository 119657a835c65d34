"""Policies: the record, and the steps of a policy write on the general write path (``ports.Writes``) - each a
Core statement built once here, values bound by name.

A write's first step moves the tenant's policy version from the one the writer's compiled set was built at
(``version_step``): it fails - the set was stale - unless nothing changed in between, so a writer that succeeds
knows the stored policies are its set plus its own change, and updates that set instead of reloading it. On
PostgreSQL the step's row lock also queues the tenant's concurrent writers (every replica's), so the count of
``below_limit`` that follows sees the policies each committed before it (READ COMMITTED: a new snapshot per
statement) and the limit holds under concurrent creates.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import JSON, Boolean, Integer, Table, bindparam, delete, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.errors import AgentAuthError, InvalidRequest, NotFound
from agentauth.storage.models import PolicyRow, PolicyVersionRow
from agentauth.storage.ports import Insert, Require
from agentauth.storage.records import PolicyRecord

# The columns a replacement writes (all but the id, the tenant and the creation time), bound as "new_<column>".
REPLACED = ("name", "description", "effect", "subjects", "actions", "resources", "conditions", "priority", "enabled")
_TYPES: dict[str, Any] = {
    "subjects": JSON(), "actions": JSON(), "resources": JSON(), "conditions": JSON(), "priority": Integer(),
    "enabled": Boolean(),
}  # fmt: skip

# On the tables, not the mapped classes: Core statements, without the ORM's session synchronization.
_VERSIONS: Table = cast(Table, PolicyVersionRow.__table__)
_POLICIES: Table = cast(Table, PolicyRow.__table__)
_BUMP_FROM = (
    update(_VERSIONS)
    .where(_VERSIONS.c.tenant_id == bindparam("tenant"), _VERSIONS.c.version == bindparam("expected"))
    .values(version=_VERSIONS.c.version + 1)
)
_BUMP = update(_VERSIONS).where(_VERSIONS.c.tenant_id == bindparam("tenant")).values(version=_VERSIONS.c.version + 1)
_BELOW_LIMIT = select(literal(1)).where(
    select(func.count()).select_from(_POLICIES).where(_POLICIES.c.tenant_id == bindparam("tenant")).scalar_subquery()
    < bindparam("limit", type_=Integer())
)
_OF_TENANT = (_POLICIES.c.id == bindparam("policy"), _POLICIES.c.tenant_id == bindparam("tenant"))
_REPLACE = (
    update(_POLICIES)
    .where(*_OF_TENANT)
    .values(
        {column: bindparam(f"new_{column}", type_=_TYPES.get(column)) for column in REPLACED}
        | {"updated_at": bindparam("new_updated_at", type_=_POLICIES.c.updated_at.type)}
    )
)
_DELETE = delete(_POLICIES).where(*_OF_TENANT)


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
        enabled=bool(row.enabled),  # sqlite3 reads a boolean as 0/1
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def record_row(record: PolicyRecord) -> dict[str, Any]:
    """The policies row of ``record``."""
    return {
        "id": record.id, "tenant_id": record.tenant_id, "name": record.name, "description": record.description,
        "effect": record.effect, "subjects": dict(record.subjects), "actions": list(record.actions),
        "resources": list(record.resources), "conditions": dict(record.conditions), "priority": record.priority,
        "enabled": record.enabled, "created_at": record.created_at, "updated_at": record.updated_at,
    }  # fmt: skip


async def get(session: AsyncSession, tenant_id: str, policy_id: str) -> PolicyRecord | None:
    row = await session.get(PolicyRow, policy_id)
    return to_record(row) if row is not None and row.tenant_id == tenant_id else None


def version_step(tenant_id: str, expected: int | None, stale: AgentAuthError) -> Insert | Require:
    """Move the tenant's version from ``expected`` to the next, or fail with ``stale``; with ``expected`` None,
    from whatever it is (a writer that then knows nothing of the stored set). A tenant without a version row
    (0: it never had a policy) gets one; if another writer made it first, the insert fails as a unique
    violation - ``Conflict`` - which the writer takes as stale too."""
    if expected == 0:
        return Insert.of(_VERSIONS, {"tenant_id": tenant_id, "version": 1})
    if expected is None:
        return Require(_BUMP, {"tenant": tenant_id}, 1, stale)
    return Require(_BUMP_FROM, {"tenant": tenant_id, "expected": expected}, 1, stale)


def below_limit(tenant_id: str, limit: int) -> Require:
    return Require(
        _BELOW_LIMIT, {"tenant": tenant_id, "limit": limit}, 1,
        InvalidRequest(f"a tenant holds at most {limit} policies"),
    )  # fmt: skip


def insert(record: PolicyRecord) -> Insert:
    return Insert.of(_POLICIES, record_row(record))


def replace(record: PolicyRecord) -> Require:
    """Overwrite the policy's content with ``record``'s (not its creation time); NotFound when no such policy."""
    row = record_row(record)
    values = {f"new_{column}": row[column] for column in (*REPLACED, "updated_at")}
    return Require(_REPLACE, {"policy": record.id, "tenant": record.tenant_id, **values}, 1, NotFound("no such policy"))


def remove(tenant_id: str, policy_id: str) -> Require:
    return Require(_DELETE, {"policy": policy_id, "tenant": tenant_id}, 1, NotFound("no such policy"))
