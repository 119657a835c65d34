"""Human approval of an exact action (issue 17 item 2): OpenID CIBA Core 1.0 (poll and ping modes) with RFC 9396
``authorization_details``.

An agent asks at the backchannel authentication endpoint (CIBA section 7) for its owner's approval of what it is
about to do - a payment of 45.00 USD to a creditor, say -, authenticating as at the token endpoint (its API key as
the client secret, body or HTTP Basic, or ``private_key_jwt``). ``login_hint`` names the person: the email of an
owner account of the agent's tenant (``unknown_user_id`` otherwise). The owner is told (the console's approvals
inbox; the ``approval.requested`` webhook event carries what is asked) and approves or denies exactly what is
shown. The agent polls the token endpoint with the ``auth_req_id`` (``grants/ciba.py``); once approved it gets
one access token whose ``authorization_details`` claim is the approved array, verbatim - no refresh token: an
approval is for one action, and the ``auth_req_id`` is redeemed once. With ``single_use=true`` the token itself
is spent at its first use, too (its ``single_use`` claim).

Ping mode for an agent registered with a ``backchannel_client_notification_endpoint`` (its requests must then
carry a ``client_notification_token``; ``issuer/approval_pings.py`` sends the ping). Not supported, and refused
rather than ignored where a client relies on them: push delivery, ``id_token_hint`` and ``login_hint_token``.
CIBA's ``openid`` scope is accepted and dropped - AgentAuth issues no ID tokens.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update

from agentauth.errors import (
    AccessDenied,
    AgentAuthError,
    Conflict,
    InvalidAuthorizationDetails,
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    NotFound,
    RateLimited,
    UnknownUserId,
    printable,
)
from agentauth.issuer import audit
from agentauth.issuer.apikeys import ApiKeyService
from agentauth.issuer.approval_pings import seal_ping
from agentauth.issuer.client_auth import CLIENT_ASSERTION_MAX_LIFETIME, CLIENT_ASSERTION_TYPE, REFUSED
from agentauth.issuer.context import RequestContext
from agentauth.issuer.core import IssuerCore, new_id
from agentauth.issuer.owners import OwnerSession, normalize_email
from agentauth.keys import KeyEncryptionKey
from agentauth.settings import Settings
from agentauth.storage import approval_emails as emails
from agentauth.storage import approval_pings as pings
from agentauth.storage.models import ApprovalRequestRow, OwnerRow, OwnerTenantRow, UsedAssertionRow
from agentauth.storage.ports import Insert, WritePlan
from agentauth.storage.records import Agent
from agentauth.vc import VerificationError, unverified_issuer, verify_agent_assertion
from agentauth.vc import authorization_details as details_rules

GRANT_CIBA = "urn:openid:params:grant-type:ciba"
BINDING_MESSAGE_MAX = 200
SLOW_DOWN_STEP = 5  # CIBA section 11 / RFC 8628 section 3.5: "increase the polling interval by 5 seconds"
INBOX_SIZE = 100
PENDING_PER_AGENT = 20  # an agent cannot bury its owner's inbox: past this, new requests wait for decisions
NOTIFICATION_TOKEN_MAX = 1024  # CIBA section 7.1: "The length of the token MUST NOT exceed 1024 characters"
# RFC 6750 section 2.1 b64token, the syntax CIBA section 7.1 requires of client_notification_token.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    ISSUED = "issued"


class InvalidBindingMessage(AgentAuthError):
    """CIBA section 13: "The binding message is invalid or unacceptable for use in the context of the given
    request"."""

    error = "invalid_binding_message"
    status_code = 400
    description = "The binding_message is invalid."


@dataclass(frozen=True, slots=True)
class Approval:
    """An approval request as its owner sees it (never the ``auth_req_id``)."""

    id: str
    tenant_id: str
    agent_id: str
    owner_id: str
    scopes: tuple[str, ...]
    authorization_details: list[dict[str, Any]]
    binding_message: str | None
    status: ApprovalStatus
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    single_use: bool = False

    def expired_at(self, now: datetime) -> bool:
        return self.expires_at <= now

    def shown(self, now: datetime) -> str:
        """The status a person reads: a pending request past its expiry is expired."""
        if self.status is ApprovalStatus.PENDING and self.expired_at(now):
            return "expired"
        return str(self.status)


def approval_of(row: ApprovalRequestRow) -> Approval:
    return Approval(
        id=row.id, tenant_id=row.tenant_id, agent_id=row.agent_id, owner_id=row.owner_id, scopes=tuple(row.scopes),
        authorization_details=list(row.authorization_details), binding_message=row.binding_message,
        status=ApprovalStatus(row.status), created_at=row.created_at, expires_at=row.expires_at,
        decided_at=row.decided_at, decided_by=row.decided_by, single_use=bool(row.single_use),
    )  # fmt: skip


def string_param(params: dict[str, Any], name: str, limit: int = 8192) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"parameter {name} must be given once, as a string")
    if len(value) > limit:
        raise InvalidRequest(f"parameter {name} is too long")
    return value


async def authenticate_agent(core: IssuerCore, api_keys: ApiKeyService, params: dict[str, Any]) -> Agent:
    """The agent a CIBA request or poll comes from, authenticated as at the token endpoint (CIBA section 7.1):
    its API key as the client secret (body or HTTP Basic), or ``private_key_jwt`` - a ``client_assertion`` signed
    by its own did:key (``client_credentials``' rules: iss = sub = its id or DID, aud the issuer or the token
    endpoint, a ``jti`` used once across replicas). A ``client_id`` given must name that agent."""
    if params.get("client_assertion") is not None or params.get("client_assertion_type") is not None:
        return await _agent_by_assertion(core, params)
    secret = string_param(params, "client_secret")
    if secret is None:
        raise InvalidClient(
            "client authentication failed: give the API key as client_secret, or a client_assertion",
            debug="no secret",
        )
    _key, agent = await api_keys.authenticate(secret)
    client_id = string_param(params, "client_id")
    if client_id is not None and client_id != agent.id:
        raise InvalidClient(REFUSED, debug=f"client_id {client_id[:80]} is not the API key's agent")
    return agent


async def _agent_by_assertion(core: IssuerCore, params: dict[str, Any]) -> Agent:
    if params.get("client_secret") not in (None, ""):
        raise InvalidRequest("use one client authentication method: client_secret or client_assertion, not both")
    if string_param(params, "client_assertion_type") != CLIENT_ASSERTION_TYPE:
        raise InvalidClient(REFUSED, debug="client_assertion_type is not jwt-bearer")
    assertion = string_param(params, "client_assertion")
    if assertion is None:
        raise InvalidClient(REFUSED, debug="no client_assertion")
    try:
        named = unverified_issuer(assertion)
    except VerificationError as exc:
        raise InvalidClient(REFUSED, debug=f"client_assertion: {exc.code}: {exc.detail}") from exc
    client_id = string_param(params, "client_id")
    if named is None or (client_id is not None and client_id != named):
        raise InvalidClient(REFUSED, debug="client_assertion iss missing or not the client_id")
    agent = await core.agent_snapshots.fresh(named)
    if agent is None or not agent.is_active:
        raise InvalidClient(REFUSED, debug="client_assertion of no active agent")
    now = core.clock()
    try:
        claims = verify_agent_assertion(
            assertion, audiences={core.token_endpoint, core.issuer_url, f"{core.issuer_url}/"}, now=now,
            signer_did=agent.did, max_lifetime_seconds=CLIENT_ASSERTION_MAX_LIFETIME,
        )  # fmt: skip
    except VerificationError as exc:
        raise InvalidClient(REFUSED, debug=f"client_assertion: {exc.code}: {exc.detail}") from exc
    # Single use, under the signer's key like every assertion it signs (``grants/jwt_bearer.py``).
    used = {"issuer": agent.did, "jti": str(claims["jti"]), "expires_at": datetime.fromtimestamp(
        float(claims["exp"]), tz=now.tzinfo)}  # fmt: skip
    try:
        await core.ports.writes.run(WritePlan((Insert.of(UsedAssertionRow.__table__, used),)))
    except Conflict as exc:
        raise InvalidClient(REFUSED, debug="client_assertion jti replayed") from exc
    return agent


def authorization_details_types(settings: Settings) -> tuple[str, ...]:
    """The ``authorization_details`` types approval requests may use (RFC 9396 section 5; metadata section 10)."""
    return tuple(t.strip() for t in settings.authorization_details_types.split(",") if t.strip())


class ApprovalService:
    def __init__(self, core: IssuerCore, api_keys: ApiKeyService, kek: KeyEncryptionKey) -> None:
        self.core = core
        self.api_keys = api_keys
        self.kek = kek

    @property
    def types(self) -> tuple[str, ...]:
        return authorization_details_types(self.core.settings)

    async def request(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """CIBA section 7.1 -> 7.3: a new approval request; the answer holds ``auth_req_id`` (shown only here),
        ``expires_in`` and ``interval``."""
        agent = await authenticate_agent(self.core, self.api_keys, params)
        notification_token = self._notification_token(agent, params)
        for unsupported, why in (
            ("id_token_hint", "id_token_hint is not supported: name the owner with login_hint (their email)"),
            ("login_hint_token", "login_hint_token is not supported: name the owner with login_hint (their email)"),
        ):
            if params.get(unsupported) not in (None, ""):
                raise InvalidRequest(why)
        hint = string_param(params, "login_hint", 320)
        if hint is None:
            raise InvalidRequest("login_hint is required: the email of an owner of this agent's tenant")
        scopes = self._scopes(agent, string_param(params, "scope"))
        raw_details = string_param(params, "authorization_details", details_rules.MAX_BYTES)
        details: list[dict[str, Any]] = []
        if raw_details is not None:
            try:
                details = details_rules.parse(raw_details, types=self.types)
            except details_rules.AuthorizationDetailsError as exc:
                raise InvalidAuthorizationDetails(str(exc)) from exc
        if not details and not scopes:
            raise InvalidRequest("ask for something: authorization_details, scope, or both")
        message = self._binding_message(string_param(params, "binding_message", 1000))
        single_use = self._single_use(params.get("single_use"))
        ttl = self._expiry(params.get("requested_expiry"))
        owner_id = await self._owner_named(hint, agent.tenant_id)
        now = self.core.clock()
        await self._below_pending_limit(agent.id, now)
        auth_req_id = secrets.token_urlsafe(32)
        interval = self.core.settings.approval_interval_seconds
        row = ApprovalRequestRow(
            id=new_id("apr"), request_hash=self.core.hasher.hash(auth_req_id), tenant_id=agent.tenant_id,
            agent_id=agent.id, owner_id=owner_id, scopes=list(scopes), authorization_details=details,
            binding_message=message, status=ApprovalStatus.PENDING.value, interval_seconds=interval,
            created_at=now, expires_at=now + timedelta(seconds=ttl), polled_at=None, decided_at=None,
            decided_by=None, token_jti=None, single_use=single_use,
        )  # fmt: skip
        if notification_token is not None:
            row.ping_sealed = seal_ping(self.kek, row.id, auth_req_id, notification_token)
            row.ping_state = pings.WAITING
        if self.core.settings.smtp_url:  # the email hook: the owner is emailed too (issuer/approval_emails.py)
            row.email_state, row.email_at = emails.DUE, now
        async with self.core.sessions.begin() as session:
            session.add(row)
            audit.record(
                session, ctx, now, action="approval.requested", tenant_id=agent.tenant_id, actor=agent.id,
                target_type="approval", target_id=row.id,
                details={"owner": owner_id, "binding_message": message, "authorization_details": details,
                         "scope": " ".join(scopes), "expires_at": row.expires_at.isoformat(),
                         "single_use": single_use},
            )  # fmt: skip
        return {"auth_req_id": auth_req_id, "expires_in": ttl, "interval": interval}

    @staticmethod
    def _single_use(raw: object) -> bool:
        """AgentAuth's ``single_use`` parameter: the token of the approval is spent at its first use (the
        ``single_use`` claim: at a ``require_approval`` gate here, and by the verifier SDK's
        ``require_authorization_details`` with a store of spent tokens)."""
        if raw in (None, "", "false"):
            return False
        if raw == "true":
            return True
        raise InvalidRequest("single_use must be true or false")

    @staticmethod
    def _notification_token(agent: Agent, params: dict[str, Any]) -> str | None:
        """CIBA section 7.1 ``client_notification_token``: required of a ping-mode agent, refused of a poll-mode one
        (which would wait for a ping that never comes)."""
        token = string_param(params, "client_notification_token", NOTIFICATION_TOKEN_MAX)
        if agent.notification_endpoint is None:
            if token is not None:
                raise InvalidRequest(
                    "this agent is registered for poll mode: leave out client_notification_token, or register a "
                    "backchannel_client_notification_endpoint on the agent for ping mode"
                )
            return None
        if token is None:
            raise InvalidRequest("this agent is registered for ping mode: client_notification_token is required")
        if not _B64TOKEN.fullmatch(token):
            raise InvalidRequest("client_notification_token must be a bearer token (RFC 6750 section 2.1 syntax)")
        return token

    async def _below_pending_limit(self, agent_id: str, now: datetime) -> None:
        waiting = select(func.count()).where(
            ApprovalRequestRow.agent_id == agent_id,
            ApprovalRequestRow.status == ApprovalStatus.PENDING.value,
            ApprovalRequestRow.expires_at > now,
        )
        async with self.core.sessions() as session:
            count = int((await session.execute(waiting)).scalar_one())
        if count >= PENDING_PER_AGENT:
            raise RateLimited(
                self.core.settings.approval_interval_seconds,
                f"{count} approval requests of this agent are still waiting: wait for the owner's decisions",
            )

    def _scopes(self, agent: Agent, scope: str | None) -> tuple[str, ...]:
        asked = [s for s in (scope or "").split() if s != "openid"]
        beyond = sorted(set(asked) - set(agent.scopes))
        if beyond:
            raise InvalidScope(f"the agent does not hold: {' '.join(beyond)[:200]}")
        return tuple(dict.fromkeys(asked))

    @staticmethod
    def _binding_message(message: str | None) -> str | None:
        """Shown to the owner next to what is asked, so the two can be matched: short, printable, one line."""
        if message is None:
            return None
        if len(message) > BINDING_MESSAGE_MAX or not message.isprintable():
            raise InvalidBindingMessage(
                f"binding_message must be one line of at most {BINDING_MESSAGE_MAX} printable characters"
            )
        return message

    def _expiry(self, raw: object) -> int:
        """CIBA section 7.1 ``requested_expiry``: a positive integer of seconds, at most the configured ttl."""
        most = self.core.settings.approval_ttl_seconds
        if raw is None or raw == "":
            return most
        if not isinstance(raw, str | int) or not str(raw).isdecimal() or len(str(raw)) > 6:
            raise InvalidRequest("requested_expiry must be a positive integer of seconds")
        value = int(raw)
        if not 1 <= value <= most:
            raise InvalidRequest(f"requested_expiry must be 1 to {most} seconds")
        return value

    async def _owner_named(self, hint: str, tenant_id: str) -> str:
        try:
            email = normalize_email(hint)
        except InvalidRequest as exc:
            raise UnknownUserId("login_hint must be the email of an owner of this agent's tenant") from exc
        found = (
            select(OwnerRow.id)
            .join(OwnerTenantRow, OwnerTenantRow.owner_id == OwnerRow.id)
            .where(OwnerRow.email == email, OwnerTenantRow.tenant_id == tenant_id)
        )
        async with self.core.sessions() as session:
            owner_id = (await session.execute(found)).scalar_one_or_none()
        if owner_id is None:
            raise UnknownUserId(debug=f"no owner {printable(email, 80)} of {tenant_id}")
        return str(owner_id)

    # -- the owner's side --------------------------------------------------------------------------------------

    async def inbox(self, tenant_id: str, *, pending_only: bool = False) -> list[Approval]:
        """The tenant's newest approval requests (for a principal already checked to be its owner's)."""
        query = select(ApprovalRequestRow).where(ApprovalRequestRow.tenant_id == tenant_id)
        if pending_only:
            query = query.where(
                ApprovalRequestRow.status == ApprovalStatus.PENDING.value,
                ApprovalRequestRow.expires_at > self.core.clock(),
            )
        query = query.order_by(ApprovalRequestRow.created_at.desc(), ApprovalRequestRow.id).limit(INBOX_SIZE)
        async with self.core.sessions() as session:
            return [approval_of(row) for row in (await session.execute(query)).scalars()]

    async def pending_count(self, tenant_id: str) -> int:
        query = select(func.count()).where(
            ApprovalRequestRow.tenant_id == tenant_id,
            ApprovalRequestRow.status == ApprovalStatus.PENDING.value,
            ApprovalRequestRow.expires_at > self.core.clock(),
        )
        async with self.core.sessions() as session:
            return int((await session.execute(query)).scalar_one())

    async def decide(
        self, owner: OwnerSession, tenant_id: str, approval_id: str, approve: bool, ctx: RequestContext
    ) -> Approval:
        """The owner's answer to a pending request of a tenant they own (checked by the caller: the console's
        ``OwnerService.principal``). A decided or expired request stays as it is (``conflict``)."""
        now = self.core.clock()
        status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
        async with self.core.sessions.begin() as session:
            row = await session.get(ApprovalRequestRow, approval_id)
            if row is None or row.tenant_id != tenant_id:
                raise NotFound("no such approval request")
            if row.owner_id != owner.owner.id:
                raise AccessDenied("this request asks another owner of the tenant (its login_hint)")
            if row.status != ApprovalStatus.PENDING.value:
                raise Conflict(f"this request is already {row.status}")
            if row.expires_at <= now:
                raise Conflict("this request has expired")
            changed = await session.execute(
                update(ApprovalRequestRow)
                .where(ApprovalRequestRow.id == approval_id, ApprovalRequestRow.status == ApprovalStatus.PENDING.value)
                .values(status=status.value, decided_at=now, decided_by=owner.owner.id)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict("this request was decided meanwhile")
            if row.ping_state == pings.WAITING:  # ping mode: tell the agent now (the worker sends it)
                await session.execute(pings.MAKE_DUE, {"approval": approval_id, "now": now})
            if row.email_state == emails.DUE:  # decided before the owner's email went out: it asks nothing now
                await session.execute(emails.SETTLE_DECIDED, {"approval": approval_id})
            audit.record(
                session, ctx, now, action=f"approval.{status.value}", tenant_id=tenant_id, actor=owner.owner.id,
                target_type="approval", target_id=approval_id,
                details={"agent_id": row.agent_id, "authorization_details": row.authorization_details},
            )  # fmt: skip
        async with self.core.sessions() as session:
            decided = await session.get(ApprovalRequestRow, approval_id)
            assert decided is not None
            return approval_of(decided)
