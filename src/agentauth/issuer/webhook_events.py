"""The webhook event catalogue: which audit actions are published as which event type, and the message body.

The audit log is written in the same transaction as the change it records, so an audit row exists iff its change
committed; that makes the audit table the outbox a delivery worker tails (nothing added to the issuance path).
The body follows the Standard Webhooks recommended payload ("Payload structure"): ``type``, ``timestamp``,
``data``; the ``webhook-id`` is ``evt_`` + the audit row id, the same for every retry so receivers dedupe.

High-volume events (``token.*``: one per token request) are published only to subscriptions that name them
(``OPT_IN``); ``*`` does not include them. Issuer-wide events (``key.*``: a rotation or a compromised signing key
concerns every tenant's verifiers) are audited with no tenant and published to every tenant's subscriptions that
name them, with only the key ids in their details (``ISSUER_WIDE``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from typing import Any

import orjson

from agentauth.storage.records import AuditEvent, CredentialKind

# audit action -> event type. Every action the code audits is either here or in NOT_PUBLISHED (a test checks).
CATALOGUE: dict[str, str] = {
    "agent.registered": "agent.registered",
    "agent.created": "agent.created",
    "agent.updated": "agent.updated",
    "agent.deactivated": "agent.deactivated",
    "agent.suspended": "agent.suspended",
    "agent.resumed": "agent.resumed",
    "credential.created": "credential.created",
    "credential.rotated": "credential.rotated",
    "credential.revoked": "credential.revoked",
    "delegation.created": "delegation.created",
    "delegation.revoked": "delegation.revoked",
    "policy.created": "policy.created",
    "policy.updated": "policy.updated",
    "policy.deleted": "policy.deleted",
    "signing_key.revoked": "key.revoked",
    "signing_key.rotated": "key.rotated",
    "resource_server.created": "resource_server.created",
    "resource_server.updated": "resource_server.updated",
    "resource_server.deleted": "resource_server.deleted",
    "client.registered": "client.registered",
    "client.disconnected": "client.disconnected",
    "authorization.granted": "authorization.granted",
    "refresh_token.revoked": "token.revoked",
    "refresh_token.reuse_detected": "token.reuse_detected",
    "authorization_code.reuse_detected": "token.reuse_detected",
    "token.issued": "token.issued",
    "token.refreshed": "token.refreshed",
    "token.exchanged": "token.exchanged",
    "token.denied": "token.denied",
    "approval.requested": "approval.requested",
    "approval.approved": "approval.approved",
    "approval.denied": "approval.denied",
    "webhook.created": "webhook.created",
    "webhook.updated": "webhook.updated",
    "webhook.deleted": "webhook.deleted",
    # revocation.py audits a revoked credential as f"{kind}_credential.revoked"
    **{f"{kind}_credential.revoked": "credential.revoked" for kind in CredentialKind},
}
OPT_IN = frozenset({"token.issued", "token.refreshed", "token.exchanged", "token.denied"})
# Audited but not published: owner sessions are the console's business, not the tenant's integrations';
# delegation.received duplicates delegation.created on the receiving side; tenant.* happen before any subscription.
NOT_PUBLISHED = frozenset(
    {"owner.login", "owner.login_failed", "owner.logout", "owner.signup", "delegation.received"}
    | {"tenant.created", "tenant.claimed"}
)
EVENT_TYPES = frozenset(CATALOGUE.values())
# Audited with tenant_id None and published to every tenant; of their details only these (no cross-tenant counts).
ISSUER_WIDE = frozenset({"key.rotated", "key.revoked"})
_ISSUER_WIDE_DETAILS = ("active_kid", "previous_kid")


def event_type(action: str) -> str | None:
    return CATALOGUE.get(action)


FAMILIES = frozenset(f"{kind.split('.')[0]}.*" for kind in EVENT_TYPES)


def reaches(subscriber_tenant: str, event_tenant: str | None, event: str) -> bool:
    """Whether an event of ``event_tenant`` (None: issuer-wide) may reach a subscription of ``subscriber_tenant``."""
    return event_tenant == subscriber_tenant or (event_tenant is None and event in ISSUER_WIDE)


def subscribed(event: str, wanted: frozenset[str]) -> bool:
    """Whether a subscription to ``wanted`` gets ``event``: ``wanted`` holds event types, families (``agent.*``:
    every ``agent.`` event, opt-in ones included once named so) or ``*`` (every one but the opt-in ones)."""
    family = f"{event.split('.', maxsplit=1)[0]}.*"
    return event in wanted or family in wanted or ("*" in wanted and event not in OPT_IN)


def unknown_events(wanted: Iterable[str]) -> list[str]:
    """The names in ``wanted`` that are neither ``*``, an event type nor a family of them."""
    return sorted({w for w in wanted if w != "*" and w not in EVENT_TYPES and w not in FAMILIES})


def message_id(event: AuditEvent) -> str:
    return f"evt_{event.id}"


def message_body(event: AuditEvent) -> bytes | None:
    """The JSON body published for ``event``, or None when its action is not in the catalogue."""
    kind = event_type(event.action)
    if kind is None:
        return None
    data: dict[str, Any] = {
        "tenant_id": event.tenant_id,
        "actor": event.actor,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "outcome": str(event.outcome),
        "reason": event.reason,
        "request_id": event.request_id,
        "details": event.details or {},
    }
    if kind in ISSUER_WIDE:
        data["details"] = {k: v for k, v in data["details"].items() if k in _ISSUER_WIDE_DETAILS}
    stamp = event.created_at if event.created_at.tzinfo else event.created_at.replace(tzinfo=UTC)
    return orjson.dumps({"type": kind, "timestamp": stamp.isoformat(), "data": data})
