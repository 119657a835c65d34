"""Domain records and their rules, each defined once (issue 13 item 2).

Repositories and the storage ports hand these plain records to the service layer (ORM rows stay inside
``storage/``). A rule about a record - is this API key usable, is this delegation live - is a method here, used by
every path that needs it (the ORM repositories, the one-hop SQLite path, the use cases), so the copies cannot drift.
Statuses are ``StrEnum``s: a member *is* its string, so the database keeps exactly the values it always had and
records compare equal whichever path read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum


class AgentStatus(StrEnum):
    """``suspended``: stopped reversibly (the kill switch's suspend): it acts as a deactivated agent does - not at
    all - but keeps its keys, refresh tokens and delegations, and its credentials' suspension bits are set, so
    resuming it restores all of them. ``deactivated`` is for good."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"


class DPoPRequirement(IntEnum):
    """What an agent's tokens must be bound to (RFC 9449, issue 15), weakest first: nothing (bearer tokens may be
    issued), a DPoP key, the agent's own did:key. Ordered, so a subtree's floor is one comparison in SQL."""

    NONE = 0
    REQUIRED = 1
    AGENT_KEY = 2


class ApiKeyStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class RefreshTokenStatus(StrEnum):
    """``used``: rotated away (presenting it again is reuse: RFC 9700 section 4.14.2)."""

    ACTIVE = "active"
    USED = "used"
    REVOKED = "revoked"


class DelegationStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class CredentialKind(StrEnum):
    ACCESS = "access"
    IDENTITY = "identity"
    DELEGATION = "delegation"


class StatusListState(StrEnum):
    """``open``: blocks are reserved from it; ``full``: every block reserved; ``cleared``: recycled, waiting for
    verifiers' caches of the old bits to run out before it opens again."""

    OPEN = "open"
    FULL = "full"
    CLEARED = "cleared"


class AuditOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    tenant_id: str
    parent_id: str | None
    depth: int
    path: str
    did: str
    name: str
    agent_type: str
    description: str | None
    trust_level: str
    status: AgentStatus
    scopes: tuple[str, ...]
    identity_credential_id: str | None
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None
    # Never below the parent's: set on an agent, it holds for its whole subtree (``issuer/agents.py``).
    dpop_requirement: DPoPRequirement = DPoPRequirement.NONE
    # CIBA ping mode (``issuer/approval_pings.py``): the client notification endpoint, None in poll mode.
    notification_endpoint: str | None = None

    @property
    def is_active(self) -> bool:
        """An agent acts (authenticates, is delegated to, owns usable keys) only while active."""
        return self.status == AgentStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    agent_id: str
    tenant_id: str
    prefix: str
    key_hash: str
    name: str | None
    scopes: tuple[str, ...]
    status: ApiKeyStatus
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None

    def usable_at(self, now: datetime) -> bool:
        """The key authenticates at ``now``: active (not revoked or rotated away) and not expired. Its agent must
        be active too (``Agent.is_active``); the client-authentication step checks both."""
        return self.status == ApiKeyStatus.ACTIVE and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class RefreshToken:
    id: str
    family_id: str
    agent_id: str
    tenant_id: str
    api_key_id: str | None
    client_id: str
    scopes: tuple[str, ...]
    status: RefreshTokenStatus
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    # RFC 8707: the resources the family's grant is for; None: AgentAuth's own API.
    resources: tuple[str, ...] | None = None
    # Authorization code families: the ``sub`` (the owner; None: the agent's DID) and whether ``act`` names the agent.
    subject: str | None = None
    agent_acts: bool = False
    # RFC 9449: the DPoP key's thumbprint a bound family's refreshes must prove; None: not bound.
    dpop_jkt: str | None = None

    def usable_at(self, now: datetime) -> bool:
        """Can be rotated at ``now``: active (not used, not revoked) and not expired."""
        return self.status == RefreshTokenStatus.ACTIVE and self.expires_at > now


def credential_live(revoked_at: datetime | None, expires_at: datetime, now: datetime) -> bool:
    """The one rule for an issued credential (access token, identity, delegation credential): not revoked and not
    expired - ``exp`` exact, as introspection answers it (the SQL form is ``credentials.live``)."""
    return revoked_at is None and expires_at > now


@dataclass(frozen=True, slots=True)
class Credential:
    jti: str
    kind: CredentialKind
    agent_id: str
    tenant_id: str
    client_id: str | None
    api_key_id: str | None
    refresh_family_id: str | None
    delegation_id: str | None
    scopes: tuple[str, ...]
    status_list_id: int
    status_index: int
    kid: str
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def live_at(self, now: datetime) -> bool:
        return credential_live(self.revoked_at, self.expires_at, now)


@dataclass(frozen=True, slots=True)
class TokenState:
    """What an online check needs about one issued credential, read in one joined query (``ports.TokenStates``)."""

    jti: str
    kind: CredentialKind
    client_id: str | None
    revoked_at: datetime | None
    expires_at: datetime
    agent: Agent
    policy_version: int

    def live_at(self, now: datetime) -> bool:
        return credential_live(self.revoked_at, self.expires_at, now)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    tenant_id: str | None
    actor: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: AuditOutcome
    reason: str | None
    request_id: str | None
    ip: str | None
    created_at: datetime
    details: dict[str, object] | None


@dataclass(frozen=True, slots=True)
class Delegation:
    id: str
    tenant_id: str
    delegator_id: str
    delegate_id: str
    parent_id: str | None
    path: str
    depth: int
    scopes: tuple[str, ...]
    remaining_depth: int
    credential_jti: str
    credential_jwt: str
    status: DelegationStatus
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def live_at(self, now: datetime) -> bool:
        """The delegation hands on authority at ``now``: active (not revoked) and not expired. A chain is live
        when every link is (``delegations.chain``)."""
        return self.status == DelegationStatus.ACTIVE and self.expires_at > now


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    id: str
    tenant_id: str
    name: str
    description: str | None
    effect: str
    subjects: dict[str, object]
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: dict[str, object]
    priority: int
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Revoked:
    """A credential a revocation round revoked."""

    jti: str
    kind: CredentialKind
    tenant_id: str
    refresh_family_id: str | None = None


@dataclass(frozen=True, slots=True)
class RevokedFamily:
    """A refresh family revoked because ``via_jti``, one of the round's credentials, was minted with it."""

    family_id: str
    tenant_id: str
    via_jti: str


@dataclass(frozen=True, slots=True)
class ResourceServer:
    """A resource server a tenant registered (RFC 8707 resource identifier, the scopes it defines, who may obtain
    tokens for it: ``own_tenant``, ``any_agent`` or ``tenants`` - its own plus ``allowed_tenants``)."""

    id: str
    tenant_id: str
    identifier: str
    name: str
    kind: str
    scopes: tuple[tuple[str, str], ...]  # (name, description)
    access: str
    allowed_tenants: tuple[str, ...]
    created_at: datetime
    updated_at: datetime

    @property
    def scope_names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.scopes)

    def admits(self, tenant_id: str) -> bool:
        """May agents of ``tenant_id`` obtain tokens for this server?"""
        if tenant_id == self.tenant_id or self.access == "any_agent":
            return True
        return self.access == "tenants" and tenant_id in self.allowed_tenants


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """An RFC 7591 dynamically registered client, as stored: ``secret_hash`` only for a confidential client."""

    client_id: str
    secret_hash: str | None
    client_name: str | None
    logo_uri: str | None
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str
    grant_types: tuple[str, ...]
    scope: str | None
    document: dict[str, object]
    created_at: datetime


class DeliveryStatus(StrEnum):
    """A webhook delivery: ``pending`` (owed, maybe waiting for its next attempt), ``delivered`` (a 2xx answer),
    ``failed`` (every attempt failed, or the subscription is gone)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class WebhookSubscription:
    """Where a tenant's events go (``events``: event types, ``*`` for all but the opt-in ones); the signing secret
    stays sealed here and is opened only to sign."""

    id: str
    tenant_id: str
    url: str
    events: tuple[str, ...]
    description: str | None
    secret_sealed: str
    active: bool
    from_audit_id: int
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: int
    subscription_id: str
    tenant_id: str
    audit_id: int
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int
