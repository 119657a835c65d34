"""Webhooks (issue 16 item 5): the statements of subscriptions, of the outbox (one delivery row per event owed to
a subscription), of its fan-out cursor and of the delivery log - on the general ports (``Reads.fetch`` /
``Writes.run``), so they run unchanged on the one-hop SQLite, SQLAlchemy and asyncpg implementations.

The audit log is the source of events: the fan-out (``issuer/webhook_worker.py``) reads audit rows above the
cursor and, in one plan, inserts the deliveries they owe and moves the cursor - guarded by the fan-out lease, so
one replica at a time does it. Deliveries are claimed one by one with a lease of their own (any replica may
deliver), and each attempt closes its claim in one plan with its log row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Integer,
    String,
    Table,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)

from agentauth.errors import AgentAuthError
from agentauth.storage import audit as audit_repo
from agentauth.storage import statements
from agentauth.storage.models import (
    AuditEventRow,
    UTCDateTime,
    WebhookAttemptRow,
    WebhookCursorRow,
    WebhookDeliveryRow,
    WebhookSubscriptionRow,
)
from agentauth.storage.ports import Execute, Insert, Query, Require
from agentauth.storage.records import AuditEvent, DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookSubscription

CURSOR = "audit"  # the one fan-out cursor's name

_SUBS: Table = cast(Table, WebhookSubscriptionRow.__table__)
_DELIVERIES: Table = cast(Table, WebhookDeliveryRow.__table__)
_ATTEMPTS: Table = cast(Table, WebhookAttemptRow.__table__)
_CURSOR: Table = cast(Table, WebhookCursorRow.__table__)
_AUDIT: Table = cast(Table, AuditEventRow.__table__)

SUBSCRIPTION_COLUMNS = tuple(_SUBS.columns)
DELIVERY_COLUMNS = tuple(c for c in _DELIVERIES.columns if c.key != "lease_until")
ATTEMPT_COLUMNS = (_ATTEMPTS.c.delivery_id, _ATTEMPTS.c.attempt, _ATTEMPTS.c.at, _ATTEMPTS.c.status_code,
                   _ATTEMPTS.c.error, _ATTEMPTS.c.duration_ms)  # fmt: skip
AUDIT_COLUMNS = tuple(_AUDIT.columns)

_NOW = bindparam("now", type_=UTCDateTime())
_LIMIT = bindparam("limit", type_=Integer())
_OF_TENANT = (_SUBS.c.id == bindparam("hook"), _SUBS.c.tenant_id == bindparam("tenant"))

# -- subscriptions --

_SUB_OF_TENANT = select(*SUBSCRIPTION_COLUMNS).where(*_OF_TENANT)
_SUB_PAGE = (
    select(*SUBSCRIPTION_COLUMNS)
    .where(_SUBS.c.tenant_id == bindparam("tenant"))
    .order_by(_SUBS.c.created_at, _SUBS.c.id)
    .limit(_LIMIT)
    .offset(bindparam("offset", type_=Integer()))
)
_SUB_COUNT = select(func.count()).select_from(_SUBS).where(_SUBS.c.tenant_id == bindparam("tenant"))
_SUB_BELOW_LIMIT = select(literal(1)).where(_SUB_COUNT.scalar_subquery() < _LIMIT)
_ACTIVE = select(*SUBSCRIPTION_COLUMNS).where(_SUBS.c.active.is_(True)).order_by(_SUBS.c.id)
CHANGED = ("url", "events", "description", "active")
_SUB_CHANGE = (
    update(_SUBS)
    .where(*_OF_TENANT)
    .values(
        url=bindparam("new_url", type_=String()),
        events=bindparam("new_events", type_=JSON()),
        description=bindparam("new_description", type_=String()),
        active=bindparam("new_active", type_=Boolean()),
    )
)
_SUB_DELETE = delete(_SUBS).where(*_OF_TENANT)
# What a deleted subscription still owed is closed, not left for a worker to find (the log stays readable).
_CLOSE_OWED = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.subscription_id == bindparam("subscription"), _DELIVERIES.c.status == DeliveryStatus.PENDING.value
    )
    .values(status=DeliveryStatus.FAILED.value, last_error="subscription deleted", lease_until=None)
)
_NEWEST_AUDIT = select(func.coalesce(func.max(_AUDIT.c.id), 0))


def subscription(row: Any) -> WebhookSubscription:
    return WebhookSubscription(
        id=row.id, tenant_id=row.tenant_id, url=row.url, events=tuple(row.events), description=row.description,
        secret_sealed=row.secret_sealed, active=bool(row.active), from_audit_id=int(row.from_audit_id),
        created_by=row.created_by, created_at=row.created_at,
    )  # fmt: skip


def subscriptions(rows: Sequence[tuple[Any, ...]]) -> list[WebhookSubscription]:
    return [subscription(statements.row_as(SUBSCRIPTION_COLUMNS, row)) for row in rows]


def subscription_of_tenant(tenant_id: str, subscription_id: str) -> Query:
    return Query(_SUB_OF_TENANT, {"tenant": tenant_id, "hook": subscription_id})


def subscription_page(tenant_id: str, limit: int, offset: int) -> tuple[Query, Query]:
    page = Query(_SUB_PAGE, {"tenant": tenant_id, "limit": limit, "offset": offset})
    return Query(_SUB_COUNT, {"tenant": tenant_id}), page


def active_subscriptions() -> Query:
    return Query(_ACTIVE)


def newest_audit_id() -> Query:
    """The id of the newest audit event (0 with none): where a new subscription's events start."""
    return Query(_NEWEST_AUDIT)


def below_limit(tenant_id: str, limit: int, error: AgentAuthError) -> Require:
    return Require(_SUB_BELOW_LIMIT, {"tenant": tenant_id, "limit": limit}, 1, error)


def insert_subscription(record: WebhookSubscription) -> Insert:
    return Insert.of(_SUBS, {
        "id": record.id, "tenant_id": record.tenant_id, "url": record.url, "events": list(record.events),
        "description": record.description, "secret_sealed": record.secret_sealed, "active": record.active,
        "from_audit_id": record.from_audit_id, "created_by": record.created_by, "created_at": record.created_at,
    })  # fmt: skip


def change_subscription(record: WebhookSubscription, missing: AgentAuthError) -> Require:
    params = {
        "hook": record.id, "tenant": record.tenant_id, "new_url": record.url, "new_events": list(record.events),
        "new_description": record.description, "new_active": record.active,
    }  # fmt: skip
    return Require(_SUB_CHANGE, params, 1, missing)


def remove_subscription(tenant_id: str, subscription_id: str, missing: AgentAuthError) -> tuple[Require, Execute]:
    return (
        Require(_SUB_DELETE, {"tenant": tenant_id, "hook": subscription_id}, 1, missing),
        Execute(_CLOSE_OWED, {"subscription": subscription_id}),
    )


# -- the fan-out cursor and its lease --

_CURSOR_ROW = select(_CURSOR.c.audit_id, _CURSOR.c.lease_owner, _CURSOR.c.lease_until).where(_CURSOR.c.name == CURSOR)
_TAKE_LEASE = (
    update(_CURSOR)
    .where(
        _CURSOR.c.name == CURSOR,
        or_(
            _CURSOR.c.lease_owner == bindparam("me"),
            _CURSOR.c.lease_until.is_(None),
            _CURSOR.c.lease_until < _NOW,
        ),
    )
    .values(lease_owner=bindparam("me"), lease_until=bindparam("until", type_=UTCDateTime()))
)
_ADVANCE = (
    update(_CURSOR)
    .where(
        _CURSOR.c.name == CURSOR,
        _CURSOR.c.audit_id == bindparam("old", type_=BigInteger()),
        _CURSOR.c.lease_owner == bindparam("me"),
    )
    .values(audit_id=bindparam("new", type_=BigInteger()))
)
_AUDIT_ABOVE = (
    select(*AUDIT_COLUMNS)
    .where(_AUDIT.c.id > bindparam("after", type_=BigInteger()))
    .order_by(_AUDIT.c.id)
    .limit(_LIMIT)
)
_OWED_BETWEEN = select(_DELIVERIES.c.subscription_id, _DELIVERIES.c.audit_id).where(
    _DELIVERIES.c.audit_id > bindparam("after", type_=BigInteger()),
    _DELIVERIES.c.audit_id <= bindparam("upto", type_=BigInteger()),
)


# -- forgetting settled deliveries (housekeeping) --

_SETTLED = (
    _DELIVERIES.c.status != DeliveryStatus.PENDING.value,  # delivered or failed (no IN: statements compile once)
    _DELIVERIES.c.next_attempt_at < bindparam("cutoff", type_=UTCDateTime()),
)
_SETTLED_IDS = select(_DELIVERIES.c.id).where(*_SETTLED).order_by(_DELIVERIES.c.id).limit(_LIMIT)
_SETTLED_UPTO = select(_DELIVERIES.c.id).where(*_SETTLED, _DELIVERIES.c.id <= bindparam("upto", type_=BigInteger()))
_FORGET_ATTEMPTS = delete(_ATTEMPTS).where(_ATTEMPTS.c.delivery_id.in_(_SETTLED_UPTO))
_FORGET_DELIVERIES = delete(_DELIVERIES).where(_DELIVERIES.c.id.in_(_SETTLED_UPTO))


def settled_before(cutoff: datetime, limit: int) -> Query:
    """The ids of up to ``limit`` deliveries settled (delivered or failed) before ``cutoff``, oldest first."""
    return Query(_SETTLED_IDS, {"cutoff": cutoff, "limit": limit})


def forget_settled(cutoff: datetime, upto: int) -> tuple[Execute, Execute]:
    """Delete the deliveries settled before ``cutoff`` with ids up to ``upto``, and their attempt log. A delivery
    sent again in between (``retry``: pending once more) is no longer settled and stays."""
    params = {"cutoff": cutoff, "upto": upto}
    return Execute(_FORGET_ATTEMPTS, params), Execute(_FORGET_DELIVERIES, params)


def cursor() -> Query:
    return Query(_CURSOR_ROW)


def new_cursor(audit_id: int) -> Insert:
    return Insert.of(_CURSOR, {"name": CURSOR, "audit_id": audit_id})


def take_lease(owner: str, now: datetime, until: datetime, error: AgentAuthError) -> Require:
    """The fan-out lease for ``owner`` until ``until``: renewed if it holds it, taken if it is free or expired."""
    return Require(_TAKE_LEASE, {"me": owner, "now": now, "until": until}, 1, error)


def advance(owner: str, old: int, new: int, error: AgentAuthError) -> Require:
    """Move the cursor from ``old`` to ``new`` - only if it is still at ``old`` and ``owner`` holds the lease."""
    return Require(_ADVANCE, {"me": owner, "old": old, "new": new}, 1, error)


def audit_above(after: int, limit: int) -> Query:
    return Query(_AUDIT_ABOVE, {"after": after, "limit": limit})


def owed_between(after: int, upto: int) -> Query:
    """The (subscription, audit id) pairs already in the outbox for audit ids in (``after``, ``upto``]."""
    return Query(_OWED_BETWEEN, {"after": after, "upto": upto})


def insert_deliveries(rows: Sequence[dict[str, Any]]) -> Insert:
    return Insert.of(_DELIVERIES, *rows)


def owed(subscription: WebhookSubscription, event_id: int, event_type: str, now: datetime) -> dict[str, Any]:
    return {
        "subscription_id": subscription.id, "tenant_id": subscription.tenant_id, "audit_id": event_id,
        "event_type": event_type, "status": DeliveryStatus.PENDING.value, "attempts": 0, "next_attempt_at": now,
        "created_at": now,
    }  # fmt: skip


# -- deliveries --

_DUE = (
    select(*DELIVERY_COLUMNS)
    .join(_SUBS, _SUBS.c.id == _DELIVERIES.c.subscription_id)
    .where(
        _DELIVERIES.c.status == DeliveryStatus.PENDING.value,
        _DELIVERIES.c.next_attempt_at <= _NOW,
        or_(_DELIVERIES.c.lease_until.is_(None), _DELIVERIES.c.lease_until < _NOW),
        _SUBS.c.active.is_(True),
    )
    .order_by(_DELIVERIES.c.next_attempt_at, _DELIVERIES.c.id)
    .limit(_LIMIT)
)
_CLAIM = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.id == bindparam("delivery", type_=BigInteger()),
        _DELIVERIES.c.status == DeliveryStatus.PENDING.value,
        or_(_DELIVERIES.c.lease_until.is_(None), _DELIVERIES.c.lease_until < _NOW),
    )
    .values(lease_until=bindparam("until", type_=UTCDateTime()))
)
_CLOSE_ATTEMPT = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.id == bindparam("delivery", type_=BigInteger()),
        _DELIVERIES.c.lease_until == bindparam("lease", type_=UTCDateTime()),
    )
    .values(
        status=bindparam("new_status", type_=String()),
        attempts=_DELIVERIES.c.attempts + 1,
        next_attempt_at=bindparam("next", type_=UTCDateTime()),
        lease_until=None,
        last_status_code=bindparam("code", type_=Integer()),
        last_error=bindparam("error", type_=String()),
        delivered_at=bindparam("delivered", type_=UTCDateTime()),
    )
)
_AUDIT_BY_ID = select(*AUDIT_COLUMNS).where(_AUDIT.c.id == bindparam("id", type_=BigInteger()))
_SUB_BY_ID = select(*SUBSCRIPTION_COLUMNS).where(_SUBS.c.id == bindparam("id"))
_DELIVERY_PAGE = (
    select(*DELIVERY_COLUMNS)
    .where(
        _DELIVERIES.c.tenant_id == bindparam("tenant"),
        _DELIVERIES.c.subscription_id == bindparam("id"),
        _DELIVERIES.c.id < bindparam("before", type_=BigInteger()),
    )
    .order_by(_DELIVERIES.c.id.desc())
    .limit(_LIMIT)
)
_DELIVERY_OF_TENANT = select(*DELIVERY_COLUMNS).where(
    _DELIVERIES.c.tenant_id == bindparam("tenant"), _DELIVERIES.c.id == bindparam("delivery", type_=BigInteger())
)
_ATTEMPTS_OF = (
    select(*ATTEMPT_COLUMNS)
    .where(
        _ATTEMPTS.c.delivery_id >= bindparam("low", type_=BigInteger()),
        _ATTEMPTS.c.delivery_id <= bindparam("high", type_=BigInteger()),
    )
    .order_by(_ATTEMPTS.c.delivery_id, _ATTEMPTS.c.attempt)
)
_RETRY = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.tenant_id == bindparam("tenant"),
        _DELIVERIES.c.subscription_id == bindparam("subscription"),
        _DELIVERIES.c.id == bindparam("delivery", type_=BigInteger()),
        or_(_DELIVERIES.c.lease_until.is_(None), _DELIVERIES.c.lease_until < _NOW),
    )
    .values(status=DeliveryStatus.PENDING.value, next_attempt_at=_NOW, lease_until=None, delivered_at=None)
)


def delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id=int(row.id), subscription_id=row.subscription_id, tenant_id=row.tenant_id, audit_id=int(row.audit_id),
        event_type=row.event_type, status=DeliveryStatus(row.status), attempts=int(row.attempts),
        next_attempt_at=row.next_attempt_at, last_status_code=row.last_status_code, last_error=row.last_error,
        created_at=row.created_at, delivered_at=row.delivered_at,
    )  # fmt: skip


def deliveries(rows: Sequence[tuple[Any, ...]]) -> list[WebhookDelivery]:
    return [delivery(statements.row_as(DELIVERY_COLUMNS, row)) for row in rows]


def attempts(rows: Sequence[tuple[Any, ...]]) -> dict[int, list[WebhookAttempt]]:
    """Attempt rows by delivery id, in attempt order."""
    log: dict[int, list[WebhookAttempt]] = {}
    for row in rows:
        r = statements.row_as(ATTEMPT_COLUMNS, row)
        log.setdefault(int(r.delivery_id), []).append(
            WebhookAttempt(int(r.attempt), r.at, r.status_code, r.error, int(r.duration_ms))
        )
    return log


def due(now: datetime, limit: int) -> Query:
    """Deliveries whose next attempt is due, unclaimed (or their claim expired), of active subscriptions."""
    return Query(_DUE, {"now": now, "limit": limit})


def claim(delivery_id: int, now: datetime, until: datetime, taken: AgentAuthError) -> Require:
    """Lease delivery ``delivery_id`` until ``until``, if it is still pending and unclaimed at ``now``."""
    return Require(_CLAIM, {"delivery": delivery_id, "now": now, "until": until}, 1, taken)


def close_attempt(
    delivery_id: int,
    lease: datetime,
    status: DeliveryStatus,
    next_attempt_at: datetime,
    code: int | None,
    error: str | None,
    delivered_at: datetime | None,
    lost: AgentAuthError,
) -> Require:
    """Record an attempt's outcome on delivery ``delivery_id`` - only under the claim ``lease`` made."""
    params = {
        "delivery": delivery_id, "lease": lease, "new_status": status.value, "next": next_attempt_at, "code": code,
        "error": error, "delivered": delivered_at,
    }  # fmt: skip
    return Require(_CLOSE_ATTEMPT, params, 1, lost)


def insert_attempt(delivery_id: int, number: int, at: datetime, code: int | None, error: str | None, ms: int) -> Insert:
    row = {"delivery_id": delivery_id, "attempt": number, "at": at, "status_code": code, "error": error,
           "duration_ms": ms}  # fmt: skip
    return Insert.of(_ATTEMPTS, row)


def audit_records(rows: Sequence[tuple[Any, ...]]) -> list[AuditEvent]:
    return [audit_repo.to_record(statements.row_as(AUDIT_COLUMNS, row)) for row in rows]


def audit_event(audit_id: int) -> Query:
    return Query(_AUDIT_BY_ID, {"id": audit_id})


def subscription_by_id(subscription_id: str) -> Query:
    return Query(_SUB_BY_ID, {"id": subscription_id})


def delivery_page(tenant_id: str, subscription_id: str, before: int, limit: int) -> Query:
    """A subscription's deliveries, newest first, with ids below ``before`` (keyset pagination)."""
    return Query(_DELIVERY_PAGE, {"tenant": tenant_id, "id": subscription_id, "before": before, "limit": limit})


def delivery_of_tenant(tenant_id: str, delivery_id: int) -> Query:
    return Query(_DELIVERY_OF_TENANT, {"tenant": tenant_id, "delivery": delivery_id})


def attempts_between(low: int, high: int) -> Query:
    return Query(_ATTEMPTS_OF, {"low": low, "high": high})


def retry(tenant_id: str, subscription_id: str, delivery_id: int, now: datetime, busy: AgentAuthError) -> Require:
    """Owe a delivery again, due now, unless it is being attempted at ``now`` (its attempt count goes on)."""
    params = {"tenant": tenant_id, "subscription": subscription_id, "delivery": delivery_id, "now": now}
    return Require(_RETRY, params, 1, busy)
