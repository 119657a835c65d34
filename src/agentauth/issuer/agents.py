"""Agents: quickstart (a new tenant in one call), child agents, reads, updates and deactivation."""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agentauth.did import DidKeyError, decode_did_key, did_key_document, encode_did_key
from agentauth.errors import AccessDenied, Conflict, InvalidRequest, NotFound
from agentauth.issuer import audit
from agentauth.issuer.authorization import Authorizer, use_case
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore, agent_out, new_id
from agentauth.issuer.revocation import agent_cascade, resumption_cascade, suspension_cascade
from agentauth.issuer.schemas import (
    AgentCreated,
    AgentOut,
    AgentPage,
    CreateAgentRequest,
    QuickstartRequest,
    QuickstartResponse,
    UpdateAgentRequest,
)
from agentauth.issuer.scopes import ALL_SCOPES, DEFAULT_TRUST_LEVEL, TRUST_LEVELS, narrow, parse_scope
from agentauth.issuer.secrets import new_api_key
from agentauth.issuer.webhook_delivery import TargetRefused, check_target_url, checked_address
from agentauth.keys import KeyPair, parse_public_jwk
from agentauth.keys.jwk import JwkError
from agentauth.storage import agent_statements as sql
from agentauth.storage.models import AgentRow, ApiKeyRow, AuditEventRow, CredentialRow, RefreshTokenRow
from agentauth.storage.ports import Execute, Insert, Query, Require, WritePlan
from agentauth.storage.records import Agent, AgentStatus, ApiKeyStatus, DPoPRequirement

MAX_AGENT_DEPTH = 5
MAX_PAGE = 100
MAX_OFFSET = 1_000_000_000
AGENT_DEACTIVATED = "agent is deactivated"
OPERATOR_CLIENT_ID = "agentauth-cli"


def resolve_public_key(value: str | Mapping[str, Any] | None) -> tuple[str, dict[str, str] | None]:
    """(did, private JWK or None): the caller's own did:key / public JWK, or a generated key pair."""
    if value is None:
        pair = KeyPair.generate()
        return encode_did_key(pair.public.raw), pair.private_jwk()
    try:
        if isinstance(value, str):
            return encode_did_key(decode_did_key(value.strip())), None
        if "d" in value:
            raise InvalidRequest("public_key must not contain the private member 'd'; keep your private key")
        return encode_did_key(parse_public_jwk(value)), None
    except (DidKeyError, JwkError) as exc:
        raise InvalidRequest(f"public_key: {exc}") from exc


def peer_out(agent: Agent) -> AgentOut:
    """A delegation peer as the other side sees it: who it is, not what its own tenant granted it."""
    return agent_out(agent).model_copy(
        update={
            "relationship": "delegation_peer",
            "scopes": [],
            "description": None,
            "parent_id": None,
            "require_dpop": None,
            "bind_to_agent_key": None,
            "backchannel_token_delivery_mode": None,
            "backchannel_client_notification_endpoint": None,
        }
    )


def dpop_requirement(
    require_dpop: bool | None, bind_to_agent_key: bool | None, current: DPoPRequirement
) -> DPoPRequirement:
    """The requirement a create or update asks for (``require_dpop`` / ``bind_to_agent_key``; None keeps what
    ``current`` has): binding to the agent's key implies requiring DPoP, and turning ``require_dpop`` off turns
    both off."""
    if bind_to_agent_key and require_dpop is False:
        raise InvalidRequest("bind_to_agent_key needs require_dpop: leave require_dpop out or set it to true")
    if bind_to_agent_key:
        return DPoPRequirement.AGENT_KEY
    if require_dpop is False:
        return DPoPRequirement.NONE
    if bind_to_agent_key is False:
        return DPoPRequirement.REQUIRED if require_dpop or current else DPoPRequirement.NONE
    return max(current, DPoPRequirement.REQUIRED) if require_dpop else current


def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidRequest(f"offset must be between 0 and {MAX_OFFSET}")


@dataclasses.dataclass(frozen=True, slots=True)
class ListReach:
    """A status list a kill switch changed: its URL and purpose, when the copy served until then was signed, and
    when every verifier honouring its ttl has the change (None for both: never fetched, no verifier holds it)."""

    url: str
    purpose: str
    published_at: datetime | None
    reached_by: datetime | None


class AgentService:
    def __init__(self, core: IssuerCore, authz: Authorizer) -> None:
        self.core = core
        self.authz = authz

    async def quickstart(self, request: QuickstartRequest, ctx: RequestContext) -> QuickstartResponse:
        """Register a root agent (its own tenant) and hand back everything it needs, in one unit of work."""
        self._check_registration(request.registration_token)
        did, private_jwk = resolve_public_key(request.public_key)
        identity_slot, token_slot = await self.core.status.allocate(), await self.core.status.allocate()
        now = self.core.clock()
        # Stage 1, outside any transaction: the rows, signed. A new tenant relies on nothing stored but its did:key
        # being free, which the unique index re-checks in the plan (a taken one: the same ``Conflict``).
        agent_id = new_id("agt")
        agent = Agent(
            id=agent_id, tenant_id=agent_id, parent_id=None, depth=0, path=f"/{agent_id}/", did=did,
            name=request.name, agent_type=request.agent_type, description=request.description,
            trust_level=DEFAULT_TRUST_LEVEL, status=AgentStatus.ACTIVE, scopes=tuple(ALL_SCOPES),
            identity_credential_id=None, created_at=now, updated_at=now, deactivated_at=None,
        )  # fmt: skip
        identity, identity_row = self.core.identity_credential_row(agent, now, identity_slot)
        agent = dataclasses.replace(agent, identity_credential_id=identity_row["jti"])
        raw_key, prefix = new_api_key()
        key_id = new_id("key")
        key_row = {
            "id": key_id, "agent_id": agent.id, "tenant_id": agent.tenant_id, "prefix": prefix,
            "key_hash": self.core.hasher.hash(raw_key), "name": "quickstart", "scopes": list(ALL_SCOPES),
            "status": ApiKeyStatus.ACTIVE, "created_at": now,
        }  # fmt: skip
        tokens, access_row, refresh_row = self.core.token_pair_rows(
            agent, ALL_SCOPES, status=token_slot, now=now, api_key_id=key_id
        )
        events = [
            audit.event(
                ctx, now, action=action, tenant_id=agent.tenant_id, actor=agent.id, target_type=target_type,
                target_id=target,
            )
            for action, target_type, target in (
                ("agent.registered", "agent", agent.id),
                ("credential.created", "api_key", key_id),
                ("token.issued", "agent", agent.id),
            )
        ]  # fmt: skip
        # Stage 2: one plan in the next write round.
        agent_row = {**dataclasses.asdict(agent), "scopes": list(agent.scopes)}
        await self.core.ports.writes.run(
            WritePlan((
                Insert.of(AgentRow.__table__, agent_row),
                Insert.of(CredentialRow.__table__, identity_row, access_row),
                Insert.of(ApiKeyRow.__table__, key_row),
                Insert.of(RefreshTokenRow.__table__, refresh_row),
                Insert.of(AuditEventRow.__table__, *events),
            ))
        )  # fmt: skip
        return QuickstartResponse(
            **tokens.model_dump(),
            agent=agent_out(agent),
            api_key=raw_key,
            api_key_id=key_id,
            private_key_jwk=private_jwk,
            identity_credential=identity,
        )

    def _check_registration(self, token: str | None) -> None:
        mode = self.core.settings.registration
        if mode == "closed":
            raise AccessDenied("registration is closed on this server")
        if mode == "token":
            expected = self.core.settings.registration_token
            if expected is None or token is None:
                raise AccessDenied("registration requires a registration_token")
            if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
                raise AccessDenied("registration_token is not valid")

    @use_case("agents.create")  # lasting: a child's key would outlive a delegation it was made under
    async def create_child(
        self, principal: Principal, request: CreateAgentRequest, ctx: RequestContext
    ) -> AgentCreated:
        parent = principal.agent
        if parent.depth + 1 > MAX_AGENT_DEPTH:
            raise InvalidRequest(f"agent hierarchy is limited to {MAX_AGENT_DEPTH} levels below the root")
        # Within the parent's grant AND the token's scopes: a narrowed token must not mint a wider child
        # (which, holding its own did:key, could then get those scopes by jwt-bearer).
        scopes = narrow(parse_scope(request.scopes), [s for s in parent.scopes if s in principal.scopes])
        trust = request.trust_level or parent.trust_level
        if TRUST_LEVELS.index(trust) > TRUST_LEVELS.index(parent.trust_level):
            raise AccessDenied("a child agent cannot have a higher trust level than its parent")
        dpop = dpop_requirement(request.require_dpop, request.bind_to_agent_key, parent.dpop_requirement)
        if dpop < parent.dpop_requirement:
            raise AccessDenied("a child agent cannot require less DPoP binding than its parent")
        endpoint = await self._notification_endpoint(
            request.backchannel_token_delivery_mode, request.backchannel_client_notification_endpoint, None
        )
        did, private_jwk = resolve_public_key(request.public_key)
        identity_slot = await self.core.status.allocate()
        now = self.core.clock()
        # Stage 1, outside any transaction: the rows, signed. The plan re-checks what they rely on: the parent
        # still active (held so on PostgreSQL, so its deactivation takes the child along), the did:key still free
        # (the unique index: a taken one is the same ``Conflict`` as before).
        agent_id = new_id("agt")
        agent = Agent(
            id=agent_id, tenant_id=parent.tenant_id, parent_id=parent.id, depth=parent.depth + 1,
            path=f"{parent.path}{agent_id}/", did=did, name=request.name, agent_type=request.agent_type,
            description=request.description, trust_level=trust, status=AgentStatus.ACTIVE, scopes=tuple(scopes),
            identity_credential_id=None, created_at=now, updated_at=now, deactivated_at=None, dpop_requirement=dpop,
            notification_endpoint=endpoint,
        )  # fmt: skip
        identity, identity_row = self.core.identity_credential_row(agent, now, identity_slot)
        agent = dataclasses.replace(agent, identity_credential_id=identity_row["jti"])
        event = audit.event(
            ctx, now, action="agent.created", tenant_id=agent.tenant_id, actor=parent.id, target_type="agent",
            target_id=agent.id,
        )  # fmt: skip
        await self.core.ports.writes.run(
            WritePlan((
                Require(sql.ACTIVE_AGENT, {"agent": parent.id}, 1, Conflict(AGENT_DEACTIVATED)),
                Insert.of(AgentRow.__table__, {**dataclasses.asdict(agent), "scopes": list(agent.scopes)}),
                Insert.of(CredentialRow.__table__, identity_row),
                Insert.of(AuditEventRow.__table__, event),
            ))
        )  # fmt: skip
        return AgentCreated(agent=agent_out(agent), private_key_jwk=private_jwk, identity_credential=identity)

    async def _in_subtree(self, principal: Principal, agent_id: str) -> Agent:
        """The agent if it is in the caller's subtree; otherwise 404 - existence elsewhere is not revealed."""
        agent = await agent_in_subtree(self.core, agent_id, principal.agent.path)
        if agent is None:
            raise NotFound("no such agent")
        return agent

    async def operator_principal(self, agent_id: str, operator: str) -> Principal:
        """Who an operator's kill switch (the CLI) acts as on ``agent_id``: its tenant's root agent with all its
        scopes, as the console acts for an owner. NotFound for an unknown agent; AccessDenied once the tenant is
        stopped (its root deactivated: nothing can act for it)."""
        agent = await fetch_agent(self.core, agent_id)
        root = await fetch_agent(self.core, agent.tenant_id) if agent is not None else None
        if agent is None or root is None:
            raise NotFound("no such agent")
        if root.status == AgentStatus.DEACTIVATED:
            raise AccessDenied("this agent's tenant is stopped: its root agent is deactivated")
        return Principal(
            agent=root,
            scopes=frozenset(root.scopes),
            jti=f"operator:{operator}",
            client_id=OPERATOR_CLIENT_ID,
            token_exp=int(self.core.clock().timestamp()) + 60,
            claims={"operator": operator},
        )

    async def _manageable(self, principal: Principal, agent_id: str) -> Agent:
        """An agent the caller may change (``Principal.may_manage``): 404 outside its subtree (peers included),
        403 for what it sees but may not touch (a delegate and its delegator)."""
        target = await self._in_subtree(principal, agent_id)
        if not principal.may_manage(target):
            raise AccessDenied("a delegate cannot change or deactivate its delegator or agents outside its own subtree")
        return target

    @use_case("agents.get")
    async def get(self, principal: Principal, agent_id: str, ctx: RequestContext) -> AgentOut:
        # What the list shows, one agent of it: in the subtree, or a delegation peer. Peers are the caller's own
        # relationships: a token acting under a delegation sees the delegator's subtree, not the delegator's
        # peers (agents of third tenants). One read, like the list's (the ORM's took 3 ms of CPU here).
        agent = await self.core.ports.agent_pages.visible_agent(
            principal.agent, agent_id, self.core.clock(), peers=principal.actor is None
        )
        if agent is None:
            raise NotFound("no such agent")
        return agent_out(agent) if agent.path.startswith(principal.agent.path) else peer_out(agent)

    @use_case("agents.list")
    async def list(self, principal: Principal, limit: int, offset: int, ctx: RequestContext) -> AgentPage:
        check_page(limit, offset)
        path = principal.agent.path
        # Peers are the caller's own relationships: a token acting under a delegation lists the subtree only.
        items, total = await self.core.ports.agent_pages.agent_page(
            principal.agent, self.core.clock(), limit, offset, peers=principal.actor is None
        )
        out = [agent_out(a) if a.path.startswith(path) else peer_out(a) for a in items]
        return AgentPage(items=out, total=total, limit=limit, offset=offset)

    @use_case("agents.update")
    async def update(
        self, principal: Principal, agent_id: str, request: UpdateAgentRequest, ctx: RequestContext
    ) -> AgentOut:
        target = await self._manageable(principal, agent_id)
        changes = request.model_dump(exclude_none=True)
        if not changes:
            raise InvalidRequest(
                "nothing to update: give name, description, trust_level, require_dpop, bind_to_agent_key, "
                "backchannel_token_delivery_mode or backchannel_client_notification_endpoint"
            )
        mode = changes.pop("backchannel_token_delivery_mode", None)
        given = changes.pop("backchannel_client_notification_endpoint", None)
        endpoint = await self._notification_endpoint(mode, given, target.notification_endpoint)
        dpop = dpop_requirement(
            changes.pop("require_dpop", None), changes.pop("bind_to_agent_key", None), target.dpop_requirement
        )
        if dpop < target.dpop_requirement:
            await self._check_dpop_floor(principal, target, dpop)
        if "trust_level" in changes:
            ceiling = principal.agent.trust_level
            if TRUST_LEVELS.index(changes["trust_level"]) > TRUST_LEVELS.index(ceiling):
                raise AccessDenied("cannot set a trust level above your own")
            if target.id == principal.agent.id and changes["trust_level"] != target.trust_level:
                raise AccessDenied("an agent cannot change its own trust level")
        if not target.is_active:
            raise Conflict(AGENT_DEACTIVATED)
        now = self.core.clock()
        event = audit.event(
            ctx, now, action="agent.updated", tenant_id=target.tenant_id, actor=principal.agent.id,
            target_type="agent", target_id=target.id,
            details={"fields": sorted(changes) + (["notification_endpoint"] if mode or given else [])},
        )  # fmt: skip
        fields = {f"new_{name}": changes.get(name) for name in ("name", "description", "trust_level")}
        ping = {"agent": target.id, "endpoint": endpoint, "now": now}
        ping_steps = () if endpoint == target.notification_endpoint else (Execute(sql.SET_NOTIFICATION_ENDPOINT, ping),)
        await self.core.ports.writes.run(
            WritePlan((
                # Still active when the plan runs, or nothing changes (a deactivated agent is frozen).
                Require(sql.UPDATE_AGENT, {"agent": target.id, "now": now, **fields}, 1, Conflict(AGENT_DEACTIVATED)),
                *self._dpop_steps(target, dpop, now),
                *ping_steps,
                Insert.of(AuditEventRow.__table__, event),
            ))
        )  # fmt: skip
        return agent_out(
            dataclasses.replace(
                target, **changes, dpop_requirement=dpop, notification_endpoint=endpoint, updated_at=now
            )
        )

    async def _notification_endpoint(self, mode: str | None, given: str | None, current: str | None) -> str | None:
        """The CIBA notification endpoint a create or update leaves (None: poll mode). ``given`` is checked as a
        webhook URL is (https, public addresses; ``webhook_allow_loopback`` admits http://127.0.0.1)."""
        if mode == "poll":
            if given is not None:
                raise InvalidRequest(
                    "backchannel_client_notification_endpoint is for ping mode: leave it out in poll mode"
                )
            return None
        if given is None:
            if mode == "ping" and current is None:
                raise InvalidRequest("ping mode needs backchannel_client_notification_endpoint (an https URL)")
            return current
        allow = self.core.settings.webhook_allow_loopback
        noun = "backchannel_client_notification_endpoint: notification endpoint"
        try:
            parts = check_target_url(given, allow_loopback=allow, noun=noun)
            await checked_address(parts, allow_loopback=allow, noun=noun)
        except TargetRefused as exc:
            raise InvalidRequest(str(exc)) from None
        return given

    async def _check_dpop_floor(self, principal: Principal, target: Agent, lowered: DPoPRequirement) -> None:
        """Lowering an agent's DPoP requirement: never below its parent's, and never one's own (but a root's, the
        tenant's own setting) - what a parent required of a child the child cannot undo."""
        if target.parent_id is None:
            return
        if target.id == principal.agent.id:
            raise AccessDenied("an agent cannot lower its own DPoP requirement; its parent can")
        parent = await fetch_agent(self.core, target.parent_id)
        if parent is not None and lowered < parent.dpop_requirement:
            raise AccessDenied("an agent cannot require less DPoP binding than its parent")

    @staticmethod
    def _dpop_steps(target: Agent, dpop: DPoPRequirement, now: datetime) -> tuple[Require | Execute, ...]:
        """The plan's steps for a changed DPoP requirement: the agent's own (refused if its parent's was raised
        above it meanwhile) and, when raised, its subtree's (``agent_statements.SET_DPOP``)."""
        if dpop == target.dpop_requirement:
            return ()
        values = {"agent": target.id, "level": int(dpop), "now": now}
        raised = "the parent's DPoP requirement was raised meanwhile: read the agent again"
        steps: tuple[Require | Execute, ...] = (Require(sql.SET_DPOP, values, 1, Conflict(raised)),)
        if dpop > target.dpop_requirement:
            steps += (Execute(sql.RAISE_SUBTREE_DPOP, {**values, "subtree": sql.subtree_pattern(target.path)}),)
        return steps

    @use_case("agents.deactivate")
    async def deactivate(self, principal: Principal, agent_id: str, ctx: RequestContext) -> AgentOut:
        """Deactivate the agent and its whole subtree, revoking every key, token and credential they hold."""
        target = await self._manageable(principal, agent_id)
        now = self.core.clock()
        await self.core.ports.writes.run(WritePlan(agent_cascade(ctx, now, target, actor=principal.agent.id)))
        agent = await fetch_agent(self.core, target.id)
        assert agent is not None
        return agent_out(agent)

    @use_case("agents.suspend")
    async def suspend(self, principal: Principal, agent_id: str, ctx: RequestContext) -> AgentOut:
        """Suspend the agent and its subtree, reversibly: nothing of theirs authenticates or verifies (here, and
        offline once verifiers refetch the status lists: the suspension bits), nothing is revoked."""
        target = await self._manageable(principal, agent_id)
        if target.id == principal.agent.id and principal.agent.parent_id is not None:
            raise AccessDenied("an agent cannot suspend itself; its parent or the tenant's owner can")
        if target.status == AgentStatus.DEACTIVATED:
            raise Conflict(AGENT_DEACTIVATED)
        now = self.core.clock()
        await self.core.ports.writes.run(WritePlan(suspension_cascade(ctx, now, target, actor=principal.agent.id)))
        agent = await fetch_agent(self.core, target.id)
        assert agent is not None
        return agent_out(agent)

    @use_case("agents.resume")
    async def resume(self, principal: Principal, agent_id: str, ctx: RequestContext) -> AgentOut:
        """Undo ``suspend``: the agent and every suspended agent below it act again, their credentials verify again.
        Resuming an active agent changes nothing (idempotent, as suspending a suspended one)."""
        target = await self._manageable(principal, agent_id)
        if target.status == AgentStatus.ACTIVE:
            return agent_out(target)
        if target.status == AgentStatus.DEACTIVATED:
            raise Conflict(AGENT_DEACTIVATED)
        now = self.core.clock()
        parent = "its parent is suspended: resume the agent at the top of the suspension"
        await self.core.ports.writes.run(
            WritePlan((
                Require(sql.RESUMABLE, {"agent": target.id}, 1, Conflict(parent)),
                *resumption_cascade(ctx, now, target, actor=principal.agent.id),
            ))
        )  # fmt: skip
        agent = await fetch_agent(self.core, target.id)
        assert agent is not None
        return agent_out(agent)

    async def status_reach(self, principal: Principal, agent_id: str, purpose: str) -> tuple[ListReach, ...]:
        """The ``purpose`` status lists (revocation or suspension) holding the credentials of ``agent_id``'s subtree
        and of the delegations given or received in it - what a kill switch on it changed, read right after it -
        with when verifiers honouring each list's ttl have the change (``StatusRegistry.reached_by``). Not a use
        case: it reports on one just run (the console's), for an agent of the caller's subtree."""
        target = await self._in_subtree(principal, agent_id)
        now = self.core.clock()
        (rows,) = await self.core.ports.reads.fetch(
            Query(sql.SUBTREE_LISTS, {"subtree": sql.subtree_pattern(target.path)})
        )
        column = 2 if purpose == "suspension" else 1
        return tuple(
            ListReach(
                url=self.core.status.list_url(row[0], purpose),
                purpose=purpose,
                published_at=row[column],
                reached_by=self.core.status.reached_by(row[column], now),
            )
            for row in rows
        )

    async def did_document(self, agent_id: str) -> dict[str, Any]:
        """Public: a did:key document is derivable from the DID itself, so nothing is revealed."""
        agent = await fetch_agent(self.core, agent_id)
        if agent is None:
            raise NotFound("no such agent")
        return did_key_document(agent.did)


async def fetch_agent(core: IssuerCore, agent_id: str) -> Agent | None:
    """The agent, read on the read side in one query (``Reads.fetch``); None if there is none."""
    (rows,) = await core.ports.reads.fetch(Query(sql.AGENT, {"agent": agent_id}))
    return sql.agent_of(rows[0]) if rows else None


async def agent_in_subtree(core: IssuerCore, agent_id: str, root_path: str) -> Agent | None:
    """The agent if it lies in the subtree whose path is ``root_path`` (itself included), else None."""
    agent = await fetch_agent(core, agent_id)
    return agent if agent is not None and agent.path.startswith(root_path) else None
