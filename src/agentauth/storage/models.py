"""Typed ORM models. Rows never leave ``storage/``: repositories return plain records.

Uniqueness that the service relies on is declared here, so the database - not Python - guarantees it:
one status index per list (``uq_credential_status``), one use of a jwt-bearer ``jti``, one API-key prefix.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores naive text; we never let a naive value out)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC) if dialect.name != "sqlite" else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012
        dict[str, Any]: JSON, list[str]: JSON, list[dict[str, str]]: JSON, datetime: UTCDateTime(),
    }  # fmt: skip


class SigningKeyRow(Base):
    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]]
    sealed_private_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
    remove_after: Mapped[datetime | None]


class AgentRow(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id"), index=True)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    # Materialized path "/root/child/.../self/": subtree membership is one indexed prefix comparison.
    path: Mapped[str] = mapped_column(String(1000), index=True)
    did: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    agent_type: Mapped[str] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    trust_level: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default="active")
    scopes: Mapped[list[str]]
    identity_credential_id: Mapped[str | None] = mapped_column(String(60))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deactivated_at: Mapped[datetime | None]
    # ``DPoPRequirement``; never below the parent's (``agent_statements.SET_DPOP``, ``RAISE_SUBTREE_DPOP``).
    dpop_requirement: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    # CIBA section 4 ``backchannel_client_notification_endpoint``: set, the agent is a ping-mode client.
    notification_endpoint: Mapped[str | None] = mapped_column(String(2000))


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    scopes: Mapped[list[str]]
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    replaced_by: Mapped[str | None] = mapped_column(String(40))


class RefreshTokenRow(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(40), index=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(40))
    api_key_id: Mapped[str | None] = mapped_column(String(40), index=True)
    client_id: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[list[str]]
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | used | revoked
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    # RFC 8707: the resource identifiers the family's grant is for (NULL: AgentAuth's own API); a refresh keeps
    # them or narrows them, never widens (``issuer/audience.py``).
    resources: Mapped[list[str] | None]
    # A family started by the authorization code grant (issue 14 item 4): the token's ``sub`` when it is not the
    # agent's DID (the owner who consented), and whether the token names the agent as its actor (``act``).
    subject: Mapped[str | None] = mapped_column(String(100))
    agent_acts: Mapped[bool | None]
    # RFC 9449 section 5: a family issued with a DPoP proof is bound to that key (its RFC 7638 thumbprint); each
    # refresh needs a proof by the same key (``grants/refresh_token.py``).
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))


class StatusListRow(Base):
    __tablename__ = "status_lists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    purpose: Mapped[str] = mapped_column(String(16), default="revocation")
    size: Mapped[int] = mapped_column(Integer)
    allocated: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped in the same transaction as any bit change; the published credential is rebuilt when it moves.
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | full | cleared
    created_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
    published_version: Mapped[int | None] = mapped_column(BigInteger)
    published_jwt: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None]
    published_bits: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The list's twin of purpose ``suspension`` (same indexes, ``/status-lists/{id}/suspension``): its own
    # version, bumped when a suspension bit changes, and its own published credential.
    suspension_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    suspension_published_version: Mapped[int | None] = mapped_column(BigInteger)
    suspension_published_jwt: Mapped[str | None] = mapped_column(Text)
    suspension_published_at: Mapped[datetime | None]


_REVOKED = text("revoked_at IS NOT NULL")
_DELEGATED = text("delegation_id IS NOT NULL")
_SUSPENDED = text("suspended_at IS NOT NULL")


class CredentialRow(Base):
    """Every credential we sign (access token, identity, delegation), durably recorded with its status slot."""

    __tablename__ = "credentials"
    __table_args__ = (
        UniqueConstraint("status_list_id", "status_index", name="uq_credential_status"),
        Index("ix_credentials_family", "refresh_family_id"),
        Index("ix_credentials_api_key", "api_key_id"),
        # Partial: only revoked / delegated rows are ever looked up by these, and most rows are neither.
        Index("ix_credentials_revoked", "status_list_id", sqlite_where=_REVOKED, postgresql_where=_REVOKED),
        Index("ix_credentials_delegation_id", "delegation_id", sqlite_where=_DELEGATED, postgresql_where=_DELEGATED),
        Index("ix_credentials_suspended", "status_list_id", sqlite_where=_SUSPENDED, postgresql_where=_SUSPENDED),
    )

    jti: Mapped[str] = mapped_column(String(60), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # access | identity | delegation
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(40))
    client_id: Mapped[str | None] = mapped_column(String(100))
    api_key_id: Mapped[str | None] = mapped_column(String(40))
    refresh_family_id: Mapped[str | None] = mapped_column(String(40))
    delegation_id: Mapped[str | None] = mapped_column(String(60))
    scopes: Mapped[list[str]]
    status_list_id: Mapped[int] = mapped_column(ForeignKey("status_lists.id"))
    status_index: Mapped[int] = mapped_column(Integer)
    kid: Mapped[str] = mapped_column(String(200), index=True)
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # Set while its agent (or a party of its delegation) is suspended: its bit in the suspension list is set.
    suspended_at: Mapped[datetime | None]


class StatusBlockRow(Base):
    """A block of status indexes reserved by one process; the primary key makes the reservation exclusive."""

    __tablename__ = "status_blocks"

    list_id: Mapped[int] = mapped_column(ForeignKey("status_lists.id"), primary_key=True)
    block: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    reserved_at: Mapped[datetime]


class DelegationRow(Base):
    """One signed hop of authority. ``path`` ("/root/.../self/") makes "everything below" one prefix query."""

    __tablename__ = "delegations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    delegator_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    delegate_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("delegations.id"), index=True)
    path: Mapped[str] = mapped_column(String(1000), index=True)
    depth: Mapped[int] = mapped_column(Integer)  # 1 for a root grant
    scopes: Mapped[list[str]]
    remaining_depth: Mapped[int] = mapped_column(Integer)
    credential_jti: Mapped[str] = mapped_column(String(60), unique=True)
    credential_jwt: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class PolicyRow(Base):
    __tablename__ = "policies"
    __table_args__ = (Index("ix_policies_tenant_priority", "tenant_id", "priority"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    effect: Mapped[str] = mapped_column(String(20))  # allow | deny | require_approval
    subjects: Mapped[dict[str, Any]]
    actions: Mapped[list[str]]
    resources: Mapped[list[str]]
    conditions: Mapped[dict[str, Any]]
    priority: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PolicyVersionRow(Base):
    """Bumped with every policy change of a tenant, so each process knows when its compiled set is stale."""

    __tablename__ = "policy_versions"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class UsedAssertionRow(Base):
    """RFC 7523 section 3: jwt-bearer assertion ids, kept until the assertion expires (replay protection)."""

    __tablename__ = "used_assertions"

    issuer: Mapped[str] = mapped_column(String(100), primary_key=True)
    jti: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class AuditEventRow(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_tenant_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40))
    actor: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(60))
    target_type: Mapped[str | None] = mapped_column(String(30))
    target_id: Mapped[str | None] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(16))  # success | failure
    reason: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(index=True)
    details: Mapped[dict[str, Any] | None]


class ResourceServerRow(Base):
    """A resource server (an API, MCP server or CLI) a tenant registered: its RFC 8707 identifier, the scopes it
    defines and who may obtain tokens for it (``issuer/resource_servers.py``)."""

    __tablename__ = "resource_servers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    # Unique across tenants: a token's ``aud`` must name one server.
    identifier: Mapped[str] = mapped_column(String(500), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(8))  # rest | mcp | cli
    scopes: Mapped[list[dict[str, str]]]  # [{"name": ..., "description": ...}]
    access: Mapped[str] = mapped_column(String(16))  # own_tenant | any_agent | tenants
    allowed_tenants: Mapped[list[str]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class OAuthClientRow(Base):
    """RFC 7591 dynamically registered clients. A confidential client's secret is kept only as its keyed hash
    (``issuer/secrets.py``), like API keys; ``document`` is the registered metadata the registration echoed."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    client_name: Mapped[str | None] = mapped_column(String(200))
    logo_uri: Mapped[str | None] = mapped_column(Text)
    redirect_uris: Mapped[list[str]]
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(40))
    grant_types: Mapped[list[str]]
    scope: Mapped[str | None] = mapped_column(Text)
    document: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class AuthorizationCodeRow(Base):
    """RFC 6749 section 4.1.2: an authorization code, kept as its keyed hash until redeemed once or expired.
    ``family_id``: the refresh family its redemption starts, revoked if the code is presented again."""

    __tablename__ = "authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(Text)
    redirect_uri_given: Mapped[bool]
    code_challenge: Mapped[str] = mapped_column(String(128))
    owner_id: Mapped[str] = mapped_column(String(100))
    agent_id: Mapped[str] = mapped_column(String(40))
    agent_acts: Mapped[bool]
    tenant_id: Mapped[str] = mapped_column(String(40))
    scopes: Mapped[list[str]]
    resources: Mapped[list[str] | None]
    family_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
    # RFC 9449 section 10: the thumbprint the authorization request's ``dpop_jkt`` bound the code to (NULL: none).
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))


class ConsentRow(Base):
    """What an owner let a client do as one agent (or as the owner, ``agent_id`` = the tenant's root): the union
    of the scopes consented so far, per resource set (step-up adds to it)."""

    __tablename__ = "consents"

    owner_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(500), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agent_acts: Mapped[bool] = mapped_column(primary_key=True)
    scopes: Mapped[list[str]]
    updated_at: Mapped[datetime]


class OwnerRow(Base):
    """A person who owns tenants (issue 14 item 4): an email and an argon2id password hash (``issuer/owners.py``)."""

    __tablename__ = "owners"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # lower-case
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class OwnerSessionRow(Base):
    """A logged-in browser: the keyed hash of its session cookie, its CSRF token, idle and absolute expiry."""

    __tablename__ = "owner_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class OwnerTenantRow(Base):
    """Which tenants (root agents) an owner owns."""

    __tablename__ = "owner_tenants"

    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)
    created_at: Mapped[datetime]


class LoginFailureRow(Base):
    """A failed login, by email and by IP: the throttle counts them in a window, in the database so that it holds
    across replicas."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(400))
    at: Mapped[datetime]


class WebhookSubscriptionRow(Base):
    """A tenant's webhook (issue 16 item 5): where its events go and which ones. The signing secret is sealed under
    the KEK, bound to the subscription id (``issuer/webhook_delivery.py``); ``from_audit_id``: the newest audit
    event when it was made - only later events are delivered to it."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]]
    description: Mapped[str | None] = mapped_column(String(200))
    secret_sealed: Mapped[str] = mapped_column(Text)
    active: Mapped[bool]
    from_audit_id: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class WebhookDeliveryRow(Base):
    """One event owed to one subscription: the durable outbox row the delivery worker leases, retries and closes.
    Unique per (subscription, audit event), so fanning an event out again (after a restart) adds nothing."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "audit_id", name="uq_webhook_delivery"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_tenant", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[str] = mapped_column(String(40))
    audit_id: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(12))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(SmallInteger)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class WebhookAttemptRow(Base):
    """The delivery log: one row per attempt of a delivery, with what the receiver answered."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(BigInteger, index=True)
    attempt: Mapped[int] = mapped_column(SmallInteger)
    at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200))
    duration_ms: Mapped[int] = mapped_column(Integer)


class WebhookCursorRow(Base):
    """How far the fan-out has read the audit log (the outbox), and which replica holds the fan-out lease."""

    __tablename__ = "webhook_cursor"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    audit_id: Mapped[int] = mapped_column(BigInteger)
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[datetime | None]


class ApprovalRequestRow(Base):
    """A request for a person's approval of one exact action (issue 17 item 2: OpenID CIBA Core with RFC 9396
    ``authorization_details``). The ``auth_req_id`` the agent polls with is kept as its keyed hash; ``id`` names
    the request to owners (console, webhooks). ``status``: pending, approved, denied, or issued (its one token)."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        Index("ix_approval_requests_tenant", "tenant_id", "status", "created_at"),
        Index("ix_approval_requests_ping", "ping_state", "ping_at"),
        Index("ix_approval_requests_email", "email_state", "email_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(40))
    agent_id: Mapped[str] = mapped_column(String(40))
    owner_id: Mapped[str] = mapped_column(String(40))
    scopes: Mapped[list[str]]
    authorization_details: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    binding_message: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(12))
    interval_seconds: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    polled_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(100))
    token_jti: Mapped[str | None] = mapped_column(String(64))
    # Ping mode (CIBA section 10.2): the auth_req_id and client_notification_token sealed under the KEK; the ping
    # is ``waiting`` (undecided), ``due`` at ``ping_at`` (decided or expired; also a claimed attempt's lease),
    # ``sent`` or ``failed`` (``issuer/approval_pings.py``). All None for a poll-mode request.
    ping_sealed: Mapped[str | None] = mapped_column(Text)
    ping_state: Mapped[str | None] = mapped_column(String(8))
    ping_attempts: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    ping_at: Mapped[datetime | None]
    # The agent asked for a single-use approval: its token carries ``single_use`` (spent at its first use).
    single_use: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The owner's email about the request (``issuer/approval_emails.py``): None when none is owed (no SMTP
    # configured), else due | sent | failed | moot (decided first), attempts so far, and when it is next due.
    email_state: Mapped[str | None] = mapped_column(String(8))
    email_attempts: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    email_at: Mapped[datetime | None]
