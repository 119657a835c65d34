"""Operator statistics (``agentauth admin stats``, issue 16 item 6): counts across every tenant, read in one
snapshot on the general read port - how many tenants, agents, keys, live credentials and delegations there are,
what the last 24 hours issued, denied and revoked, and how the webhook outbox, the status lists and the signing
keys stand. Counts only: no id, name or secret of any tenant."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Table, bindparam, func, select

from agentauth.storage.models import (
    AgentRow,
    ApiKeyRow,
    AuditEventRow,
    CredentialRow,
    DelegationRow,
    OAuthClientRow,
    OwnerRow,
    PolicyRow,
    RefreshTokenRow,
    ResourceServerRow,
    SigningKeyRow,
    StatusListRow,
    UTCDateTime,
    WebhookDeliveryRow,
    WebhookSubscriptionRow,
)
from agentauth.storage.ports import Query

_NOW = bindparam("now", type_=UTCDateTime())
_SINCE = bindparam("since", type_=UTCDateTime())


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _by(model: Any, column: str, *where: Any) -> Any:
    table = _table(model)
    key: Column[Any] = table.c[column]
    return select(key, func.count()).select_from(table).where(*where).group_by(key).order_by(key)


def _count(model: Any, *where: Any) -> Any:
    return select(func.count()).select_from(_table(model)).where(*where)


_AGENTS, _CREDS, _AUDIT = _table(AgentRow), _table(CredentialRow), _table(AuditEventRow)
STATEMENTS: dict[str, Any] = {
    "tenants": _count(AgentRow, _AGENTS.c.parent_id.is_(None)),
    "agents": _by(AgentRow, "status"),
    "api_keys": _by(ApiKeyRow, "status"),
    "live_credentials": _by(CredentialRow, "kind", _CREDS.c.revoked_at.is_(None), _CREDS.c.expires_at > _NOW),
    "issued_24h": _by(CredentialRow, "kind", _CREDS.c.issued_at >= _SINCE),
    "revoked_24h": _by(CredentialRow, "kind", _CREDS.c.revoked_at >= _SINCE),
    "refresh_tokens": _by(RefreshTokenRow, "status"),
    "delegations": _by(DelegationRow, "status"),
    "policies": _count(PolicyRow),
    "resource_servers": _count(ResourceServerRow),
    "oauth_clients": _count(OAuthClientRow),
    "owners": _count(OwnerRow),
    "audit_24h": _by(AuditEventRow, "outcome", _AUDIT.c.created_at >= _SINCE),
    "token_denials_24h": _count(AuditEventRow, _AUDIT.c.created_at >= _SINCE, _AUDIT.c.action == "token.denied"),
    "webhooks_active": _count(WebhookSubscriptionRow, _table(WebhookSubscriptionRow).c.active.is_(True)),
    "webhook_deliveries": _by(WebhookDeliveryRow, "status"),
    "status_lists": _by(StatusListRow, "state"),
    "signing_keys": _by(SigningKeyRow, "state"),
}


def queries(now: datetime) -> list[Query]:
    params = {"now": now, "since": now - timedelta(days=1)}
    return [Query(statement, params) for statement in STATEMENTS.values()]


def summary(results: Sequence[list[tuple[Any, ...]]]) -> dict[str, Any]:
    """The answers of ``queries`` by name: a number, or counts by status / kind / state."""
    out: dict[str, Any] = {}
    for name, rows in zip(STATEMENTS, results, strict=True):
        if rows and len(rows[0]) == 1:
            out[name] = int(rows[0][0])
        else:
            out[name] = {str(key): int(count) for key, count in rows}
    return out
