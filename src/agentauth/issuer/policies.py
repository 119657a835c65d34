"""Policies per tenant: CRUD and ``check_permission`` (a dry run that changes nothing). The compiled policy sets
and the authorization of every operation are ``issuer/authorization.py``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agentauth.errors import NotFound
from agentauth.issuer import audit
from agentauth.issuer.authorization import Authorizer, subject_of, use_case
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore, new_id
from agentauth.issuer.policy_engine import Decision, EvaluationContext, Grant, PolicySet
from agentauth.issuer.policy_sets import Change, TenantPolicies, compile_policy
from agentauth.issuer.schemas import EvaluateRequest, EvaluateResponse, PolicyIn, PolicyOut, PolicyPage
from agentauth.storage import policies as repo
from agentauth.storage.models import AuditEventRow
from agentauth.storage.ports import Insert
from agentauth.storage.records import PolicyRecord

MAX_POLICIES_PER_TENANT = 10_000


def _content(body: PolicyIn) -> dict[str, Any]:
    """A policy's content as its record holds it."""
    values = body.model_dump()
    return values | {"actions": tuple(values["actions"]), "resources": tuple(values["resources"])}


def _audit(event: dict[str, Any]) -> Insert:
    return Insert.of(AuditEventRow.__table__, event)


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
    # Each write is one plan on the general write path (``PolicySets.write``): stage 1 - the policy validated and
    # compiled, its row and audit event built - outside any transaction, then the plan, whose ``Require`` steps
    # re-check what it relies on (the tenant's limit, the policy's existence) in the round's transaction.

    @use_case("policies.create")
    async def create(self, principal: Principal, body: PolicyIn, ctx: RequestContext) -> PolicyOut:
        policy_id = new_id("pol")
        # Validate before storing: a policy that cannot be evaluated is refused.
        compiled = compile_policy(body, policy_id)
        now, tenant_id = self.core.clock(), principal.tenant_id
        record = PolicyRecord(id=policy_id, tenant_id=tenant_id, created_at=now, updated_at=now, **_content(body))
        event = self._event(principal, ctx, now, "policy.created", policy_id)
        steps = (repo.below_limit(tenant_id, MAX_POLICIES_PER_TENANT), repo.insert(record), _audit(event))
        await self.authz.sets.write(tenant_id, lambda _: (steps, None, (record, compiled)))
        return policy_out(record)

    @use_case("policies.list")
    async def list(self, principal: Principal, ctx: RequestContext) -> PolicyPage:
        _, records = await self.core.ports.policies.tenant_policies(principal.tenant_id)
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
        compiled = compile_policy(body, policy_id)
        now, tenant_id = self.core.clock(), principal.tenant_id
        event = self._event(principal, ctx, now, "policy.updated", policy_id)
        # The creation time is the stored policy's: the writer's set holds it, and the plan commits only if that set
        # is exactly what is stored (else it is reloaded and the plan built again).
        replaced: list[PolicyRecord] = []

        def change(current: TenantPolicies) -> Change:
            old = current.by_id.get(policy_id)
            record = PolicyRecord(
                id=policy_id, tenant_id=tenant_id, created_at=old[0].created_at if old else now, updated_at=now,
                **_content(body),
            )  # fmt: skip
            replaced[:] = [record]
            return (repo.replace(record), _audit(event)), policy_id, (record, compiled)

        await self.authz.sets.write(tenant_id, change)
        return policy_out(replaced[0])

    @use_case("policies.delete")
    async def delete(self, principal: Principal, policy_id: str, ctx: RequestContext) -> None:
        now, tenant_id = self.core.clock(), principal.tenant_id
        event = self._event(principal, ctx, now, "policy.deleted", policy_id)
        steps = (repo.remove(tenant_id, policy_id), _audit(event))
        await self.authz.sets.write(tenant_id, lambda _: (steps, policy_id, None))

    @staticmethod
    def _event(principal: Principal, ctx: RequestContext, now: datetime, action: str, policy_id: str) -> dict[str, Any]:
        return audit.event(
            ctx, now, action=action, tenant_id=principal.tenant_id, actor=principal.acting.id,
            target_type="policy", target_id=policy_id,
        )  # fmt: skip

    # -- decisions ----------------------------------------------------------------------------------------

    @use_case("policies.evaluate")
    async def evaluate(self, principal: Principal, request: EvaluateRequest, ctx: RequestContext) -> EvaluateResponse:
        """``check_permission``: may agent X do action A on resource R of the caller's tenant? A dry run - nothing
        changes. X is an agent of the caller's subtree (judged by its own grant, then the live delegations of this
        tenant to it) or a delegation peer (judged by those delegations alone: what another tenant granted its own
        agent is neither ours to use nor to see). Either way under this tenant's policies. The agent and its
        delegations come in one read (``PolicyReads.permission_subject``), the policies from the compiled set of
        the version the caller's token was read with."""
        now = self.core.clock()
        found = await self.core.ports.policies.permission_subject(
            request.agent_id, principal.agent, principal.actor is None, now
        )
        if found is None:
            raise NotFound("no such agent")
        agent = found.agent
        grants = [Grant(frozenset(agent.scopes) if agent.is_active and found.member else frozenset())]
        grants += [Grant(frozenset(d.scopes), d.id, d.depth) for d in found.delegations]
        policy_set = await self.authz.policy_set(principal.tenant_id, principal.policy_version)
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
