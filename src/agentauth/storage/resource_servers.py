"""Resource servers (RFC 8707 resource identifiers a tenant registered): the record and the statements of their
management (on the general ports, ``Reads.fetch`` / ``Writes.run``, so they run unchanged on the one-hop SQLite,
SQLAlchemy and asyncpg implementations) and of the token path's lookup by identifier (the unique index).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import JSON, Integer, Table, bindparam, delete, func, literal, select, update

from agentauth.errors import AgentAuthError
from agentauth.storage import statements
from agentauth.storage.models import ResourceServerRow
from agentauth.storage.ports import Insert, Query, Require
from agentauth.storage.records import ResourceServer

_TABLE: Table = cast(Table, ResourceServerRow.__table__)
COLUMNS = tuple(_TABLE.columns)
_OF_TENANT = (_TABLE.c.id == bindparam("id"), _TABLE.c.tenant_id == bindparam("tenant"))
# Every column a change writes, bound as "new_<column>".
CHANGED = ("name", "kind", "scopes", "access", "allowed_tenants", "updated_at")
_TYPES: dict[str, Any] = {"scopes": JSON(), "allowed_tenants": JSON(), "updated_at": _TABLE.c.updated_at.type}

BY_IDENTIFIER = select(*COLUMNS).where(_TABLE.c.identifier == bindparam("identifier"))
OF_TENANT = select(*COLUMNS).where(*_OF_TENANT)
PAGE = (
    select(*COLUMNS)
    .where(_TABLE.c.tenant_id == bindparam("tenant"))
    .order_by(_TABLE.c.created_at, _TABLE.c.id)
    .limit(bindparam("limit", type_=Integer()))
    .offset(bindparam("offset", type_=Integer()))
)
COUNT = select(func.count()).select_from(_TABLE).where(_TABLE.c.tenant_id == bindparam("tenant"))
_BELOW_LIMIT = select(literal(1)).where(COUNT.scalar_subquery() < bindparam("limit", type_=Integer()))
_CHANGE = (
    update(_TABLE)
    .where(*_OF_TENANT)
    .values({column: bindparam(f"new_{column}", type_=_TYPES.get(column)) for column in CHANGED})
)
_DELETE = delete(_TABLE).where(*_OF_TENANT)


def to_record(row: Any) -> ResourceServer:
    return ResourceServer(
        id=row.id,
        tenant_id=row.tenant_id,
        identifier=row.identifier,
        name=row.name,
        kind=row.kind,
        scopes=tuple((str(s["name"]), str(s.get("description") or "")) for s in row.scopes),
        access=row.access,
        allowed_tenants=tuple(row.allowed_tenants),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def records(rows: Sequence[tuple[Any, ...]]) -> list[ResourceServer]:
    return [to_record(statements.row_as(COLUMNS, row)) for row in rows]


def _row(record: ResourceServer) -> dict[str, Any]:
    return {
        "id": record.id, "tenant_id": record.tenant_id, "identifier": record.identifier, "name": record.name,
        "kind": record.kind, "scopes": [{"name": n, "description": d} for n, d in record.scopes],
        "access": record.access, "allowed_tenants": list(record.allowed_tenants), "created_at": record.created_at,
        "updated_at": record.updated_at,
    }  # fmt: skip


def by_identifier(identifier: str) -> Query:
    """The server named ``identifier`` (the unique index): one query each, several in one ``Reads.fetch``."""
    return Query(BY_IDENTIFIER, {"identifier": identifier})


def of_tenant(tenant_id: str, server_id: str) -> Query:
    return Query(OF_TENANT, {"tenant": tenant_id, "id": server_id})


def page(tenant_id: str, limit: int, offset: int) -> tuple[Query, Query]:
    return Query(COUNT, {"tenant": tenant_id}), Query(PAGE, {"tenant": tenant_id, "limit": limit, "offset": offset})


def below_limit(tenant_id: str, limit: int, error: AgentAuthError) -> Require:
    return Require(_BELOW_LIMIT, {"tenant": tenant_id, "limit": limit}, 1, error)


def insert(record: ResourceServer) -> Insert:
    return Insert.of(_TABLE, _row(record))


def change(record: ResourceServer, missing: AgentAuthError) -> Require:
    values = _row(record)
    params = {"id": record.id, "tenant": record.tenant_id} | {f"new_{c}": values[c] for c in CHANGED}
    return Require(_CHANGE, params, 1, missing)


def remove(tenant_id: str, server_id: str, missing: AgentAuthError) -> Require:
    return Require(_DELETE, {"tenant": tenant_id, "id": server_id}, 1, missing)
