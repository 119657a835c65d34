"""Policies per tenant: CRUD and ``check_permission`` (a dry run that changes nothing). The compiled policy sets
and the authorization of every operation are ``issuer/authorization.py``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentauth.errors import InvalidRequest, NotFound
from agentauth.issuer import audit
from agentauth.issuer.authorization import Authorizer, compile_policy, subject_of, use_case
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore, new_id
from agentauth.issuer.policy_engine import Decision, EvaluationContext, Grant, PolicySet
from agentauth.issuer.schemas import EvaluateRequest, EvaluateResponse, PolicyIn, PolicyOut, PolicyPage
from agentauth.storage import agents as agents_repo
from agentauth.storage import delegations as delegations_repo
from agentauth.storage import policies as repo
from agentauth.storage.records import PolicyRecord

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


class PolicyService:
    def __init__(self, core: IssuerCore, authz: Authorizer) -> None:
        self.core = core
        self.authz = authz

    # -- CRUD (policies.create, .replace and .delete are root_only: issuer/operations.py) -------------------

    @use_case("policies.create")
    async def create(self, principal: Principal, body: PolicyIn, ctx: RequestContext) -> PolicyOut:
        policy_id = new_id("pol")
        compile_policy(body, policy_id)  # validate before storing: a policy that cannot be evaluated is refused
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

    @use_case("policies.list")
    async def list(self, principal: Principal, ctx: RequestContext) -> PolicyPage:
        async with self.core.reads() as session:
            records = await repo.list_for_tenant(session, principal.tenant_id)
        return PolicyPage(items=[policy_out(r) for r in records], total=len(records))

    @use_case("policies.get")
    async def get(self, principal: Principal, policy_id: str, ctx: RequestContext) -> PolicyOut:
        async with self.core.reads() as session:
            record = await repo.get(session, principal.tenant_id, policy_id)
        if record is None:
            raise NotFound("no such policy")
        return policy_out(record)

    @use_case("policies.replace")
    async def replace(self, principal: Principal, policy_id: str, body: PolicyIn, ctx: RequestContext) -> PolicyOut:
        compile_policy(body, policy_id)
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

    @use_case("policies.delete")
    async def delete(self, principal: Principal, policy_id: str, ctx: RequestContext) -> None:
        now = self.core.clock()
        async with self.core.sessions.begin() as session:
            if not await repo.remove(session, principal.tenant_id, policy_id):
                raise NotFound("no such policy")
            audit.record(
                session, ctx, now, action="policy.deleted", tenant_id=principal.tenant_id,
                actor=principal.acting.id, target_type="policy", target_id=policy_id,
            )  # fmt: skip

    # -- decisions ----------------------------------------------------------------------------------------

    @use_case("policies.evaluate")
    async def evaluate(self, principal: Principal, request: EvaluateRequest, ctx: RequestContext) -> EvaluateResponse:
        """``check_permission``: may agent X do action A on resource R of the caller's tenant? A dry run - nothing
        changes. X is an agent of the caller's subtree (judged by its own grant, then the live delegations of this
        tenant to it) or a delegation peer (judged by those delegations alone: what another tenant granted its own
        agent is neither ours to use nor to see). Either way under this tenant's policies."""
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
        policy_set = await self.authz.policy_set(principal.tenant_id)
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
