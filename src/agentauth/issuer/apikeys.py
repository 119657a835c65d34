"""API keys: create, list, rotate (one atomic step) and revoke; authenticate a presented key."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta

from agentauth.errors import AccessDenied, Conflict, NotFound
from agentauth.issuer import audit
from agentauth.issuer.agents import AGENT_DEACTIVATED, agent_in_subtree, check_page
from agentauth.issuer.authorization import Authorizer, use_case
from agentauth.issuer.client_auth import check_api_key
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore, new_id
from agentauth.issuer.revocation import key_cascade
from agentauth.issuer.schemas import ApiKeyCreated, ApiKeyOut, ApiKeyPage, ApiKeyRotated, CreateApiKeyRequest
from agentauth.issuer.scopes import narrow, parse_scope
from agentauth.issuer.secrets import api_key_lookup_prefix, looks_like_api_key, new_api_key
from agentauth.storage import agent_statements as sql
from agentauth.storage.models import ApiKeyRow, AuditEventRow
from agentauth.storage.ports import Execute, Insert, Query, Require, WritePlan
from agentauth.storage.records import Agent, ApiKey, ApiKeyStatus

NOT_ACTIVE = "credential is not active (already revoked or rotated)"
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
            await self.core.ports.writes.run(WritePlan((Execute(sql.TOUCH_KEY, {"key": key.id, "now": now}),)))
        return key, agent

    async def _target_agent(self, principal: Principal, agent_id: str | None) -> Agent:
        if agent_id is None or agent_id == principal.agent.id:
            return principal.agent
        agent = await agent_in_subtree(self.core, agent_id, principal.agent.path)
        if agent is None:
            raise NotFound("no such agent")
        if not principal.may_manage(agent):
            raise AccessDenied(DELEGATE_MANAGES_NOT)
        return agent

    async def _visible_key(self, principal: Principal, key_id: str) -> tuple[ApiKey, Agent]:
        """(key, its owner) if the owner is in the caller's subtree; otherwise 404."""
        (rows,) = await self.core.ports.reads.fetch(Query(sql.KEY_AND_OWNER, {"key": key_id}))
        if rows:
            key, owner = sql.key_and_owner(rows[0])
            if owner.path.startswith(principal.agent.path):
                return key, owner
        raise NotFound("no such credential")

    async def _manageable_key(self, principal: Principal, key_id: str) -> tuple[ApiKey, Agent]:
        """A key the caller may rotate or revoke, with its owner: the owner passes ``Principal.may_manage``. Under a
        delegation that keeps the delegator's own keys (and every token they issued) out of the delegate's reach."""
        key, owner = await self._visible_key(principal, key_id)
        if not principal.may_manage(owner):
            raise AccessDenied(DELEGATE_MANAGES_NOT)
        return key, owner

    # A delegation is temporary and revocable; an API key made with it would not be: credentials.create and
    # .rotate are lasting (issuer/operations.py), so the delegator has to make them.
    @use_case("credentials.create")
    async def create(self, principal: Principal, request: CreateApiKeyRequest, ctx: RequestContext) -> ApiKeyCreated:
        agent = await self._target_agent(principal, request.agent_id)
        if not agent.is_active:
            raise Conflict(AGENT_DEACTIVATED)
        # The key's scopes: within the caller's token scopes and within the owner's own grant.
        allowed = [s for s in agent.scopes if s in principal.scopes]
        scopes = narrow(parse_scope(request.scopes), allowed)
        now = self.core.clock()
        expires = now + timedelta(days=request.expires_in_days) if request.expires_in_days else None
        key, raw = self._new_key(agent, scopes, request.name, now, expires)
        event = audit.event(
            ctx, now, action="credential.created", tenant_id=agent.tenant_id, actor=principal.agent.id,
            target_type="api_key", target_id=key.id,
        )  # fmt: skip
        await self.core.ports.writes.run(
            WritePlan((_owner_active(agent), _insert(key), Insert.of(AuditEventRow.__table__, event)))
        )
        return ApiKeyCreated(**key_out(key).model_dump(), raw_key=raw)

    def _new_key(
        self, agent: Agent, scopes: Sequence[str], name: str | None, now: datetime, expires: datetime | None
    ) -> tuple[ApiKey, str]:
        """(a new active key of ``agent``, its secret) - not yet stored."""
        raw, prefix = new_api_key()
        key = ApiKey(
            id=new_id("key"), agent_id=agent.id, tenant_id=agent.tenant_id, prefix=prefix,
            key_hash=self.core.hasher.hash(raw), name=name, scopes=tuple(scopes), status=ApiKeyStatus.ACTIVE,
            created_at=now, expires_at=expires, last_used_at=None, revoked_at=None, replaced_by=None,
        )  # fmt: skip
        return key, raw

    @use_case("credentials.list")
    async def list(
        self, principal: Principal, agent_id: str | None, limit: int, offset: int, ctx: RequestContext
    ) -> ApiKeyPage:
        check_page(limit, offset)
        page = {"limit": limit, "offset": offset}
        if agent_id is None:
            counted, rows = await self.core.ports.reads.fetch(
                *(Query(q, page | {"subtree": sql.subtree_pattern(principal.agent.path)}) for q in sql.KEYS_OF_SUBTREE)
            )
        else:
            # The agent and its keys in one snapshot; the keys are shown only if the agent is in the subtree.
            agents, counted, rows = await self.core.ports.reads.fetch(
                Query(sql.AGENT, {"agent": agent_id}),
                *(Query(q, page | {"agent": agent_id}) for q in sql.KEYS_OF_AGENT),
            )
            if not agents or not sql.agent_of(agents[0]).path.startswith(principal.agent.path):
                raise NotFound("no such agent")
        items, total = [sql.key_of(row) for row in rows], int(counted[0][0])
        return ApiKeyPage(items=[key_out(k) for k in items], total=total, limit=limit, offset=offset)

    @use_case("credentials.get", credential_id="key_id")
    async def get(self, principal: Principal, key_id: str, ctx: RequestContext) -> ApiKeyOut:
        return key_out((await self._visible_key(principal, key_id))[0])

    @use_case("credentials.rotate", credential_id="key_id")
    async def rotate(self, principal: Principal, key_id: str, ctx: RequestContext) -> ApiKeyRotated:
        """New key with the same owner, name, scopes and expiry; old key revoked - one plan, all or nothing."""
        old, agent = await self._manageable_key(principal, key_id)
        if not agent.is_active:
            raise Conflict(AGENT_DEACTIVATED)
        if old.status != ApiKeyStatus.ACTIVE:
            raise Conflict(NOT_ACTIVE)
        now = self.core.clock()
        new, raw = self._new_key(agent, old.scopes, old.name, now, old.expires_at)
        actor = principal.agent.id
        event = audit.event(
            ctx, now, action="credential.rotated", tenant_id=agent.tenant_id, actor=actor, target_type="api_key",
            target_id=old.id, details={"new_credential_id": new.id},
        )  # fmt: skip
        await self.core.ports.writes.run(
            WritePlan((
                _owner_active(agent),
                _insert(new),
                # The conditional UPDATE is the atomic step: of two concurrent rotations only one finds it active.
                Require(sql.REVOKE_KEY, {"key": old.id, "now": now, "successor": new.id}, 1, Conflict(NOT_ACTIVE)),
                *key_cascade(ctx, now, old.id, actor, "api key rotated"),
                Insert.of(AuditEventRow.__table__, event),
            ))
        )  # fmt: skip
        return ApiKeyRotated(**key_out(new).model_dump(), raw_key=raw, old_credential_id=old.id)

    @use_case("credentials.revoke", credential_id="key_id")
    async def revoke(self, principal: Principal, key_id: str, ctx: RequestContext) -> ApiKeyOut:
        """Revoke the key and what was issued with it; a key no longer active is left as it is (and shown)."""
        key, _ = await self._manageable_key(principal, key_id)
        if key.status != ApiKeyStatus.ACTIVE:
            return key_out(key)
        now = self.core.clock()
        event = audit.event(
            ctx, now, action="credential.revoked", tenant_id=key.tenant_id, actor=principal.agent.id,
            target_type="api_key", target_id=key.id,
        )  # fmt: skip
        try:
            await self.core.ports.writes.run(
                WritePlan((
                    Require(sql.REVOKE_KEY, {"key": key.id, "now": now, "successor": None}, 1, _Gone(NOT_ACTIVE)),
                    *key_cascade(ctx, now, key.id, principal.agent.id, "api key revoked"),
                    Insert.of(AuditEventRow.__table__, event),
                ))
            )  # fmt: skip
        except _Gone:
            # Revoked or rotated since stage 1 read it, by another request: nothing to do here; show it as it is.
            return key_out((await self._visible_key(principal, key.id))[0])
        return key_out(dataclasses.replace(key, status=ApiKeyStatus.REVOKED, revoked_at=now))


class _Gone(Conflict):
    """The key was no longer active when the plan ran (``revoke`` answers with the key as it is, no error)."""


def _owner_active(agent: Agent) -> Require:
    """Re-check in the plan that the key's owner is still active (and, on PostgreSQL, hold it so)."""
    return Require(sql.ACTIVE_AGENT, {"agent": agent.id}, 1, Conflict(AGENT_DEACTIVATED))


def _insert(key: ApiKey) -> Insert:
    return Insert.of(ApiKeyRow.__table__, {**dataclasses.asdict(key), "scopes": list(key.scopes)})
