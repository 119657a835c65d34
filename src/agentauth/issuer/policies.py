"""Policies per tenant: CRUD, ``check_permission`` (a dry run that changes nothing) and route authorization.

Each process keeps every tenant's compiled ``PolicySet`` and reloads it when the tenant's policy version (bumped
in the transaction of any change) has moved, so a change made through any replica applies to the next request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentauth.errors import AccessDenied, InsufficientScope, InvalidRequest, NotFound
from agentauth.issuer import audit
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore, new_id
from agentauth.issuer.operations import ApiOperation
from agentauth.issuer.policy_engine import (
    Decision,
    EvaluationContext,
    Grant,
    PolicySet,
    Subject,
    build_policy,
)
from agentauth.issuer.schemas import EvaluateRequest, EvaluateResponse, PolicyIn, PolicyOut, PolicyPage
from agentauth.storage import agents as agents_repo
from agentauth.storage import delegations as delegations_repo
from agentauth.storage import policies as repo
from agentauth.storage.records import Agent, PolicyRecord

MAX_POLICIES_PER_TENANT = 10_000


def policy_out(p: PolicyRecord) -> PolicyOut:
    return PolicyOut(
        id=p.id,
        name=p.name,
        description=p.description,
        effect=p.effect,
        subjects=dict(p.subjects),
        actions=list(p.actions),
        resources=list(p.resources),
        conditions=dict(p.conditions),
        priority=p.priority,
        enabled=p.enabled,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


def _compile(p: PolicyRecord | PolicyIn, policy_id: str, *, new: bool = True) -> Any:
    return build_policy(
        id=policy_id,
        name=p.name,
        effect=p.effect,
        subjects=dict(p.subjects),
        actions=list(p.actions),
        resources=list(p.resources),
        conditions=dict(p.conditions),
        priority=p.priority,
        enabled=p.enabled,
        new=new,
    )


def lineage(agent: Agent) -> tuple[str, ...]:
    """The agent's id and those of the agents above it, root first (its tenant path)."""
    return tuple(agent.path.strip("/").split("/"))


def subject_of(acting: Agent, on_behalf_of: Agent | None = None) -> Subject:
    """The engine's subject for ``acting``, bound by the denials of the agents above it and, when it acts under
    a delegation, of the delegator and the agents above that one (issue 12 item 5: a denied agent must not act
    through a sub-agent or a delegate it creates)."""
    bound = lineage(acting)[:-1] + (lineage(on_behalf_of) if on_behalf_of is not None else ())
    return Subject(acting.id, acting.agent_type, acting.trust_level, tuple(a for a in bound if a != acting.id))


class PolicyService:
    def __init__(self, core: IssuerCore) -> None:
        self.core = core
        self._sets: dict[str, tuple[int, PolicySet]] = {}

    async def policy_set(self, tenant_id: str, known_version: int | None = None) -> PolicySet:
        """The tenant's compiled policies; ``known_version`` (read moments ago with the caller's token) spares
        the version query when the cached set is current."""
        cached = self._sets.get(tenant_id)
        if known_version is not None and cached is not None and cached[0] == known_version:
            return cached[1]
        if known_version == 0:
            empty = PolicySet(())
            self._sets[tenant_id] = (0, empty)
            return empty
        async with self.core.reads() as session:
            version = await repo.version(session, tenant_id)
            if cached is not None and cached[0] == version:
                return cached[1]
            records = await repo.list_for_tenant(session, tenant_id) if version else []
        compiled = PolicySet(_compile(r, r.id, new=False) for r in records)
        self._sets[tenant_id] = (version, compiled)
        return compiled

    # -- CRUD ---------------------------------------------------------------------------------------------

    @staticmethod
    def _require_root(principal: Principal) -> None:
        """Policies govern the whole tenant, so only its root agent may change them: a child holding
        policies.write must not be able to lock its root out. The tenant's policies are the root's own, so the
        one ownership rule judges them too - a delegate acting for the root (of this tenant or another) acts
        *for* it, never *on* what it owns."""
        principal.require("policies.write")
        if principal.agent.parent_id is not None:
            raise AccessDenied("only the tenant's root agent can change policies")
        if not principal.may_manage(principal.agent):
            raise AccessDenied("a delegate cannot change the policies of the tenant it acts for")

    async def create(self, principal: Principal, body: PolicyIn, ctx: RequestContext) -> PolicyOut:
        self._require_root(principal)
        policy_id = new_id("pol")
        _compile(body, policy_id)  # validate before storing: a policy that cannot be evaluated is refused
        now = self.core.clock()
        async with self.core.sessions.begin() as session:
            existing = await repo.list_for_tenant(session, principal.tenant_id)
            if len(existing) >= MAX_POLICIES_PER_TENANT:
                raise InvalidRequest(f"a tenant holds at most {MAX_POLICIES_PER_TENANT} policies")
            record = await repo.insert(
                session,
                id=policy_id,
                tenant_id=principal.tenant_id,
                created_at=now,
                updated_at=now,
                **body.model_dump(),
            )
            audit.record(
                session, ctx, now, action="policy.created", tenant_id=principal.tenant_id,
                actor=principal.acting.id, target_type="policy", target_id=policy_id,
            )  # fmt: skip
        return policy_out(record)

    async def list(self, principal: Principal) -> PolicyPage:
        principal.require("policies.read")
        async with self.core.reads() as session:
            records = await repo.list_for_tenant(session, principal.tenant_id)
        return PolicyPage(items=[policy_out(r) for r in records], total=len(records))

    async def get(self, principal: Principal, policy_id: str) -> PolicyOut:
        principal.require("policies.read")
        async with self.core.reads() as session:
            record = await repo.get(session, principal.tenant_id, policy_id)
        if record is None:
            raise NotFound("no such policy")
        return policy_out(record)

    async def replace(self, principal: Principal, policy_id: str, body: PolicyIn, ctx: RequestContext) -> PolicyOut:
        self._require_root(principal)
        _compile(body, policy_id)
        now = self.core.clock()
        async with self.core.sessions.begin() as session:
            if await repo.get(session, principal.tenant_id, policy_id) is None:
                raise NotFound("no such policy")
            record = await repo.update_fields(
                session, principal.tenant_id, policy_id, updated_at=now, **body.model_dump()
            )
            audit.record(
                session, ctx, now, action="policy.updated", tenant_id=principal.tenant_id,
                actor=principal.acting.id, target_type="policy", target_id=policy_id,
            )  # fmt: skip
        assert record is not None
        return policy_out(record)

    async def delete(self, principal: Principal, policy_id: str, ctx: RequestContext) -> None:
        self._require_root(principal)
        now = self.core.clock()
        async with self.core.sessions.begin() as session:
            if not await repo.remove(session, principal.tenant_id, policy_id):
                raise NotFound("no such policy")
            audit.record(
                session, ctx, now, action="policy.deleted", tenant_id=principal.tenant_id,
                actor=principal.acting.id, target_type="policy", target_id=policy_id,
            )  # fmt: skip

    # -- decisions ----------------------------------------------------------------------------------------

    async def evaluate(self, principal: Principal, request: EvaluateRequest, ctx: RequestContext) -> EvaluateResponse:
        """``check_permission``: may agent X do action A on resource R of the caller's tenant? A dry run - nothing
        changes. X is an agent of the caller's subtree (judged by its own grant, then the live delegations of this
        tenant to it) or a delegation peer (judged by those delegations alone: what another tenant granted its own
        agent is neither ours to use nor to see). Either way under this tenant's policies."""
        principal.require("policies.read")
        now = self.core.clock()
        async with self.core.reads() as session:
            agent = await agents_repo.get_in_subtree(session, request.agent_id, principal.agent.path)
            member = agent is not None
            if agent is None and principal.actor is None:
                agent = await agents_repo.get_peer(session, request.agent_id, principal.agent, now)
            if agent is None:
                raise NotFound("no such agent")
            delegations = await delegations_repo.active_to(session, agent.id, principal.tenant_id, now)
        grants = [Grant(frozenset(agent.scopes) if agent.is_active and member else frozenset())]
        grants += [Grant(frozenset(d.scopes), d.id, d.depth) for d in sorted(delegations, key=lambda d: d.depth)]
        policy_set = await self.policy_set(principal.tenant_id)
        decision = self._evaluate_grants(policy_set, agent, request, grants, ctx, now)
        if not agent.is_active:
            decision = Decision(False, "deny", "default", None, None, ["the agent is deactivated"])
        return EvaluateResponse(
            allowed=decision.allowed,
            effect=decision.effect,
            basis=decision.basis,
            matched_policy=decision.matched_policy,
            delegation_id=decision.delegation_id,
            reasons=decision.reasons,
        )

    @staticmethod
    def _evaluate_grants(
        policy_set: PolicySet,
        agent: Any,
        request: EvaluateRequest,
        grants: Sequence[Grant],
        ctx: RequestContext,
        now: Any,
    ) -> Decision:
        subject = subject_of(agent)
        ip = request.source_ip or ctx.ip
        # Own grant first at depth 0; each delegation is judged at its own depth (max_delegation_depth).
        own = policy_set.evaluate(subject, request.action, request.resource, grants[:1], EvaluationContext(now, ip, 0))
        if own.allowed or own.basis == "policy":
            return own
        for grant in grants[1:]:
            via = policy_set.evaluate(
                subject, request.action, request.resource, [grant], EvaluationContext(now, ip, grant.depth)
            )
            if via.allowed or via.basis == "policy":
                return via
        return own

    async def authorize(
        self, principal: Principal, operation: ApiOperation, ids: Mapping[str, str], ip: str | None
    ) -> None:
        """Every authenticated call of AgentAuth's own API (REST route or MCP tool) goes through the engine, as
        the operation it runs: the token's scopes give the default allows, the tenant's deny policies can take
        them away."""
        policy_set = await self.policy_set(principal.tenant_id, principal.policy_version)
        decision = policy_set.evaluate(
            subject_of(principal.acting, principal.agent if principal.actor is not None else None),
            operation.action,
            operation.resource_for(ids),
            [Grant(principal.scopes, principal.delegation_id, principal.delegation_depth)],
            EvaluationContext(self.core.clock(), ip, principal.delegation_depth),
        )
        if decision.allowed:
            return
        if decision.basis == "policy":
            raise AccessDenied("denied by policy: " + "; ".join(decision.reasons))
        raise InsufficientScope("the access token's scopes do not allow this request")
