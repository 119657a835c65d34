"""The webhook worker of every serving process (issue 16 item 5): fans audit events out into the outbox and
delivers what is due, on the general ports.

Fan-out, one replica at a time (the cursor's lease): read the audit events above the cursor, insert one delivery
per (subscription, event) owed - skipping those already in the outbox - and move the cursor, in one plan that
holds only while this process holds the lease. An event is in the audit log iff its change committed, so an
acknowledged change is owed even if the process dies right after (kill -9): the next fan-out finds it.

On PostgreSQL audit ids come from a sequence, so a transaction may commit id 100 after id 101 is visible. The
cursor therefore moves only over ids seen or missing for longer than ``GAP_SECONDS`` (a rolled-back insert
leaves a hole for good); events above a hole are fanned out at once, and the outbox's unique (subscription,
event) keeps a re-read from owing anything twice.

Delivery, on any replica: claim up to ``CLAIM_BATCH`` due deliveries (each one a lease of ``CLAIM_SECONDS``),
POST them concurrently (``webhook_delivery.deliver``), and record each attempt with its outcome - delivered, due
again after ``retry_delay``, or failed after ``MAX_ATTEMPTS`` - in one plan under that claim. A process killed
mid-attempt leaves a claim that expires; the delivery is then attempted again (at least once, same
``webhook-id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from agentauth.errors import AgentAuthError, Conflict
from agentauth.issuer.approval_emails import ApprovalEmails
from agentauth.issuer.approval_pings import ApprovalPings
from agentauth.issuer.cimd import Resolver, system_resolver
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.webhook_delivery import deliver, delivery_client, open_secret, retry_delay
from agentauth.issuer.webhook_events import event_type, message_body, reaches, subscribed
from agentauth.keys import KeyEncryptionKey
from agentauth.storage import webhooks as repo
from agentauth.storage.ports import Execute, Insert, Require, WritePlan
from agentauth.storage.records import DeliveryStatus, WebhookDelivery, WebhookSubscription

log = logging.getLogger("agentauth.webhooks")

FAN_OUT_BATCH = 1_000
CLAIM_BATCH = 20
CLAIM_SECONDS = 60.0
LEASE_SECONDS = 30.0
GAP_SECONDS = 10.0


class _Lost(AgentAuthError):
    """A lease or claim this process relied on is no longer its own (another replica took over)."""

    error = "lease_lost"
    status_code = 409


@dataclass(frozen=True)
class WorkerSettings:
    allow_loopback: bool
    poll_seconds: float
    retry_first_seconds: float
    ca_bundle: str | None = None


class WebhookWorker:
    def __init__(
        self,
        core: IssuerCore,
        kek: KeyEncryptionKey,
        settings: WorkerSettings,
        *,
        resolver: Resolver = system_resolver,
        http: httpx.AsyncClient | None = None,
        pings: ApprovalPings | None = None,
        emails: ApprovalEmails | None = None,
    ) -> None:
        self.core = core
        self.pings = pings
        self.emails = emails
        self.kek = kek
        self.settings = settings
        self.resolver = resolver
        self.owner = f"{os.getpid()}:{uuid.uuid4().hex[:16]}"
        self._http = http
        self._gaps: dict[int, float] = {}  # first missing audit id of a hole -> when it was first seen (monotonic)
        # Told of every attempt recorded: its outcome (delivered, retrying, failed) and seconds (``api/metrics.py``).
        self.observe: Callable[[str, float], None] | None = None

    async def run(self) -> None:
        """Fan out and deliver every ``poll_seconds`` - webhooks, then CIBA pings and approval emails -, for the life
        of the process."""
        http = self._http or delivery_client(verify=self.settings.ca_bundle or True)
        try:
            while True:
                try:
                    await self.fan_out()
                    await self.deliver_due()
                    if self.pings is not None:
                        await self.pings.send_due(http)
                    if self.emails is not None:
                        await self.emails.send_due()
                except Exception:
                    log.exception("webhook worker pass failed; retrying in %ss", self.settings.poll_seconds)
                await asyncio.sleep(self.settings.poll_seconds)
        finally:
            if self._http is None:
                await http.aclose()

    async def forget_settled(self, before: datetime, batch: int) -> int:
        """Forget deliveries settled (delivered or failed) before ``before`` and their attempts, in bounded batches
        (no long write lock after a backlog); returns how many."""
        forgotten = 0
        while True:
            (rows,) = await self.core.ports.reads.fetch(repo.settled_before(before, batch))
            if not rows:
                return forgotten
            await self.core.ports.writes.run(WritePlan(repo.forget_settled(before, max(int(r[0]) for r in rows))))
            forgotten += len(rows)
            if len(rows) < batch:
                return forgotten

    # -- fan-out --

    async def fan_out(self) -> int:
        """Owe the events above the cursor to their subscriptions; returns how many deliveries were added."""
        added = 0
        while True:
            step, more = await self._fan_out_once()
            added += step
            if not more:
                return added

    async def _fan_out_once(self) -> tuple[int, bool]:
        reads, writes = self.core.ports.reads, self.core.ports.writes
        now = self.core.clock()
        cursor_rows, active_rows, newest = await reads.fetch(
            repo.cursor(), repo.active_subscriptions(), repo.newest_audit_id()
        )
        active = repo.subscriptions(active_rows)
        if not cursor_rows:
            start = min((s.from_audit_id for s in active), default=int(newest[0][0]))
            with contextlib.suppress(Conflict):  # another replica made it
                await writes.run(WritePlan((repo.new_cursor(start),)))
            return 0, True
        at = int(cursor_rows[0][0])
        lease = repo.take_lease(self.owner, now, now + timedelta(seconds=LEASE_SECONDS), _Lost())
        if not active:  # nothing is owed: skip to the newest event
            target = max(at, int(newest[0][0]))
            if target != at:
                await self._write_or_lose((lease, repo.advance(self.owner, at, target, _Lost())))
            return 0, False
        start = max(at, min(s.from_audit_id for s in active))
        (rows,) = await reads.fetch(repo.audit_above(start, FAN_OUT_BATCH))
        if not rows:
            if start != at:
                await self._write_or_lose((lease, repo.advance(self.owner, at, start, _Lost())))
            return 0, False
        events = repo.audit_records(rows)
        settled = self._settled(start, [e.id for e in events])
        (present,) = await reads.fetch(repo.owed_between(start, events[-1].id))
        known = {(str(sub), int(audit_id)) for sub, audit_id in present}
        owed = [
            repo.owed(sub, event.id, kind, now)
            for event in events
            if (kind := event_type(event.action)) is not None
            for sub in _subscribers(active, event.tenant_id, event.id, kind)
            if (sub.id, event.id) not in known
        ]
        steps: list[Insert | Require | Execute] = [lease]
        if settled != at:
            steps.append(repo.advance(self.owner, at, settled, _Lost()))
        if owed:
            steps.append(repo.insert_deliveries(owed))
        if len(steps) == 1:
            return 0, False
        if not await self._write_or_lose(tuple(steps)):
            return 0, False
        return len(owed), len(rows) == FAN_OUT_BATCH and settled > at

    def _settled(self, start: int, ids: Sequence[int]) -> int:
        """The highest id up to which every audit id above ``start`` has been seen or stayed missing too long."""
        clock = time.monotonic()
        settled = start
        for audit_id in ids:
            if audit_id > settled + 1:
                hole = settled + 1
                first_seen = self._gaps.setdefault(hole, clock)
                if clock - first_seen < GAP_SECONDS:
                    break
            settled = audit_id
        self._gaps = {hole: seen for hole, seen in self._gaps.items() if hole > settled}
        return settled

    async def _write_or_lose(self, steps: tuple[Insert | Require | Execute, ...]) -> bool:
        try:
            await self.core.ports.writes.run(WritePlan(steps))
        except _Lost:
            return False  # another replica holds the fan-out now
        return True

    # -- delivery --

    async def deliver_due(self) -> int:
        """Attempt every due delivery this process could claim; returns how many were attempted."""
        now = self.core.clock()
        (rows,) = await self.core.ports.reads.fetch(repo.due(now, CLAIM_BATCH))
        due = repo.deliveries(rows)
        if not due:
            return 0
        until = now + timedelta(seconds=CLAIM_SECONDS)
        claims = await asyncio.gather(
            *(self.core.ports.writes.run(WritePlan((repo.claim(d.id, now, until, _Lost()),))) for d in due),
            return_exceptions=True,
        )
        mine = [d for d, outcome in zip(due, claims, strict=True) if outcome is None]
        for d, outcome in zip(due, claims, strict=True):
            if outcome is not None and not isinstance(outcome, _Lost):
                log.warning("could not claim webhook delivery %s: %r", d.id, outcome)
        http = self._http or delivery_client(verify=self.settings.ca_bundle or True)
        try:
            await asyncio.gather(*(self._attempt(http, d, until) for d in mine))
        finally:
            if self._http is None:
                await http.aclose()
        return len(mine)

    async def _attempt(self, http: httpx.AsyncClient, d: WebhookDelivery, lease: datetime) -> None:
        sub_rows, event_rows = await self.core.ports.reads.fetch(
            repo.subscription_by_id(d.subscription_id), repo.audit_event(d.audit_id)
        )
        subs = repo.subscriptions(sub_rows)
        body = None
        if event_rows:
            body = message_body(repo.audit_records(event_rows)[0])
        if not subs or not subs[0].active or body is None:
            return  # deleted (its owed rows are closed), paused, or nothing to send: the claim lapses
        sub = subs[0]
        secret = open_secret(self.kek, sub.id, sub.secret_sealed)
        attempt = await deliver(
            http, sub.url, secret, f"evt_{d.audit_id}", body,
            allow_loopback=self.settings.allow_loopback, resolver=self.resolver,
        )  # fmt: skip
        number = d.attempts + 1
        now = self.core.clock()
        if attempt.ok:
            status, next_at, delivered = DeliveryStatus.DELIVERED, now, now
        else:
            delay = retry_delay(number, first=self.settings.retry_first_seconds)
            status = DeliveryStatus.FAILED if delay is None else DeliveryStatus.PENDING
            next_at, delivered = now + timedelta(seconds=delay or 0.0), None
        error = attempt.error[:200] if attempt.error else None
        plan = WritePlan((
            repo.close_attempt(d.id, lease, status, next_at, attempt.status_code, error, delivered, _Lost()),
            repo.insert_attempt(d.id, number, now, attempt.status_code, error, attempt.duration_ms),
        ))  # fmt: skip
        try:
            await self.core.ports.writes.run(plan)
        except _Lost:
            log.warning("webhook delivery %s: claim expired before its attempt was recorded", d.id)
            return
        if self.observe is not None:
            outcome = "retrying" if status is DeliveryStatus.PENDING else str(status.value)
            self.observe(outcome, attempt.duration_ms / 1000)


def _subscribers(
    active: Sequence[WebhookSubscription], tenant_id: str | None, event_id: int, kind: str
) -> list[WebhookSubscription]:
    return [
        s
        for s in active
        if reaches(s.tenant_id, tenant_id, kind)
        and event_id > s.from_audit_id
        and subscribed(kind, frozenset(s.events))
    ]
