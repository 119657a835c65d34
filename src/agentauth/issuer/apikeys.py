"""API keys: create, list, rotate (one atomic step) and revoke; authenticate a presented key."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.errors import AccessDenied, Conflict, NotFound
from agentauth.issuer import audit
from agentauth.issuer.agents import check_page
from agentauth.issuer.authorization import Authorizer, use_case
from agentauth.issuer.client_auth import check_api_key
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore, new_id
from agentauth.issuer.revocation import audit_credentials
from agentauth.issuer.schemas import ApiKeyCreated, ApiKeyOut, ApiKeyPage, ApiKeyRotated, CreateApiKeyRequest
from agentauth.issuer.scopes import narrow, parse_scope
from agentauth.issuer.secrets import api_key_lookup_prefix, looks_like_api_key, new_api_key
from agentauth.storage import agents as agents_repo
from agentauth.storage import api_keys as repo
from agentauth.storage import credentials, refresh_tokens
from agentauth.storage.records import Agent, ApiKey, ApiKeyStatus

DELEGATE_MANAGES_NOT = "a delegate cannot manage the credentials of its delegator or of agents outside its own subtree"

# last_used_at is a hint, not a ledger: write it at most this often per key and process.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        agent_id=key.agent_id,
        name=key.name,
        prefix=key.prefix,
        scopes=list(key.scopes),
        status=key.status,
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


class ApiKeyService:
    def __init__(self, core: IssuerCore, authz: Authorizer) -> None:
        self.core = core
        self.authz = authz
        self._touched: dict[str, datetime] = {}

    async def authenticate(self, raw: str) -> tuple[ApiKey, Agent]:
        """The active key and its active agent for a presented secret, or ``invalid_client``."""
        found = None
        if isinstance(raw, str) and looks_like_api_key(raw):
            prefix = api_key_lookup_prefix(raw)
            found = (await self.core.ports.client_keys.api_keys_with_agents([prefix])).get(prefix)
        now = self.core.clock()
        check_api_key(raw, found, self.core.hasher, now)
        assert found is not None
        key, agent = found
        last = self._touched.get(key.id) or key.last_used_at
        if last is None or now - last >= LAST_USED_RESOLUTION:
            self._touched[key.id] = now
            async with self.core.sessions.begin() as session:
                await repo.touch(session, key.id, now)
        return key, agent

    async def _target_agent(self, principal: Principal, agent_id: str | None) -> Agent:
        if agent_id is None or agent_id == principal.agent.id:
            return principal.agent
        async with self.core.reads() as session:
            agent = await agents_repo.get_in_subtree(session, agent_id, principal.agent.path)
        if agent is None:
            raise NotFound("no such agent")
        if not principal.may_manage(agent):
            raise AccessDenied(DELEGATE_MANAGES_NOT)
        return agent

    async def _visible_key(self, principal: Principal, key_id: str) -> tuple[ApiKey, Agent]:
        """(key, its owner) if the owner is in the caller's subtree; otherwise 404."""
        async with self.core.reads() as session:
            key = await repo.get(session, key_id)
            owner = await agents_repo.get_in_subtree(session, key.agent_id, principal.agent.path) if key else None
        if key is None or owner is None:
            raise NotFound("no such credential")
        return key, owner

    async def _manageable_key(self, principal: Principal, key_id: str) -> ApiKey:
        """A key the caller may rotate or revoke: its owner passes ``Principal.may_manage``. Under a delegation
        that keeps the delegator's own keys (and every token they issued) out of the delegate's reach."""
        key, owner = await self._visible_key(principal, key_id)
        if not principal.may_manage(owner):
            raise AccessDenied(DELEGATE_MANAGES_NOT)
        return key

    # A delegation is temporary and revocable; an API key made with it would not be: credentials.create and
    # .rotate are lasting (issuer/operations.py), so the delegator has to make them.
    @use_case("credentials.create")
    async def create(self, principal: Principal, request: CreateApiKeyRequest, ctx: RequestContext) -> ApiKeyCreated:
        agent = await self._target_agent(principal, request.agent_id)
        if not agent.is_active:
            raise Conflict("agent is deactivated")
        # The key's scopes: within the caller's token scopes and within the owner's own grant.
        allowed = [s for s in agent.scopes if s in principal.scopes]
        scopes = narrow(parse_scope(request.scopes), allowed)
        now = self.core.clock()
        expires = now + timedelta(days=request.expires_in_days) if request.expires_in_days else None
        async with self.core.sessions.begin() as session:
            key, raw = await self._insert(session, agent, scopes, request.name, now, expires)
            audit.record(
                session, ctx, now, action="credential.created", tenant_id=agent.tenant_id, actor=principal.agent.id,
                target_type="api_key", target_id=key.id,
            )  # fmt: skip
        return ApiKeyCreated(**key_out(key).model_dump(), raw_key=raw)

    async def _insert(
        self,
        session: AsyncSession,
        agent: Agent,
        scopes: tuple[str, ...] | list[str],
        name: str | None,
        now: datetime,
        expires: datetime | None,
    ) -> tuple[ApiKey, str]:
        raw, prefix = new_api_key()
        key = await repo.insert(
            session,
            id=new_id("key"),
            agent_id=agent.id,
            tenant_id=agent.tenant_id,
            prefix=prefix,
            key_hash=self.core.hasher.hash(raw),
            name=name,
            scopes=list(scopes),
            status=ApiKeyStatus.ACTIVE,
            created_at=now,
            expires_at=expires,
        )
        return key, raw

    @use_case("credentials.list")
    async def list(
        self, principal: Principal, agent_id: str | None, limit: int, offset: int, ctx: RequestContext
    ) -> ApiKeyPage:
        check_page(limit, offset)
        async with self.core.reads() as session:
            if agent_id is not None:
                agent = await agents_repo.get_in_subtree(session, agent_id, principal.agent.path)
                if agent is None:
                    raise NotFound("no such agent")
                ids = [agent.id]
            else:
                ids = await agents_repo.subtree_ids(session, principal.agent.path)
            items, total = await repo.list_for_agents(session, ids, limit, offset)
        return ApiKeyPage(items=[key_out(k) for k in items], total=total, limit=limit, offset=offset)

    @use_case("credentials.get", credential_id="key_id")
    async def get(self, principal: Principal, key_id: str, ctx: RequestContext) -> ApiKeyOut:
        return key_out((await self._visible_key(principal, key_id))[0])

    @use_case("credentials.rotate", credential_id="key_id")
    async def rotate(self, principal: Principal, key_id: str, ctx: RequestContext) -> ApiKeyRotated:
        """New key with the same owner, name, scopes and expiry; old key revoked - in one transaction."""
        old = await self._manageable_key(principal, key_id)
        now = self.core.clock()
        async with self.core.sessions.begin() as session:
            agent = await agents_repo.get(session, old.agent_id)
            assert agent is not None
            if not agent.is_active:
                raise Conflict("agent is deactivated")
            new, raw = await self._insert(session, agent, old.scopes, old.name, now, old.expires_at)
            # The conditional UPDATE is the atomic step: of two concurrent rotations only one finds it active.
            if not await repo.revoke(session, old.id, now, replaced_by=new.id):
                raise Conflict("credential is not active (already revoked or rotated)")
            await self._revoke_issued(session, ctx, now, old.id, principal.agent.id, "api key rotated")
            audit.record(
                session, ctx, now, action="credential.rotated", tenant_id=agent.tenant_id, actor=principal.agent.id,
                target_type="api_key", target_id=old.id, details={"new_credential_id": new.id},
            )  # fmt: skip
        return ApiKeyRotated(**key_out(new).model_dump(), raw_key=raw, old_credential_id=old.id)

    @use_case("credentials.revoke", credential_id="key_id")
    async def revoke(self, principal: Principal, key_id: str, ctx: RequestContext) -> ApiKeyOut:
        key = await self._manageable_key(principal, key_id)
        now = self.core.clock()
        async with self.core.sessions.begin() as session:
            if await repo.revoke(session, key.id, now):
                await self._revoke_issued(session, ctx, now, key.id, principal.agent.id, "api key revoked")
                audit.record(
                    session, ctx, now, action="credential.revoked", tenant_id=key.tenant_id,
                    actor=principal.agent.id, target_type="api_key", target_id=key.id,
                )  # fmt: skip
            current = await repo.get(session, key.id)
        assert current is not None
        return key_out(current)

    async def _revoke_issued(
        self, session: AsyncSession, ctx: RequestContext, now: datetime, key_id: str, actor: str, cause: str
    ) -> None:
        """Tokens issued with a key die with it: its refresh families and access tokens."""
        await refresh_tokens.revoke_where(session, api_key_id=key_id)
        revoked = await credentials.revoke(session, now, api_key_id=key_id)
        audit_credentials(session, ctx, now, revoked, actor, cause)
