"""The composition root: the one place that wires settings, storage, keys and services together.

The FastAPI app, the MCP server and the CLI all get their services from ``build_services``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import literal_column, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentauth import paths
from agentauth.did import issuer_did_document, url_to_did_web
from agentauth.errors import TemporarilyUnavailable
from agentauth.issuer import discovery
from agentauth.issuer.agents import AgentService
from agentauth.issuer.apikeys import ApiKeyService
from agentauth.issuer.approval_emails import ApprovalEmails, SmtpServer
from agentauth.issuer.approval_pings import ApprovalPings
from agentauth.issuer.approvals import ApprovalService
from agentauth.issuer.audit_log import AuditService
from agentauth.issuer.authorization import Authorizer
from agentauth.issuer.authorization_codes import AuthorizationService
from agentauth.issuer.cimd import CimdFetcher, CimdLimits
from agentauth.issuer.client_directory import Clients
from agentauth.issuer.client_registration import ClientRegistration
from agentauth.issuer.compromise import adopt_stored_ring
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.delegations import DelegationService
from agentauth.issuer.grants import GRANTS
from agentauth.issuer.keyring import IssuerKeys
from agentauth.issuer.lifecycle import LifecycleService
from agentauth.issuer.owners import OwnerService
from agentauth.issuer.policies import PolicyService
from agentauth.issuer.ratelimit import RateLimiter, build_rate_limiter
from agentauth.issuer.resource_servers import ResourceServerService
from agentauth.issuer.scopes import SCOPES
from agentauth.issuer.secrets import SecretHasher
from agentauth.issuer.status import StatusRegistry
from agentauth.issuer.tokens import TokenService
from agentauth.issuer.webhook_worker import WebhookWorker, WorkerSettings
from agentauth.issuer.webhooks import WebhookService
from agentauth.keyfile import load_or_create_kek, private_dir
from agentauth.keys import KeyEncryptionKey
from agentauth.settings import Settings
from agentauth.storage import assertions, batch
from agentauth.storage.db import PoolLimits, SqliteSessionMaker, Timeouts, create_engine, session_factory
from agentauth.storage.factory import close_ports, storage_ports
from agentauth.storage.migrate import migrate
from agentauth.storage.ports import Query, StoragePorts
from agentauth.vc import CredentialIssuer
from agentauth.vc.assertions import ASSERTION_LEEWAY_SECONDS
from agentauth.vc.dpop_nonces import DPoPNonces

log = logging.getLogger("agentauth")
KEY_RELOAD_SECONDS = 5
ROTATION_CHECK_SECONDS = 60
_TRIVIAL_QUERY = Query(select(literal_column("1")))


def utcnow() -> datetime:
    return datetime.now(UTC)


TOKEN_ISSUED = "issued"  # the outcome ``Services.token_requests`` is told of a token request that got a token


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    read_engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    ports: StoragePorts
    keys: IssuerKeys
    issuer: CredentialIssuer
    core: IssuerCore
    status: StatusRegistry
    agents: AgentService
    api_keys: ApiKeyService
    tokens: TokenService
    lifecycle: LifecycleService
    delegations: DelegationService
    policies: PolicyService
    resource_servers: ResourceServerService
    audit: AuditService
    rate_limiter: RateLimiter
    # OAuth clients (issue 14 item 3): the directory the authorization and token endpoints resolve a client_id
    # with (``issuer/clients.py: ClientDirectory``), and RFC 7591 registration.
    clients: Clients
    authorization: AuthorizationService
    owners: OwnerService
    client_registration: ClientRegistration
    webhooks: WebhookService
    webhook_worker: WebhookWorker
    approvals: ApprovalService
    # Told the grant_type and outcome (``issued`` or the OAuth error code) of every token request made through an
    # adapter other than the REST token endpoint (the MCP tools), for ``/metrics``; set by ``Metrics.attach``.
    token_requests: Callable[[object, str], None] | None = None

    @property
    def issuer_did(self) -> str:
        return self.keys.issuer_did

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return self.keys.ring.jwks()

    def did_document(self) -> dict[str, object]:
        return issuer_did_document(self.issuer_did, self.jwks()["keys"])

    def agent_configuration(self) -> dict[str, Any]:
        """``/.well-known/agent-configuration`` and MCP ``discover``: one document, its URLs from ``paths``."""
        endpoints = paths.endpoint_urls(self.settings.issuer_url)
        return discovery.agent_configuration(self.settings, self.issuer_did, endpoints, self.tokens.grants)

    def authorization_server_metadata(self) -> dict[str, Any]:
        """RFC 8414 ``/.well-known/oauth-authorization-server``: from the grant registry and settings."""
        endpoints = paths.endpoint_urls(self.settings.issuer_url)
        return discovery.authorization_server_metadata(self.settings, endpoints, list(SCOPES), self.tokens.grants)

    def protected_resource_metadata(self, resource: str, name: str) -> dict[str, Any]:
        """RFC 9728 metadata of one of AgentAuth's own resources (its REST API, ``/mcp``)."""
        docs = f"{self.settings.issuer_url}{paths.DOCS}"
        return discovery.protected_resource_metadata(self.settings, resource, name, list(SCOPES), docs)

    def key_retention(self) -> timedelta:
        """How long a retired key stays published: the longest lifetime of anything it signed."""
        s = self.settings
        longest = max(s.access_token_ttl_seconds, s.identity_credential_ttl_seconds, s.refresh_token_ttl_seconds)
        return timedelta(seconds=longest + 300)

    async def ready(self) -> str:
        """Readiness (``GET /ready``): the database answers a trivial query on the read side, and the key ring has
        an active key - its kid is returned. Writes nothing (it gets polled). ``TemporarilyUnavailable`` if not."""
        try:
            await self.ports.reads.fetch(_TRIVIAL_QUERY)
        except Exception as exc:  # translated or not (a closed pool, a driver's own error): not ready
            raise TemporarilyUnavailable(
                "the database is unavailable", debug=f"readiness: {type(exc).__name__}: {exc}"
            ) from exc
        # A KeyRing holds exactly one active key by construction (keys/ring.py): a loaded ring can sign.
        return self.core.credentials.ring.active.kid

    @staticmethod
    def observe_batch_rounds(observer: Callable[[str, int, float], None] | None) -> None:
        """Tell ``observer`` the batcher's name, size and duration of every micro-batched round in this process
        (token issuance, token lookups, revocation, write plans, reads; ``storage/batch.py``), for ``/metrics``;
        None: stop."""
        batch.observe_rounds(observer)

    async def reload_keys(self) -> None:
        await adopt_stored_ring(self.keys, self.core)

    async def maintain(self) -> None:
        """Run for the life of a serving process (HTTP or stdio): adopt key changes made elsewhere (another
        replica, `agentauth keys rotate|revoke`) within seconds, rotate keys on schedule, recycle status lists,
        deliver webhooks (``webhook_worker``); on SQLite, checkpoint the WAL in the background."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._keys_and_lists())
            if self.settings.webhooks_enabled:
                group.create_task(self.webhook_worker.run())
            if isinstance(self.sessions, SqliteSessionMaker):
                group.create_task(self.sessions.checkpoints())

    async def _keys_and_lists(self) -> None:
        since_rotation_check = 0.0
        while True:
            await asyncio.sleep(KEY_RELOAD_SECONDS)
            since_rotation_check += KEY_RELOAD_SECONDS
            try:
                if since_rotation_check >= ROTATION_CHECK_SECONDS:
                    since_rotation_check = 0.0
                    await self.housekeeping(utcnow())
                await self.reload_keys()
            except Exception:
                log.exception("maintenance failed; retrying in %ss", KEY_RELOAD_SECONDS)

    async def housekeeping(self, now: datetime) -> None:
        """One pass of the once-a-minute chores: rotate keys when due, recycle status lists, forget used
        jwt-bearer assertion ids that can no longer be replayed (else one row per grant, forever) and webhook
        deliveries settled more than ``webhook_log_days`` ago."""
        every = timedelta(days=self.settings.key_rotation_days)
        await self.keys.rotate_if_due(now, every, self.key_retention())
        await self.status.recycle()
        leeway = timedelta(seconds=ASSERTION_LEEWAY_SECONDS)
        batch = self.settings.assertion_prune_batch
        while True:  # in bounded batches: no long write lock after a backlog
            async with self.sessions.begin() as session:
                forgotten = await assertions.forget_expired(session, now, leeway, limit=batch)
            if forgotten < batch:
                break
        await self.webhook_worker.forget_settled(now - timedelta(days=self.settings.webhook_log_days), batch)

    async def close(self) -> None:
        await self.status.close()
        await self.rate_limiter.close()
        await self.clients.close()
        await close_ports(self.ports)
        for maker in (self.sessions, self.core.reads):
            if isinstance(maker, SqliteSessionMaker):
                maker.close()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
        await self.engine.dispose()


def _prepare_private_dirs(settings: Settings, *, with_kek_file: bool) -> None:
    """The directories of the KEK file and of the SQLite database: created 0700, or a warning (once each) if
    open to others."""
    private = {settings.data_dir.resolve()} if with_kek_file else set()
    database = make_url(settings.effective_database_url).database
    if settings.effective_database_url.startswith("sqlite") and database and database != ":memory:":
        private.add(Path(database).resolve().parent)
    for directory in sorted(private):
        private_dir(directory)


async def build_services(settings: Settings) -> Services:
    """Open the database, apply migrations, load (or create) the issuer key ring, wire the use cases."""
    kek_text = settings.key_encryption_key.get_secret_value() if settings.key_encryption_key else None
    url = settings.effective_database_url
    _prepare_private_dirs(settings, with_kek_file=kek_text is None)
    kek = load_or_create_kek(settings.data_dir, kek_text)
    timeouts = Timeouts(settings.db_connect_timeout, settings.db_pool_timeout, settings.db_statement_timeout)
    pool = PoolLimits(settings.db_pool_size, settings.db_max_overflow)
    engine = create_engine(url, timeouts=timeouts, pool=pool)
    read_engine = (
        create_engine(url, read_only=True, timeouts=timeouts, pool=pool) if url.startswith("sqlite") else engine
    )
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        reads = session_factory(read_engine)
        ports = storage_ports(sessions, reads, timeouts, pool)  # the one choice of implementation per backend
        keys = IssuerKeys(sessions, kek, url_to_did_web(settings.issuer_url), reads=reads)
        ring = await keys.load_or_create(utcnow())
    except BaseException:
        if read_engine is not engine:
            await read_engine.dispose()
        await engine.dispose()
        raise
    issuer = CredentialIssuer(settings.issuer_url, ring)
    status = StatusRegistry(
        sessions,
        issuer,
        paths.status_list_url_templates(settings.issuer_url),
        settings.status_list_ttl_seconds,
        utcnow,
        ports.status_blocks,
        reads=reads,
    )
    core = IssuerCore(
        settings=settings,
        sessions=sessions,
        reads=reads,
        credentials=issuer,
        status=status,
        hasher=SecretHasher(kek.derive("secret-hash")),
        clock=utcnow,
        ports=ports,
        token_endpoint=f"{settings.issuer_url}{paths.TOKEN}",
        own_resources=(f"{settings.issuer_url}{paths.API_V1}", f"{settings.issuer_url}{paths.MCP}"),
        dpop_nonces=DPoPNonces(kek.derive("dpop-nonce")),
    )
    authz = Authorizer(core)  # the one authorization of every use case, shared by all services
    api_keys = ApiKeyService(core, authz)
    agent_service = AgentService(core, authz)
    clients = Clients(core, CimdFetcher(cimd_limits(settings)), GRANTS.grant_types)
    tokens = TokenService(core, api_keys, clients)
    return Services(
        settings=settings,
        engine=engine,
        read_engine=read_engine,
        sessions=sessions,
        ports=ports,
        keys=keys,
        issuer=issuer,
        core=core,
        status=status,
        agents=agent_service,
        api_keys=api_keys,
        tokens=tokens,
        lifecycle=LifecycleService(core, tokens),
        delegations=DelegationService(core, authz),
        policies=PolicyService(core, authz),
        resource_servers=ResourceServerService(core, authz),
        audit=AuditService(core, authz),
        rate_limiter=build_rate_limiter(settings.redis_url),
        clients=clients,
        authorization=AuthorizationService(core, clients),
        owners=OwnerService(core, agent_service, api_keys),
        client_registration=ClientRegistration(core),
        webhooks=WebhookService(core, authz, kek, allow_loopback=settings.webhook_allow_loopback),
        webhook_worker=WebhookWorker(
            core,
            kek,
            webhook_settings(settings),
            pings=approval_pings(core, kek, settings),
            emails=approval_emails(core, settings),
        ),
        approvals=ApprovalService(core, api_keys, kek),
    )


def approval_pings(core: IssuerCore, kek: KeyEncryptionKey, settings: Settings) -> ApprovalPings:
    """CIBA ping delivery, sent by the webhook worker's loop with the webhooks' target rules and backoff."""
    return ApprovalPings(
        core, kek, allow_loopback=settings.webhook_allow_loopback,
        retry_first_seconds=settings.webhook_retry_first_seconds,
    )  # fmt: skip


def approval_emails(core: IssuerCore, settings: Settings) -> ApprovalEmails | None:
    """The approval email hook, sent by the webhook worker's loop; None without ``AGENTAUTH_SMTP_URL``. A malformed
    URL stops the start-up with its reason."""
    if not settings.smtp_url:
        return None
    server = SmtpServer.parse(settings.smtp_url)
    return ApprovalEmails(
        core, server, sender=settings.smtp_from, retry_first_seconds=settings.webhook_retry_first_seconds
    )


def webhook_settings(settings: Settings) -> WorkerSettings:
    return WorkerSettings(
        allow_loopback=settings.webhook_allow_loopback,
        poll_seconds=settings.webhook_poll_seconds,
        retry_first_seconds=settings.webhook_retry_first_seconds,
        ca_bundle=str(settings.webhook_ca_bundle) if settings.webhook_ca_bundle is not None else None,
    )


def cimd_limits(settings: Settings) -> CimdLimits:
    return CimdLimits(
        timeout_seconds=settings.cimd_fetch_timeout_seconds,
        max_bytes=settings.cimd_max_bytes,
        cache_min_seconds=settings.cimd_cache_min_seconds,
        cache_max_seconds=max(settings.cimd_cache_max_seconds, settings.cimd_cache_min_seconds),
        negative_cache_seconds=settings.cimd_negative_cache_seconds,
        allow_loopback=settings.cimd_allow_loopback,
        ca_bundle=str(settings.cimd_ca_bundle) if settings.cimd_ca_bundle is not None else None,
    )
