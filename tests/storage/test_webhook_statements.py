"""The webhook statements (``storage/webhooks.py``) on every implementation of the general ports: the same
records, the same leases and claims, the same refusals - SQLite ORM, one-hop SQLite and, when enabled, both
PostgreSQL implementations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from port_support import Store

from agentauth.errors import Conflict, NotFound
from agentauth.issuer import audit
from agentauth.issuer.context import RequestContext
from agentauth.storage import webhooks as repo
from agentauth.storage.models import AuditEventRow
from agentauth.storage.ports import Insert, WritePlan
from agentauth.storage.records import DeliveryStatus, WebhookSubscription

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC)


class Refused(Conflict):
    pass


def subscription(tenant: str = "agt_t", hook: str = "wh_1", active: bool = True) -> WebhookSubscription:
    return WebhookSubscription(
        id=hook, tenant_id=tenant, url="https://hooks.example.com/a?x=1", events=("agent.*", "token.issued"),
        description=None, secret_sealed="sealed", active=active, from_audit_id=0, created_by="agt_t", created_at=T0,
    )  # fmt: skip


async def run(store: Store, *steps: object) -> None:
    await store.ports.run(WritePlan(steps))  # type: ignore[arg-type]


async def add_events(store: Store, tenant: str, *actions: str) -> None:
    rows = [audit.event(RequestContext(), T0, action=a, tenant_id=tenant, actor="agt_t") for a in actions]
    await run(store, Insert.of(AuditEventRow.__table__, *rows))


async def test_subscriptions_round_trip_change_and_delete(store: Store) -> None:
    sub = subscription()
    await run(store, repo.insert_subscription(sub), repo.insert_subscription(subscription("agt_u", "wh_2")))
    (rows,) = await store.ports.fetch(repo.subscription_of_tenant("agt_t", "wh_1"))
    assert repo.subscriptions(rows) == [sub]
    (rows,) = await store.ports.fetch(repo.subscription_of_tenant("agt_u", "wh_1"))
    assert rows == []  # another tenant's id names nothing
    count, page = await store.ports.fetch(*repo.subscription_page("agt_t", 10, 0))
    assert count[0][0] == 1 and [s.id for s in repo.subscriptions(page)] == ["wh_1"]
    full = Refused("full")
    with pytest.raises(Refused):
        await run(store, repo.below_limit("agt_t", 1, full))
    paused = replace(sub, active=False)
    await run(store, repo.change_subscription(paused, NotFound("gone")))
    (active,) = await store.ports.fetch(repo.active_subscriptions())
    assert [s.id for s in repo.subscriptions(active)] == ["wh_2"]
    with pytest.raises(NotFound):
        await run(store, *repo.remove_subscription("agt_u", "wh_1", NotFound("gone")))
    await run(store, *repo.remove_subscription("agt_t", "wh_1", NotFound("gone")))
    (rows,) = await store.ports.fetch(repo.subscription_of_tenant("agt_t", "wh_1"))
    assert rows == []


async def test_the_fan_out_lease_is_held_by_one_owner_until_it_expires(store: Store) -> None:
    await run(store, repo.new_cursor(7))
    with pytest.raises(Conflict):  # one cursor row
        await run(store, repo.new_cursor(7))
    lost = Refused("lost")
    await run(store, repo.take_lease("a", T0, T0 + timedelta(seconds=30), lost))
    await run(store, repo.take_lease("a", T0 + timedelta(seconds=1), T0 + timedelta(seconds=31), lost))  # renewed
    with pytest.raises(Refused):
        await run(store, repo.take_lease("b", T0 + timedelta(seconds=2), T0 + timedelta(seconds=32), lost))
    with pytest.raises(Refused):  # b does not hold it: cannot move the cursor
        await run(store, repo.advance("b", 7, 9, lost))
    await run(store, repo.advance("a", 7, 9, lost))
    with pytest.raises(Refused):  # the cursor is no longer at 7
        await run(store, repo.advance("a", 7, 11, lost))
    await run(store, repo.take_lease("b", T0 + timedelta(seconds=32), T0 + timedelta(seconds=62), lost))  # expired
    ((cursor,),) = await store.ports.fetch(repo.cursor())
    assert cursor[0] == 9 and cursor[1] == "b"


async def test_deliveries_are_owed_once_claimed_once_and_closed_under_their_claim(store: Store) -> None:
    sub = subscription()
    await run(store, repo.insert_subscription(sub))
    await add_events(store, "agt_t", "agent.created", "agent.updated")
    (rows,) = await store.ports.fetch(repo.audit_above(0, 10))
    events = repo.audit_records(rows)
    assert [e.action for e in events] == ["agent.created", "agent.updated"]
    first, second = events[0].id, events[1].id
    await run(store, repo.insert_deliveries([repo.owed(sub, first, "agent.created", T0)]))
    with pytest.raises(Conflict):  # unique per (subscription, event)
        await run(store, repo.insert_deliveries([repo.owed(sub, first, "agent.created", T0)]))
    await run(store, repo.insert_deliveries([repo.owed(sub, second, "agent.updated", T0 + timedelta(seconds=5))]))
    (pairs,) = await store.ports.fetch(repo.owed_between(0, second))
    assert sorted((str(s), int(a)) for s, a in pairs) == [("wh_1", first), ("wh_1", second)]
    (due,) = await store.ports.fetch(repo.due(T0 + timedelta(seconds=1), 10))
    (owed,) = repo.deliveries(due)  # the second is not due yet
    assert (owed.audit_id, owed.status, owed.attempts) == (first, DeliveryStatus.PENDING, 0)
    lease = T0 + timedelta(seconds=61)
    taken = Refused("taken")
    await run(store, repo.claim(owed.id, T0 + timedelta(seconds=1), lease, taken))
    with pytest.raises(Refused):  # claimed: nobody else gets it
        await run(store, repo.claim(owed.id, T0 + timedelta(seconds=2), lease, taken))
    (due,) = await store.ports.fetch(repo.due(T0 + timedelta(seconds=2), 10))
    assert due == []
    with pytest.raises(Refused):  # another claim's lease cannot close it
        await run(
            store,
            repo.close_attempt(
                owed.id, lease + timedelta(seconds=1), DeliveryStatus.DELIVERED, T0, 200, None, T0, taken
            ),
        )
    later = T0 + timedelta(seconds=3)
    await run(
        store,
        repo.close_attempt(owed.id, lease, DeliveryStatus.PENDING, later, 500, "HTTP 500", None, taken),
        repo.insert_attempt(owed.id, 1, T0 + timedelta(seconds=2), 500, "HTTP 500", 12),
    )
    rows, log = await store.ports.fetch(
        repo.delivery_of_tenant("agt_t", owed.id), repo.attempts_between(owed.id, owed.id)
    )
    (closed,) = repo.deliveries(rows)
    assert (closed.status, closed.attempts, closed.last_status_code, closed.next_attempt_at) == (
        DeliveryStatus.PENDING, 1, 500, later,
    )  # fmt: skip
    assert [(a.attempt, a.status_code, a.error, a.duration_ms) for a in repo.attempts(log)[owed.id]] == [
        (1, 500, "HTTP 500", 12)
    ]
    (rows,) = await store.ports.fetch(repo.delivery_of_tenant("agt_u", owed.id))
    assert rows == []  # another tenant's delivery is not found
    # A delivery of a paused subscription waits; deleting the subscription closes what it still owed.
    await run(store, repo.change_subscription(replace(sub, active=False), NotFound("x")))
    (due,) = await store.ports.fetch(repo.due(T0 + timedelta(hours=1), 10))
    assert due == []
    await run(store, *repo.remove_subscription("agt_t", "wh_1", NotFound("x")))
    (rows,) = await store.ports.fetch(repo.delivery_page("agt_t", "wh_1", 2**62, 10))
    assert {(d.status, d.last_error) for d in repo.deliveries(rows)} == {
        (DeliveryStatus.FAILED, "subscription deleted")
    }
    # Sent again on request: pending and due now, unless it is being attempted.
    await run(store, repo.retry("agt_t", "wh_1", owed.id, later, Refused("busy")))
    with pytest.raises(Refused):
        await run(store, repo.retry("agt_u", "wh_1", owed.id, later, Refused("busy")))
    (rows,) = await store.ports.fetch(repo.delivery_of_tenant("agt_t", owed.id))
    assert repo.deliveries(rows)[0].status is DeliveryStatus.PENDING
