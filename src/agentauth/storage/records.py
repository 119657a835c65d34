"""Plain records that repositories hand to the service layer (ORM rows stay inside ``storage/``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
    status: str
    scopes: tuple[str, ...]
    identity_credential_id: str | None
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None

    @property
    def is_active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    agent_id: str
    tenant_id: str
    prefix: str
    key_hash: str
    name: str | None
    scopes: tuple[str, ...]
    status: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None


@dataclass(frozen=True, slots=True)
class RefreshToken:
    id: str
    family_id: str
    agent_id: str
    tenant_id: str
    api_key_id: str | None
    client_id: str
    scopes: tuple[str, ...]
    status: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True)
class Credential:
    jti: str
    kind: str
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


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    tenant_id: str | None
    actor: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
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
    status: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


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
