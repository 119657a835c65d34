"""Request and response models shared by REST and MCP, so the two interfaces never drift apart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from agentauth.issuer.scopes import DEFAULT_TRUST_LEVEL

AgentType = Literal["orchestrator", "autonomous", "assistant", "tool"]
TrustLevel = Literal["untrusted", "basic", "verified", "trusted"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=2000)]


def _in_utc(value: datetime) -> datetime:
    """A time without offset is read as UTC; one with an offset is converted - and refused when that carries it
    outside years 1-9999 (``0001-01-01T00:00:00+23:59``), which Python cannot represent and no database stores."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC (years 1-9999)") from None


# Every datetime a caller sends (query parameter or body field) is of this type: aware, UTC, representable.
UtcDateTime = Annotated[datetime, AfterValidator(_in_utc)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuickstartRequest(Strict):
    """Register a root agent: a new tenant with its own did:key, identity credential, API key and token pair."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "research-bot", "agent_type": "assistant", "description": "Finds and summarizes papers"}
            ]
        }
    )

    name: Name
    agent_type: AgentType
    description: Description | None = None
    public_key: str | dict[str, Any] | None = Field(
        None, description="Bring your own key: a did:key or an Ed25519 public JWK. Omit to have one generated."
    )
    registration_token: str | None = Field(None, description="Required when registration is token-gated.")


REQUIRE_DPOP = (
    "Refuse bearer tokens: every token issued to this agent must be DPoP-bound (RFC 9449; a DPoP header at the "
    "token endpoint)."
)
DELIVERY_MODE = (
    "OpenID CIBA section 4 backchannel_token_delivery_mode of this agent's approval requests: poll (the default) "
    "or ping (the server POSTs the auth_req_id to backchannel_client_notification_endpoint once the owner decided "
    "or the request expired; the agent then calls the token endpoint)."
)
NOTIFICATION_ENDPOINT = (
    "OpenID CIBA section 4 backchannel_client_notification_endpoint: the https URL pinged in ping mode (giving it "
    "implies ping mode). Its host must resolve to public addresses only; redirects are not followed."
)
BIND_TO_AGENT_KEY = (
    "Every token issued to this agent must be DPoP-bound to the agent's own did:key, so cnf.jkt is the thumbprint "
    "of the subject's key (implies require_dpop)."
)


class CreateAgentRequest(Strict):
    """A child agent in the caller's subtree; scopes, trust level and DPoP requirement at most the parent's."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "summarizer", "agent_type": "tool", "scopes": ["api.read"]}]}
    )

    name: Name
    agent_type: AgentType
    description: Description | None = None
    public_key: str | dict[str, Any] | None = None
    trust_level: TrustLevel | None = Field(None, description="At most the parent's level; default the parent's.")
    scopes: list[str] | None = Field(None, description="Subset of the parent's scopes; default all of them.")
    require_dpop: bool | None = Field(None, description=REQUIRE_DPOP + " At least the parent's; default the parent's.")
    bind_to_agent_key: bool | None = Field(
        None, description=BIND_TO_AGENT_KEY + " At least the parent's; default the parent's."
    )
    backchannel_token_delivery_mode: Literal["poll", "ping"] | None = Field(None, description=DELIVERY_MODE)
    backchannel_client_notification_endpoint: str | None = Field(None, description=NOTIFICATION_ENDPOINT)


class UpdateAgentRequest(Strict):
    """The fields to change; omitted fields keep their value."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"description": "Summarizes papers in English", "trust_level": "basic"}]}
    )

    name: Name | None = None
    description: Description | None = None
    trust_level: TrustLevel | None = None
    require_dpop: bool | None = Field(None, description=REQUIRE_DPOP + " Raising it raises the whole subtree.")
    bind_to_agent_key: bool | None = Field(
        None, description=BIND_TO_AGENT_KEY + " Raising it raises the whole subtree."
    )
    backchannel_token_delivery_mode: Literal["poll", "ping"] | None = Field(None, description=DELIVERY_MODE)
    backchannel_client_notification_endpoint: str | None = Field(None, description=NOTIFICATION_ENDPOINT)


class AgentOut(BaseModel):
    """An agent: its id (the OAuth client_id), its did:key DID and what it may do."""

    id: str
    did: str
    name: str
    agent_type: str
    description: str | None
    trust_level: str = DEFAULT_TRUST_LEVEL
    status: str
    parent_id: str | None
    tenant_id: str
    scopes: list[str]
    created_at: datetime
    updated_at: datetime
    is_root: bool
    is_active: bool
    # The agent's DPoP requirement (``storage.records.DPoPRequirement``); None for a delegation peer.
    require_dpop: bool | None = None
    bind_to_agent_key: bool | None = None
    # CIBA client metadata (section 4); None for a delegation peer.
    backchannel_token_delivery_mode: Literal["poll", "ping"] | None = None
    backchannel_client_notification_endpoint: str | None = None
    # "member": in the caller's own subtree. "delegation_peer": an agent of another tenant with a live delegation
    # between it and the caller; shown without its scopes, description or parent.
    relationship: Literal["member", "delegation_peer"] = "member"


class AgentPage(BaseModel):
    """A page of agents, newest first."""

    items: list[AgentOut]
    total: int
    limit: int
    offset: int


class TokenResponse(BaseModel):
    """RFC 6749 section 5.1 token response, plus the absolute times expires_at and refresh_before (renew after
    refresh_before, before expires_at)."""

    access_token: str
    token_type: Literal["Bearer", "DPoP"] = "Bearer"
    expires_in: int
    refresh_token: str | None = None
    scope: str
    expires_at: datetime
    refresh_before: datetime
    issued_token_type: str | None = None


class CreateApiKeyRequest(Strict):
    """A new API key for the caller or an agent of its subtree."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "agent_id": "agt_01a23eee46f855766a3840e27259",
                    "name": "summarizer key",
                    "scopes": ["api.read"],
                    "expires_in_days": 90,
                }
            ]
        }
    )

    agent_id: str | None = Field(None, description="Whose key; default the caller. Must be in your subtree.")
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    scopes: list[str] | None = Field(None, description="Subset of the caller's scopes; default all of them.")
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class ApiKeyOut(BaseModel):
    """An API key, without its secret: the prefix identifies it in logs."""

    id: str
    agent_id: str
    name: str | None
    prefix: str
    scopes: list[str]
    status: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    """A new API key with its secret (raw_key), shown this once."""

    raw_key: str = Field(description="The secret. Shown once: store it now.")


class ApiKeyRotated(ApiKeyCreated):
    """The replacement key with its secret; the old key is revoked."""

    old_credential_id: str


class ApiKeyPage(BaseModel):
    """A page of API keys."""

    items: list[ApiKeyOut]
    total: int
    limit: int
    offset: int


class QuickstartResponse(TokenResponse):
    """The new agent, its secrets (shown once) and a first token pair."""

    agent: AgentOut
    api_key: str = Field(description="Shown once: store it now.")
    api_key_id: str
    private_key_jwk: dict[str, str] | None = Field(
        None, description="The agent's Ed25519 private key when it was generated here. Shown once."
    )
    identity_credential: str


class AgentCreated(BaseModel):
    """The new child agent, its identity credential and, when generated here, its private key (shown once)."""

    agent: AgentOut
    private_key_jwk: dict[str, str] | None = None
    identity_credential: str


class AuditEventOut(BaseModel):
    """One audit log entry."""

    id: int
    actor: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    reason: str | None
    request_id: str | None
    ip: str | None
    created_at: datetime
    details: dict[str, Any] | None


class AuditPage(BaseModel):
    """A page of audit events, newest first; pass next_cursor as cursor for the next page."""

    items: list[AuditEventOut]
    next_cursor: str | None


class CreateDelegationRequest(Strict):
    """Grant another agent a subset of your scopes, as a signed delegation credential."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "delegate_agent_id": "agt_01a23eee46f855766a3840e27259",
                    "scopes": ["api.read"],
                    "max_chain_depth": 1,
                    "expires_in_hours": 24,
                }
            ]
        }
    )

    delegate_agent_id: str = Field(min_length=1, max_length=64)
    scopes: list[str] = Field(min_length=1, description="Subset of your effective scopes.")
    max_chain_depth: int | None = Field(
        None, ge=0, le=10, description="Further hops allowed below this one (default 3, or parent's minus one)."
    )
    expires_in_hours: int | None = Field(None, ge=1, le=8760, description="Default 24 h, never past the parent.")


class DelegationOut(BaseModel):
    """A delegation and its signed credential (subject_token of token exchange)."""

    id: str
    delegator_agent_id: str
    delegate_agent_id: str
    parent_delegation_id: str | None
    scopes: list[str]
    max_chain_depth: int = Field(description="Further hops allowed below this delegation.")
    chain_depth: int = Field(description="Position in its chain: 1 for a root grant.")
    status: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    credential: str = Field(description="The signed AgentDelegationCredential (compact JWT).")


class DelegationPage(BaseModel):
    """A page of delegations."""

    items: list[DelegationOut]
    total: int
    limit: int
    offset: int


class DelegationChain(BaseModel):
    """A delegation with every delegation above it, and the scopes that survive the whole chain."""

    delegation_id: str
    links: list[DelegationOut] = Field(description="Root grant first.")
    effective_scopes: list[str]
    root_delegator_agent_id: str


class PolicyIn(Strict):
    """An allow or deny rule; the highest priority matching rule decides, deny winning ties."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "no deletes at night",
                    "effect": "deny",
                    "subjects": {"agent_types": ["autonomous"]},
                    "actions": ["delete"],
                    "resources": ["/api/v1/**"],
                    "conditions": {"time_window": {"start": "20:00", "end": "06:00", "timezone": "UTC"}},
                    "priority": 10,
                }
            ]
        }
    )

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    description: Description | None = None
    effect: Literal["allow", "deny", "require_approval"] = Field(
        description="deny overrides any allow; require_approval refuses until a person approved the action (CIBA)"
    )
    subjects: dict[str, Any] = Field(
        description='Who: {"all": true} or any of {"agent_ids": [...], "agent_types": [...], "trust_levels": [...]}'
    )
    actions: list[str] = Field(min_length=1, description="read, write, delete, execute, delegate, admin or '*'")
    resources: list[Annotated[str, StringConstraints(min_length=1, max_length=1000)]] = Field(
        min_length=1, description="Path patterns: '*' = one segment, '**' = any depth"
    )
    conditions: dict[str, Any] = Field(
        default_factory=dict,
        description='{"time_window": {"start": "09:00", "end": "17:00", "days": ["mon"], "timezone": "UTC"}, '
        '"source_ips": ["10.0.0.0/8"], "max_delegation_depth": 2}',
    )
    priority: int = Field(0, ge=-1000, le=1000)
    enabled: bool = True


class PolicyOut(PolicyIn):
    """A stored policy."""

    id: str
    created_at: datetime
    updated_at: datetime


class PolicyPage(BaseModel):
    """The tenant's policies."""

    items: list[PolicyOut]
    total: int


class EvaluateRequest(Strict):
    """Would this agent be allowed this action on this resource?"""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"agent_id": "agt_01a23eee46f855766a3840e27259", "action": "read", "resource": "/api/v1/agents"}
            ]
        }
    )

    agent_id: str = Field(min_length=1, max_length=64)
    action: Literal["read", "write", "delete", "execute", "delegate", "admin"]
    resource: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    source_ip: str | None = Field(None, max_length=64, description="Evaluate as if from this address.")


class EvaluateResponse(BaseModel):
    """The decision and what it rests on: a policy, the agent's scopes, a delegation, or the default."""

    allowed: bool
    effect: Literal["allow", "deny", "require_approval"]
    basis: Literal["policy", "scope", "delegation", "default"]
    matched_policy: dict[str, Any] | None
    delegation_id: str | None
    reasons: list[str]


class ActivityHour(BaseModel):
    """Token events of one hour: issued (every grant but refresh and exchange), refreshed, exchanged, denied."""

    start: datetime
    issued: int = 0
    refreshed: int = 0
    exchanged: int = 0
    denied: int = 0


class ActivityAgent(BaseModel):
    """One of the busiest agents of the window: its token events by kind."""

    agent_id: str = Field(description="The acting agent (or owner, for authorization-code tokens)")
    issued: int = 0
    refreshed: int = 0
    exchanged: int = 0
    denied: int = 0


class ActivityOut(BaseModel):
    """Token issuance and denials over the last ``hours``, per hour and for the busiest agents."""

    since: datetime
    hours: list[ActivityHour]
    agents: list[ActivityAgent]
