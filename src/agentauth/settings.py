"""Service configuration from the environment (prefix ``AGENTAUTH_``); CLI flags override.

No module-level instance: ``bootstrap`` builds one ``Settings`` and passes it on.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTAUTH_", extra="ignore")

    issuer_url: str = Field("http://127.0.0.1:8000", description="Public base URL; the issuer DID derives from it.")
    data_dir: Path = Field(Path("./data"), description="Where the embedded database and key file live.")
    database_url: str | None = Field(None, description="SQLAlchemy async URL; default: SQLite file in data_dir.")
    key_encryption_key: SecretStr | None = Field(
        None, description="32-byte KEK (base64url or hex) sealing issuer private keys; default: data_dir/kek file."
    )
    redis_url: str | None = Field(None, description="Redis URL for rate limits shared across replicas.")
    registration: Literal["open", "token", "closed"] = "open"
    registration_token: SecretStr | None = None
    access_token_ttl_seconds: int = Field(900, ge=60, le=86_400)
    refresh_token_ttl_seconds: int = Field(7 * 86_400, ge=300, le=90 * 86_400)
    identity_credential_ttl_seconds: int = Field(365 * 86_400, ge=3600)
    status_list_ttl_seconds: int = Field(300, ge=10, le=86_400)
    key_rotation_days: int = Field(30, ge=1)
    token_rate_per_client: int = Field(600, ge=1, description="Token requests per minute per client.")
    token_rate_per_ip: int = Field(1200, ge=1, description="Token requests per minute per IP address.")
    quickstart_rate_per_ip: int = Field(20, ge=1, description="Quickstart registrations per minute per IP.")
    client_registration_rate_per_ip: int = Field(
        20, ge=1, description="RFC 7591 client registrations per minute per IP."
    )
    # -- Client ID Metadata Documents (issue 14 item 3; issuer/cimd.py) --
    cimd_allow_loopback: bool = Field(
        False,
        description="Development and tests only: fetch client metadata documents from the literal host 127.0.0.1 "
        "(http or https). Every other private, loopback or link-local target stays refused.",
    )
    cimd_ca_bundle: Path | None = Field(
        None,
        description="A PEM file of extra certificate authorities trusted when fetching client metadata "
        "documents over https (a private PKI); the public roots stay trusted.",
    )
    cimd_fetch_timeout_seconds: float = Field(
        5.0, gt=0, le=5, description="Seconds one client metadata document fetch may take in all (DNS included)."
    )
    cimd_max_bytes: int = Field(5120, ge=512, le=65_536, description="Largest client metadata document accepted.")
    cimd_cache_min_seconds: int = Field(
        60, ge=0, le=86_400, description="Shortest time a fetched document is cached (floor of its max-age)."
    )
    cimd_cache_max_seconds: int = Field(
        86_400, ge=1, le=7 * 86_400, description="Longest time a fetched document is cached (ceiling of max-age)."
    )
    cimd_negative_cache_seconds: int = Field(
        30, ge=0, le=3600, description="How long a failed or invalid document fetch is remembered as a failure."
    )
    # -- Webhooks (issue 16 item 5; issuer/webhook_worker.py) --
    webhooks_enabled: bool = Field(
        True, description="Serving processes deliver webhooks, CIBA pings and approval emails (off: they wait)."
    )
    webhook_allow_loopback: bool = Field(
        False,
        description="Development and tests only: webhook URLs may be http(s)://127.0.0.1. Every other private, "
        "loopback or link-local target stays refused.",
    )
    webhook_ca_bundle: Path | None = Field(
        None, description="A PEM file of extra certificate authorities trusted for webhook targets (a private PKI)."
    )
    webhook_poll_seconds: float = Field(
        1.0, gt=0, le=60, description="How often a serving process looks for new events and due deliveries."
    )
    webhook_retry_first_seconds: float = Field(
        5.0, gt=0, le=3600, description="Ceiling of the wait before the first retry; each later one doubles (<= 1 h)."
    )
    webhook_log_days: int = Field(
        30, ge=1, le=3650, description="Days a settled (delivered or failed) webhook delivery and its log are kept."
    )
    # -- Human approval (issue 17 item 2; issuer/approvals.py): OpenID CIBA with RFC 9396 authorization_details --
    approval_ttl_seconds: int = Field(
        300, ge=30, le=86_400, description="Longest an approval request waits for the owner (requested_expiry)."
    )
    approval_interval_seconds: int = Field(
        5, ge=1, le=60, description="The least wait between two polls of one approval request (CIBA interval)."
    )
    authorization_details_types: str = Field(
        "payment,agent_action,data_access",
        description="Comma-separated authorization_details types approval requests may use (RFC 9396 section 5).",
    )
    smtp_url: str | None = Field(
        None,
        description="The approval email hook: owners are emailed each approval request addressed to them, through "
        "this SMTP server - smtp://[user:password@]host[:port] (STARTTLS when offered) or smtps://... (TLS). "
        "Unset: no email (the console inbox and the approval.requested webhook still tell them).",
    )
    smtp_from: str = Field("agentauth@localhost", description="The From address of approval emails.")
    # -- Owner accounts (issue 14 item 4; issuer/owners.py) --
    owner_signup: Literal["open", "closed"] = Field(
        "open", description="Whether people may create owner accounts at /signup."
    )
    owner_session_idle_seconds: int = Field(
        3600, ge=60, le=7 * 86_400, description="An owner's browser session ends after this long without use."
    )
    owner_session_max_seconds: int = Field(
        12 * 3600, ge=300, le=30 * 86_400, description="An owner's browser session ends this long after login."
    )
    # -- DPoP (RFC 9449, issue 15; issuer/dpop.py) --
    dpop_nonce_required: bool = Field(
        False,
        description="DPoP proofs at the token endpoint and on AgentAuth's own API must carry a server nonce "
        "(RFC 9449 section 8): the first request gets use_dpop_nonce and a DPoP-Nonce header to retry with.",
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=10 * 1024 * 1024)
    trusted_proxies: Annotated[tuple[IpNetwork, ...], NoDecode] = Field(
        (),
        description="Comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For/-Proto are believed; "
        "default none: the client address is the TCP peer.",
    )
    # -- database time limits: a stalled or unreachable database answers 503 within seconds, never hangs --
    db_connect_timeout: float = Field(
        5.0, gt=0, le=300, description="Seconds to open a database connection (PostgreSQL) before giving up."
    )
    db_pool_timeout: float = Field(
        5.0, gt=0, le=300, description="Seconds a request waits for a free pooled connection before giving up."
    )
    db_statement_timeout: float = Field(
        5.0, gt=0, le=3600, description="Seconds one database statement may take (PostgreSQL), lock waits included."
    )
    # -- pool and batch limits (issue 13 item 8): the defaults are what was measured best on 2 cores --
    db_pool_size: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Pooled database connections per engine and worker; default 4 on SQLite, 10 on PostgreSQL.",
    )
    db_max_overflow: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="Connections opened beyond the pool under load; default 0 on SQLite, 10 on PostgreSQL.",
    )
    batch_max_size: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Most requests one batched round (token issuance, token lookups, revocation) takes at once.",
    )
    assertion_prune_batch: int = Field(
        5000,
        ge=1,
        le=1_000_000,
        description="Expired jwt-bearer assertion ids forgotten per housekeeping transaction (bounds its lock).",
    )
    # -- observability (issue 16 item 6; api/metrics.py) --
    metrics_enabled: bool = Field(
        False,
        description="Serve Prometheus metrics at /metrics (404 while off). Each worker process counts for itself: "
        "with several workers (agentauth serve --workers N) a scrape reaches one of them and sees its numbers "
        "only, unless PROMETHEUS_MULTIPROC_DIR names an empty directory (wiped before each start), through which "
        "/metrics adds up every worker's.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="When set, /metrics answers only requests with 'Authorization: Bearer <this token>' (401 "
        "otherwise). It turns nothing on by itself: AGENTAUTH_METRICS_ENABLED does.",
    )
    host: str = "127.0.0.1"
    port: int = 8000

    @field_validator("issuer_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("issuer_url must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            try:
                return tuple(ipaddress.ip_network(str(v), strict=False) for v in value)
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: {exc}") from None
        return value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'agentauth.db').resolve()}"
