"""A tenant's webhooks (issue 16 item 5): subscriptions to the event catalogue (``webhook_events``), their
signing secrets (shown once, sealed under the KEK) and the delivery log. The worker that delivers is
``webhook_worker``; the attempt itself is ``webhook_delivery``.

Changes are the tenant root's (``root_only`` operations); reading needs ``webhooks.read``. A URL is checked when
it is given - https, a host that resolves only to public addresses (the SSRF guards of client metadata
documents) - and again at every delivery, since DNS may change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from agentauth.errors import Conflict, InvalidRequest, NotFound
from agentauth.issuer import audit
from agentauth.issuer.authorization import Authorizer, use_case
from agentauth.issuer.cimd import Resolver, system_resolver
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore, new_id
from agentauth.issuer.webhook_delivery import (
    TargetRefused,
    check_target_url,
    checked_address,
    new_secret,
    seal_secret,
)
from agentauth.issuer.webhook_events import unknown_events
from agentauth.issuer.webhook_schemas import (
    WebhookAttemptOut,
    WebhookChange,
    WebhookCreated,
    WebhookDeliveryOut,
    WebhookDeliveryPage,
    WebhookIn,
    WebhookOut,
    WebhookPage,
)
from agentauth.keys import KeyEncryptionKey
from agentauth.storage import webhooks as repo
from agentauth.storage.models import AuditEventRow
from agentauth.storage.ports import Insert, WritePlan
from agentauth.storage.records import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookSubscription

MAX_WEBHOOKS_PER_TENANT = 20
NO_SUCH_WEBHOOK = "no such webhook in your tenant"
NO_SUCH_DELIVERY = "no delivery with this id for this webhook"
_NEWEST = 2**62  # ``before`` of the first page of deliveries


def webhook_out(sub: WebhookSubscription) -> WebhookOut:
    return WebhookOut(
        id=sub.id, tenant_id=sub.tenant_id, url=sub.url, events=list(sub.events), description=sub.description,
        active=sub.active, created_at=sub.created_at,
    )  # fmt: skip


def delivery_out(d: WebhookDelivery, log: list[WebhookAttempt]) -> WebhookDeliveryOut:
    return WebhookDeliveryOut(
        id=d.id, message_id=f"evt_{d.audit_id}", event_type=d.event_type, status=d.status.value,
        attempts=d.attempts, next_attempt_at=d.next_attempt_at if d.status is DeliveryStatus.PENDING else None,
        last_status_code=d.last_status_code, last_error=d.last_error, created_at=d.created_at,
        delivered_at=d.delivered_at,
        log=[WebhookAttemptOut(attempt=a.attempt, at=a.at, status_code=a.status_code, error=a.error,
                               duration_ms=a.duration_ms) for a in log],
    )  # fmt: skip


class WebhookService:
    def __init__(
        self,
        core: IssuerCore,
        authz: Authorizer,
        kek: KeyEncryptionKey,
        *,
        allow_loopback: bool,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.core = core
        self.authz = authz
        self.kek = kek
        self.allow_loopback = allow_loopback
        self.resolver = resolver

    @use_case("webhooks.create")
    async def create(self, principal: Principal, body: WebhookIn, ctx: RequestContext) -> WebhookCreated:
        url = await self._check_url(body.url)
        events = self._check_events(body.events)
        now = self.core.clock()
        hook_id = new_id("wh")
        secret = new_secret()
        (newest,) = await self.core.ports.reads.fetch(repo.newest_audit_id())
        sub = WebhookSubscription(
            id=hook_id, tenant_id=principal.tenant_id, url=url, events=events, description=body.description,
            secret_sealed=seal_secret(self.kek, hook_id, secret), active=True, from_audit_id=int(newest[0][0]),
            created_by=principal.acting.id, created_at=now,
        )  # fmt: skip
        full = Conflict(f"a tenant has at most {MAX_WEBHOOKS_PER_TENANT} webhooks")
        event = self._event(principal, ctx, now, "webhook.created", sub)
        await self.core.ports.writes.run(
            WritePlan((
                repo.below_limit(sub.tenant_id, MAX_WEBHOOKS_PER_TENANT, full),
                repo.insert_subscription(sub),
                Insert.of(AuditEventRow.__table__, event),
            ))
        )  # fmt: skip
        return WebhookCreated(**webhook_out(sub).model_dump(), secret=secret)

    @use_case("webhooks.list")
    async def list(self, principal: Principal, ctx: RequestContext, limit: int = 50, offset: int = 0) -> WebhookPage:
        count, rows = await self.core.ports.reads.fetch(*repo.subscription_page(principal.tenant_id, limit, offset))
        return WebhookPage(items=[webhook_out(s) for s in repo.subscriptions(rows)], total=int(count[0][0]))

    @use_case("webhooks.get")
    async def get(self, principal: Principal, webhook_id: str, ctx: RequestContext) -> WebhookOut:
        return webhook_out(await self._find(principal, webhook_id))

    @use_case("webhooks.update")
    async def update(
        self, principal: Principal, webhook_id: str, body: WebhookChange, ctx: RequestContext
    ) -> WebhookOut:
        old = await self._find(principal, webhook_id)
        url = old.url if body.url is None else await self._check_url(body.url)
        events = old.events if body.events is None else self._check_events(body.events)
        description = old.description if "description" not in body.model_fields_set else body.description
        active = old.active if body.active is None else body.active
        sub = WebhookSubscription(
            id=old.id, tenant_id=old.tenant_id, url=url, events=events, description=description,
            secret_sealed=old.secret_sealed, active=active, from_audit_id=old.from_audit_id,
            created_by=old.created_by, created_at=old.created_at,
        )  # fmt: skip
        event = self._event(principal, ctx, self.core.clock(), "webhook.updated", sub)
        await self.core.ports.writes.run(
            WritePlan((
                repo.change_subscription(sub, NotFound(NO_SUCH_WEBHOOK)),
                Insert.of(AuditEventRow.__table__, event),
            ))
        )  # fmt: skip
        return webhook_out(sub)

    @use_case("webhooks.delete")
    async def delete(self, principal: Principal, webhook_id: str, ctx: RequestContext) -> None:
        """Deliveries it still owed are closed as failed ("subscription deleted"); its log stays readable."""
        old = await self._find(principal, webhook_id)
        event = self._event(principal, ctx, self.core.clock(), "webhook.deleted", old)
        removed = repo.remove_subscription(old.tenant_id, old.id, NotFound(NO_SUCH_WEBHOOK))
        await self.core.ports.writes.run(WritePlan((*removed, Insert.of(AuditEventRow.__table__, event))))

    @use_case("webhooks.deliveries")
    async def deliveries(
        self, principal: Principal, webhook_id: str, ctx: RequestContext, limit: int = 50, before: int | None = None
    ) -> WebhookDeliveryPage:
        """The webhook's deliveries, newest first, each with its attempt log (keyset pages: ``before``)."""
        (rows,) = await self.core.ports.reads.fetch(
            repo.delivery_page(principal.tenant_id, webhook_id, before or _NEWEST, limit)
        )
        page = repo.deliveries(rows)
        if not page:
            await self._find(principal, webhook_id)  # an empty log, or no such webhook
            return WebhookDeliveryPage(items=[], next_before=None)
        (log_rows,) = await self.core.ports.reads.fetch(repo.attempts_between(page[-1].id, page[0].id))
        log = repo.attempts(log_rows)
        items = [delivery_out(d, log.get(d.id, [])) for d in page]
        return WebhookDeliveryPage(items=items, next_before=page[-1].id if len(page) == limit else None)

    @use_case("webhooks.redeliver")
    async def redeliver(
        self, principal: Principal, webhook_id: str, delivery_id: int, ctx: RequestContext
    ) -> WebhookDeliveryOut:
        """Send a delivery again, due now - a failed one, or a delivered one the receiver lost - with the same
        ``webhook-id``, so receivers still dedupe; not while it is being attempted."""
        await self._find(principal, webhook_id)
        busy = Conflict("this delivery is being attempted right now; try again in a minute")
        await self._delivery(principal, webhook_id, delivery_id)
        await self.core.ports.writes.run(
            WritePlan((repo.retry(principal.tenant_id, webhook_id, delivery_id, self.core.clock(), busy),))
        )
        return await self._delivery(principal, webhook_id, delivery_id)

    async def _delivery(self, principal: Principal, webhook_id: str, delivery_id: int) -> WebhookDeliveryOut:
        rows, log_rows = await self.core.ports.reads.fetch(
            repo.delivery_of_tenant(principal.tenant_id, delivery_id), repo.attempts_between(delivery_id, delivery_id)
        )
        found = repo.deliveries(rows)
        if not found or found[0].subscription_id != webhook_id:
            raise NotFound(NO_SUCH_DELIVERY)
        return delivery_out(found[0], repo.attempts(log_rows).get(delivery_id, []))

    async def _find(self, principal: Principal, webhook_id: str) -> WebhookSubscription:
        (rows,) = await self.core.ports.reads.fetch(repo.subscription_of_tenant(principal.tenant_id, webhook_id))
        if not rows:
            raise NotFound(NO_SUCH_WEBHOOK)
        return repo.subscriptions(rows)[0]

    async def _check_url(self, url: str) -> str:
        try:
            parts = check_target_url(url, allow_loopback=self.allow_loopback)
            await checked_address(parts, allow_loopback=self.allow_loopback, resolver=self.resolver)
        except TargetRefused as exc:
            raise InvalidRequest(f"url: {exc}") from None
        return url

    @staticmethod
    def _check_events(events: Sequence[str]) -> tuple[str, ...]:
        unknown = unknown_events(events)
        if unknown:
            raise InvalidRequest(
                f"events: unknown event type(s) {', '.join(unknown)}; GET the catalogue in the API docs or use *"
            )
        return tuple(dict.fromkeys(events))

    @staticmethod
    def _event(
        principal: Principal, ctx: RequestContext, now: datetime, action: str, sub: WebhookSubscription
    ) -> dict[str, Any]:
        return audit.event(
            ctx, now, action=action, tenant_id=principal.tenant_id, actor=principal.acting.id,
            target_type="webhook", target_id=sub.id,
            details={"host": urlsplit(sub.url).hostname, "events": list(sub.events), "active": sub.active},
        )  # fmt: skip
