"""Owner accounts (issue 14 item 4): the people who own tenants, log in at the authorization endpoint's login
page and consent for their agents.

* Passwords are hashed with argon2id (``argon2-cffi``'s ``PasswordHasher``, RFC 9106 parameters of the library)
  on signup and login only - never on a token path. An unknown email costs the same verification as a known one,
  and gets the same answer, so the login form does not tell which emails have accounts.
* Failed logins are counted per email and per client IP in the database (so the limit holds across replicas);
  past the limit a login is refused without checking the password until the window has passed.
* Sessions are server-side: the browser holds 256 random bits, the database their keyed hash
  (``SecretHasher``), an idle and an absolute expiry, and a per-session CSRF token. Every login makes a new
  session (no fixation: nothing sent before the login is ever promoted), logout deletes it.
* An owner owns tenants: created while logged in (a quickstart whose root agent the owner then owns), or claimed
  with the tenant root's API key (a child agent's key claims nothing).
* In the console an owner acts on a tenant they own as its root agent, with the root's scopes (``principal``):
  every action is a use case authorized as REST and MCP calls are - scopes, tenancy, policies.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from agentauth.errors import AccessDenied, AgentAuthError, Conflict, InvalidRequest, NotFound, RateLimited
from agentauth.issuer import audit
from agentauth.issuer.agents import AgentService, fetch_agent
from agentauth.issuer.apikeys import ApiKeyService
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore, new_id
from agentauth.issuer.revocation import revoke_refresh_families
from agentauth.issuer.schemas import QuickstartRequest, QuickstartResponse
from agentauth.storage import owner_statements as sql
from agentauth.storage.models import (
    AgentRow,
    AuthorizationCodeRow,
    ConsentRow,
    LoginFailureRow,
    OwnerRow,
    OwnerSessionRow,
    OwnerTenantRow,
    RefreshTokenRow,
)
from agentauth.storage.ports import Query
from agentauth.storage.records import Agent, AgentStatus

EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,63}")
PASSWORD_MIN, PASSWORD_MAX = 10, 1024
FAILURE_WINDOW = timedelta(minutes=15)
FAILURES_PER_EMAIL = 5
FAILURES_PER_IP = 30
# The client_id of what the console does, in audit records and introspection of nothing (it holds no token).
CONSOLE_CLIENT_ID = "agentauth-console"
_hasher = PasswordHasher()
# Verified against when the email is unknown, so both cases cost one argon2id verification.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class LoginRefused(AgentAuthError):
    """Wrong email or password: one answer for both."""

    error = "access_denied"
    status_code = 401
    description = "the email or password is not right"


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    email: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OwnerSession:
    owner: Owner
    csrf_token: str
    expires_at: datetime

    def csrf_matches(self, presented: object) -> bool:
        return isinstance(presented, str) and hmac.compare_digest(presented.encode(), self.csrf_token.encode())


@dataclass(frozen=True, slots=True)
class ConnectedClient:
    """An OAuth client an owner let act in the tenant (a consent of the authorization code flow)."""

    client_id: str
    agent_id: str
    agent_name: str
    owner_id: str
    agent_acts: bool
    scopes: tuple[str, ...]
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OwnerLogin:
    session: OwnerSession
    session_token: str  # the cookie value: shown to the browser only


def normalize_email(email: str) -> str:
    value = email.strip().lower() if isinstance(email, str) else ""
    if len(value) > 320 or not EMAIL.fullmatch(value):
        raise InvalidRequest("enter a valid email address")
    return value


def check_password(password: str) -> str:
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidRequest(f"the password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long")
    return password


def _owner(row: OwnerRow) -> Owner:
    return Owner(id=row.id, email=row.email, created_at=row.created_at)


class OwnerService:
    def __init__(self, core: IssuerCore, agents: AgentService, api_keys: ApiKeyService) -> None:
        self.core = core
        self.agents_service = agents
        self.api_keys = api_keys

    @property
    def _idle(self) -> timedelta:
        return timedelta(seconds=self.core.settings.owner_session_idle_seconds)

    @property
    def _absolute(self) -> timedelta:
        return timedelta(seconds=self.core.settings.owner_session_max_seconds)

    # -- accounts and sessions ------------------------------------------------------------------------------

    async def signup(self, email: str, password: str, ctx: RequestContext) -> Owner:
        if self.core.settings.owner_signup != "open":
            raise AccessDenied("sign-up is closed on this server; ask its operator for an account")
        address, secret = normalize_email(email), check_password(password)
        now = self.core.clock()
        row = OwnerRow(id=new_id("own"), email=address, password_hash=_hasher.hash(secret), created_at=now)
        try:
            async with self.core.sessions.begin() as session:
                session.add(row)
                audit.record(
                    session, ctx, now, action="owner.signup", tenant_id=None, actor=row.id,
                    target_type="owner", target_id=row.id,
                )  # fmt: skip
        except (Conflict, IntegrityError) as exc:  # the storage layer hands a taken unique value over as Conflict
            raise Conflict("an account with this email exists: log in instead") from exc
        return _owner(row)

    async def login(self, email: str, password: str, ctx: RequestContext) -> OwnerLogin:
        now = self.core.clock()
        address = email.strip().lower() if isinstance(email, str) else ""
        keys = [f"email:{address[:320]}", f"ip:{ctx.ip or '-'}"]
        await self._throttle(keys, now)
        async with self.core.sessions() as session:
            row = await session.scalar(select(OwnerRow).where(OwnerRow.email == address))
        try:
            _hasher.verify(row.password_hash if row else _DUMMY_HASH, password if isinstance(password, str) else "")
            known = row is not None
        except (VerificationError, InvalidHashError):
            known = False
        if not known or row is None:
            async with self.core.sessions.begin() as session:
                session.add_all([LoginFailureRow(key=key, at=now) for key in keys])
                audit.record(
                    session, ctx, now, action="owner.login_failed", tenant_id=None, actor=row.id if row else None,
                    target_type="owner", target_id=row.id if row else None, outcome="failure",
                    reason="wrong password" if row else "unknown email",
                )  # fmt: skip
            raise LoginRefused()
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = now + self._absolute
        async with self.core.sessions.begin() as session:
            if _hasher.check_needs_rehash(row.password_hash):
                await session.execute(
                    update(OwnerRow).where(OwnerRow.id == row.id).values(password_hash=_hasher.hash(password))
                )
            await session.execute(delete(LoginFailureRow).where(LoginFailureRow.key == keys[0]))
            await session.execute(delete(OwnerSessionRow).where(OwnerSessionRow.expires_at <= now))
            session.add(OwnerSessionRow(
                token_hash=self.core.hasher.hash(token), owner_id=row.id, csrf_token=csrf, created_at=now,
                last_seen_at=now, expires_at=expires,
            ))  # fmt: skip
            audit.record(
                session, ctx, now, action="owner.login", tenant_id=None, actor=row.id, target_type="owner",
                target_id=row.id,
            )  # fmt: skip
        return OwnerLogin(OwnerSession(_owner(row), csrf, expires), token)

    async def _throttle(self, keys: list[str], now: datetime) -> None:
        since = now - FAILURE_WINDOW
        async with self.core.sessions() as session:
            rows = await session.execute(
                select(LoginFailureRow.key, func.count(), func.min(LoginFailureRow.at))
                .where(LoginFailureRow.key.in_(keys), LoginFailureRow.at > since)
                .group_by(LoginFailureRow.key)
            )
            counts = {key: (count, first) for key, count, first in rows}
        for key, limit in zip(keys, (FAILURES_PER_EMAIL, FAILURES_PER_IP), strict=True):
            count, first = counts.get(key, (0, now))
            if count >= limit:
                wait = max(1, int((first + FAILURE_WINDOW - now).total_seconds()))
                raise RateLimited(wait, f"too many failed logins: try again in {wait} seconds")

    async def session(self, token: str | None) -> OwnerSession | None:
        """The live session of a cookie value, its idle expiry pushed forward; None when there is none."""
        if not token or not isinstance(token, str) or len(token) > 200:
            return None
        now = self.core.clock()
        token_hash = self.core.hasher.hash(token)
        (rows,) = await self.core.ports.reads.fetch(Query(sql.SESSION_BY_HASH, {"hash": token_hash}))
        if not rows:
            return None
        csrf_token, last_seen_at, expires_at, owner_id, email, created_at = rows[0]
        if expires_at <= now or last_seen_at + self._idle <= now:
            return None
        if now - last_seen_at > timedelta(seconds=60):
            async with self.core.sessions.begin() as session:
                await session.execute(
                    update(OwnerSessionRow).where(OwnerSessionRow.token_hash == token_hash).values(last_seen_at=now)
                )
        return OwnerSession(Owner(id=owner_id, email=email, created_at=created_at), csrf_token, expires_at)

    async def logout(self, token: str | None, ctx: RequestContext) -> None:
        if not token or not isinstance(token, str):
            return
        now = self.core.clock()
        async with self.core.sessions.begin() as session:
            row = await session.scalar(
                select(OwnerSessionRow).where(OwnerSessionRow.token_hash == self.core.hasher.hash(token))
            )
            if row is None:
                return
            await session.delete(row)
            audit.record(
                session, ctx, now, action="owner.logout", tenant_id=None, actor=row.owner_id, target_type="owner",
                target_id=row.owner_id,
            )  # fmt: skip

    # -- tenants --------------------------------------------------------------------------------------------

    async def create_tenant(self, owner: OwnerSession, name: str, ctx: RequestContext) -> QuickstartResponse:
        """A new tenant (a root agent made by quickstart) owned by ``owner``; its API key is in the answer, once."""
        made = await self.agents_service.quickstart(QuickstartRequest(name=name, agent_type="assistant"), ctx)
        await self._link(owner, made.agent.id, "tenant.created", ctx)
        return made

    async def claim_tenant(self, owner: OwnerSession, root_api_key: str, ctx: RequestContext) -> str:
        """Own the tenant whose root agent's API key this is; its tenant id."""
        _key, agent = await self.api_keys.authenticate(root_api_key)
        if agent.parent_id is not None:
            raise InvalidRequest("this is a child agent's API key: claim a tenant with its root agent's key")
        await self._link(owner, agent.tenant_id, "tenant.claimed", ctx)
        return agent.tenant_id

    async def _link(self, owner: OwnerSession, tenant_id: str, action: str, ctx: RequestContext) -> None:
        now = self.core.clock()
        async with self.core.sessions.begin() as session:
            exists = await session.get(OwnerTenantRow, (owner.owner.id, tenant_id))
            if exists is None:
                session.add(OwnerTenantRow(owner_id=owner.owner.id, tenant_id=tenant_id, created_at=now))
            audit.record(
                session, ctx, now, action=action, tenant_id=tenant_id, actor=owner.owner.id, target_type="tenant",
                target_id=tenant_id,
            )  # fmt: skip

    async def owns(self, owner_id: str, tenant_id: str) -> bool:
        async with self.core.sessions() as session:
            return await session.get(OwnerTenantRow, (owner_id, tenant_id)) is not None

    async def principal(self, owner: OwnerSession, tenant_id: str) -> Principal:
        """Who the console acts as for ``owner`` on ``tenant_id``: the tenant's root agent with all its scopes.
        NotFound for a tenant the owner does not own, as for one that does not exist; AccessDenied once the root
        is deactivated (the tenant is stopped: nothing can act for it) - not while merely suspended."""
        if not await self.owns(owner.owner.id, tenant_id):
            raise NotFound("no such tenant")
        root = await fetch_agent(self.core, tenant_id)
        if root is None:
            raise NotFound("no such tenant")
        if root.status == AgentStatus.DEACTIVATED:
            raise AccessDenied("this tenant's root agent is deactivated: the tenant is stopped")
        # A suspended tenant stays in the owner's hands (to resume it); what it may not do, its use cases refuse.
        return Principal(
            agent=root,
            scopes=frozenset(root.scopes),
            jti=f"console:{owner.owner.id}",
            client_id=CONSOLE_CLIENT_ID,
            token_exp=int(owner.expires_at.timestamp()),
            claims={"owner": owner.owner.id},
        )

    async def connected_clients(self, owner: OwnerSession, tenant_id: str) -> list[ConnectedClient]:
        """The consents given to clients for the agents of a tenant the owner owns (any of its owners'), newest
        first."""
        await self.principal(owner, tenant_id)  # not theirs: NotFound
        async with self.core.reads() as session:
            rows = await session.execute(
                select(ConsentRow, AgentRow.name)
                .join(AgentRow, AgentRow.id == ConsentRow.agent_id)
                .where(AgentRow.tenant_id == tenant_id)
                .order_by(ConsentRow.updated_at.desc(), ConsentRow.client_id)
            )
            return [
                ConnectedClient(
                    consent.client_id,
                    consent.agent_id,
                    name,
                    consent.owner_id,
                    consent.agent_acts,
                    tuple(consent.scopes),
                    consent.updated_at,
                )
                for consent, name in rows
            ]

    async def disconnect_client(self, owner: OwnerSession, tenant_id: str, client_id: str, ctx: RequestContext) -> int:
        """Withdraw every consent a client holds in the tenant, its unused authorization codes, and every refresh
        family (with the access tokens minted from them) it holds there; the number of grants revoked. The next
        authorization request of that client asks the owner again. NotFound when the client holds nothing here."""
        await self.principal(owner, tenant_id)
        now = self.core.clock()
        tenant_agents = select(AgentRow.id).where(AgentRow.tenant_id == tenant_id)
        async with self.core.sessions.begin() as session:
            withdrawn = await session.execute(
                delete(ConsentRow).where(ConsentRow.client_id == client_id, ConsentRow.agent_id.in_(tenant_agents))
            )
            codes = await session.execute(
                delete(AuthorizationCodeRow).where(
                    AuthorizationCodeRow.client_id == client_id,
                    AuthorizationCodeRow.tenant_id == tenant_id,
                    AuthorizationCodeRow.used_at.is_(None),
                )
            )
            families = list(
                await session.scalars(
                    select(RefreshTokenRow.family_id)
                    .where(
                        RefreshTokenRow.tenant_id == tenant_id,
                        RefreshTokenRow.client_id == client_id,
                        RefreshTokenRow.status == "active",  # a family's live token: the grant still stands
                    )
                    .distinct()
                )
            )
            consents = int(getattr(withdrawn, "rowcount", 0) or 0)
            if not consents and not families and not getattr(codes, "rowcount", 0):
                raise NotFound("this client holds no consent, code or grant in this tenant")
            if families:
                await revoke_refresh_families(session, ctx, now, families, owner.owner.id, "client disconnected")
            audit.record(
                session, ctx, now, action="client.disconnected", tenant_id=tenant_id, actor=owner.owner.id,
                target_type="client", target_id=client_id[:100],
                details={"consents": consents, "grants": len(families)},
            )  # fmt: skip
        return len(families)

    async def agents(self, owner_id: str) -> list[Agent]:
        """The active agents of every tenant the owner owns, each tenant's root first."""
        (rows,) = await self.core.ports.reads.fetch(Query(sql.OWNER_AGENTS, {"owner": owner_id}))
        return [sql.agent_of(row) for row in rows]
