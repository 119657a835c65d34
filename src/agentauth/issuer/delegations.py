"""Delegations: an agent hands a subset of its authority to another agent - of its own tenant or of another -
as a signed ``AgentDelegationCredential`` linked to its parent by id and SHA-256 digest.

Rules (the first four also re-checked offline by ``vc.Verifier``): scopes within the delegator's effective scopes
(its own grant, or - when it acts under a delegation - what was delegated to it); depth only shrinks; expiry never
outlives the parent; no self-delegation, no cycles; the delegate is an active agent.

Across tenants: a delegation always hands on authority over the tenant of the chain's root delegator (its
``tenant_id``), and its two agents become *delegation peers* (each sees the other, nothing else of the other
tenant; neither may manage the other). Authority received by delegation stays where the root sent it: a delegate
re-delegates only within the root delegator's tenant or down into its own subtree, never into a third tenant -
the root chose to trust the delegate's organisation, not whomever that organisation trusts; ``max_chain_depth``
limits how far authority travels, not to whom.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.errors import (
    AccessDenied,
    AgentAuthError,
    Conflict,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
    NotFound,
)
from agentauth.issuer import audit
from agentauth.issuer.agents import check_page
from agentauth.issuer.authorization import Authorizer, use_case
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore, new_id
from agentauth.issuer.schemas import (
    CreateDelegationRequest,
    DelegationChain,
    DelegationOut,
    DelegationPage,
)
from agentauth.issuer.scopes import parse_scope
from agentauth.issuer.status import StatusRegistry
from agentauth.storage import agents as agents_repo
from agentauth.storage import delegation_statements as sql
from agentauth.storage import delegations as repo
from agentauth.storage.models import AuditEventRow, CredentialRow, DelegationRow
from agentauth.storage.ports import Execute, Insert, Query, Require, WritePlan
from agentauth.storage.records import Agent, CredentialKind, Delegation, DelegationStatus
from agentauth.vc import StatusEntry

DEFAULT_MAX_CHAIN_DEPTH = 3
DEFAULT_LIFETIME = timedelta(hours=24)


def inactive_parent() -> AccessDenied:
    return AccessDenied("the delegation you act under is no longer active")


def delegation_out(d: Delegation) -> DelegationOut:
    return DelegationOut(
        id=d.id,
        delegator_agent_id=d.delegator_id,
        delegate_agent_id=d.delegate_id,
        parent_delegation_id=d.parent_id,
        scopes=list(d.scopes),
        max_chain_depth=d.remaining_depth,
        chain_depth=d.depth,
        status=d.status,
        created_at=d.created_at,
        expires_at=d.expires_at,
        revoked_at=d.revoked_at,
        credential=d.credential_jwt,
    )


def may_revoke_given(principal: Principal, chain: list[Delegation], delegator: Agent | None) -> bool:
    """The delegator or anyone upstream of it in the chain (judged by who acts), or whoever may manage the
    delegator (``Principal.may_manage``) - never the delegate it was given to, nor a delegate acting for it.
    ``chain``: the delegation and its ancestors; ``delegator``: the delegation's delegator."""
    if principal.acting.id in {d.delegator_id for d in chain}:
        return True
    return delegator is not None and principal.may_manage(delegator)


async def may_revoke(session: AsyncSession, principal: Principal, delegation: Delegation) -> bool:
    """``may_revoke_given``, reading the chain and the delegator in ``session``."""
    chain = await repo.chain(session, delegation)
    return may_revoke_given(principal, chain, await agents_repo.get(session, delegation.delegator_id))


class DelegationService:
    def __init__(self, core: IssuerCore, authz: Authorizer) -> None:
        self.core = core
        self.authz = authz

    @use_case("delegations.create")
    async def create(
        self, principal: Principal, request: CreateDelegationRequest, ctx: RequestContext
    ) -> DelegationOut:
        delegator = principal.acting
        requested = parse_scope(request.scopes) or ()
        slot = await self.core.status.allocate()
        now = self.core.clock()
        # Stage 1, outside any transaction: one read (the delegate; the delegation acted under and its chain),
        # the rules, the signed credential.
        queries = [Query(sql.AGENT, {"agent": request.delegate_agent_id})]
        if principal.delegation_id is not None:
            queries.append(Query(sql.CHAIN, {"delegation": principal.delegation_id}))
        found = await self.core.ports.reads.fetch(*queries)
        chain = [repo.from_values(row) for row in found[1]] if len(found) > 1 else []
        parent = self._parent(principal, chain, now)
        if parent is not None:
            effective = set(parent.scopes) & principal.scopes
            if parent.remaining_depth == 0:
                raise AccessDenied("the delegation you act under does not allow re-delegation (depth 0)")
            ceiling_depth = parent.remaining_depth - 1
            ceiling_exp: datetime | None = parent.expires_at
        else:
            effective = set(delegator.scopes) & principal.scopes
            ceiling_depth, ceiling_exp = 10, None
        excess = sorted(set(requested) - effective)
        if excess:
            raise InvalidScope(f"cannot delegate scopes you do not hold: {', '.join(excess)}")
        depth = request.max_chain_depth
        if depth is None:
            depth = min(DEFAULT_MAX_CHAIN_DEPTH, ceiling_depth)
        elif depth > ceiling_depth:
            raise InvalidRequest(f"max_chain_depth {depth} exceeds what the parent allows ({ceiling_depth})")
        if request.expires_in_hours is not None:
            expires = now + timedelta(hours=request.expires_in_hours)
            if ceiling_exp is not None and expires > ceiling_exp:
                raise InvalidRequest("expires_in_hours would outlive the parent delegation")
        else:
            expires = min(now + DEFAULT_LIFETIME, ceiling_exp) if ceiling_exp else now + DEFAULT_LIFETIME
        delegate, gone = self._delegate(principal, [repo.agent_from_values(row) for row in found[0]])
        if delegate.id == delegator.id:
            raise InvalidRequest("an agent cannot delegate to itself")
        if delegate.id in {d.delegator_id for d in chain} | {d.delegate_id for d in chain}:
            raise InvalidRequest("the delegate is already in this delegation chain (cycle)")
        delegation, credential_row = self._sign(delegator, delegate, requested, depth, expires, parent, slot, now,
                                                principal)  # fmt: skip
        details = {"delegate": delegate.id, "scopes": list(requested), "parent": parent.id if parent else None}
        events = [
            audit.event(
                ctx, now, action="delegation.created", tenant_id=principal.tenant_id, actor=delegator.id,
                target_type="delegation", target_id=delegation.id, details=details,
            )
        ]  # fmt: skip
        if delegate.tenant_id != principal.tenant_id:
            # The delegate's tenant learns of the authority its agent now holds, in its own log.
            events.append(
                audit.event(
                    ctx, now, action="delegation.received", tenant_id=delegate.tenant_id, actor=delegator.id,
                    target_type="delegation", target_id=delegation.id, details=details | {"delegator": delegator.id},
                )
            )  # fmt: skip
        # Stage 2: one plan, re-checking what stage 1 relied on - with the answer each change gives when it came
        # before the request: the acting agent deactivated (its token no longer authenticates), the delegate
        # deactivated, the delegation acted under revoked or expired. The agents in id order (PostgreSQL locks).
        agents = sorted([
            (delegator.id, InvalidToken("the access token is invalid", debug="the acting agent was deactivated")),
            (delegate.id, gone),
        ])  # fmt: skip
        checks = [Require(sql.ACTIVE_AGENT, {"agent": agent_id}, 1, error) for agent_id, error in agents]
        if parent is not None:
            checks.append(Require(sql.LIVE_DELEGATION, {"delegation": parent.id, "now": now}, 1, inactive_parent()))
        await self.core.ports.writes.run(
            WritePlan((
                *checks,
                Insert.of(CredentialRow.__table__, credential_row),
                Insert.of(DelegationRow.__table__, repo.row_values(delegation)),
                Insert.of(AuditEventRow.__table__, *events),
            ))
        )  # fmt: skip
        return delegation_out(delegation)

    @staticmethod
    def _delegate(principal: Principal, found: list[Agent]) -> tuple[Agent, AgentAuthError]:
        """The agent to delegate to: any active agent, except that authority received by delegation crosses into
        another tenant only down into the acting delegate's own subtree (see the module docstring); with the
        error that answers its deactivation."""
        if not found:
            raise NotFound("no such agent")
        delegate = found[0]
        foreign = delegate.tenant_id != principal.tenant_id
        # Another tenant's agent: its state is not revealed.
        gone: AgentAuthError = NotFound("no such agent") if foreign else Conflict("the delegate agent is deactivated")
        if not delegate.is_active:
            raise gone
        if foreign and principal.actor is not None and not delegate.path.startswith(principal.actor.path):
            raise AccessDenied(
                "authority received by delegation can be re-delegated only within the delegator's tenant or to "
                "agents of your own subtree, not into another tenant"
            )
        return delegate, gone

    @staticmethod
    def _parent(principal: Principal, chain: list[Delegation], now: datetime) -> Delegation | None:
        """The delegation the principal acts under (the last link of ``chain``), if any; it must be live."""
        if principal.delegation_id is None:
            return None
        parent = chain[-1] if chain and chain[-1].id == principal.delegation_id else None
        if parent is None or not parent.live_at(now):
            raise inactive_parent()
        return parent

    def _sign(
        self,
        delegator: Agent,
        delegate: Agent,
        scopes: tuple[str, ...],
        depth: int,
        expires: datetime,
        parent: Delegation | None,
        slot: StatusEntry,
        now: datetime,
        principal: Principal,
    ) -> tuple[Delegation, dict[str, Any]]:
        """The delegation with its signed credential, and the ``credentials`` row that records the credential."""
        delegation_id = new_id("dlg")
        jwt, claims = self.core.credentials.issue_delegation_credential(
            delegate_did=delegate.did,
            delegator_did=delegator.did,
            scopes=scopes,
            remaining_depth=depth,
            now=now,
            expires_at=expires,
            status=self.core.status.entries(slot),
            parent_jwt=parent.credential_jwt if parent else None,
            parent_id=parent.credential_jti if parent else None,
        )
        list_id, index = StatusRegistry.parse_entry(slot)
        credential_row = {
            "jti": claims["jti"], "kind": CredentialKind.DELEGATION, "agent_id": delegate.id,
            "tenant_id": delegate.tenant_id, "delegation_id": delegation_id, "scopes": list(scopes),
            "status_list_id": list_id, "status_index": index, "kid": self.core.credentials.active_kid,
            "issued_at": now, "expires_at": expires,
        }  # fmt: skip
        delegation = Delegation(
            id=delegation_id,
            tenant_id=principal.tenant_id,
            delegator_id=delegator.id,
            delegate_id=delegate.id,
            parent_id=parent.id if parent else None,
            path=f"{parent.path if parent else '/'}{delegation_id}/",
            depth=(parent.depth + 1) if parent else 1,
            scopes=scopes,
            remaining_depth=depth,
            credential_jti=claims["jti"],
            credential_jwt=jwt,
            status=DelegationStatus.ACTIVE,
            created_at=now,
            expires_at=expires,
            revoked_at=None,
        )
        return delegation, credential_row

    async def _visible(self, session: AsyncSession, principal: Principal, delegation_id: str) -> Delegation:
        """Visible to the agents it connects and to anyone whose subtree holds one of them (in either tenant: both
        sides may know what authority flows between them); otherwise 404."""
        delegation = await repo.get(session, delegation_id)
        if delegation is None:
            raise NotFound("no such delegation")
        acting = principal.acting.id
        if acting in (delegation.delegator_id, delegation.delegate_id):
            return delegation
        for agent_id in (delegation.delegator_id, delegation.delegate_id):
            if await agents_repo.get_in_subtree(session, agent_id, principal.agent.path):
                return delegation
        raise NotFound("no such delegation")

    @use_case("delegations.get")
    async def get(self, principal: Principal, delegation_id: str, ctx: RequestContext) -> DelegationOut:
        async with self.core.reads() as session:
            return delegation_out(await self._visible(session, principal, delegation_id))

    @use_case("delegations.list")
    async def list(
        self, principal: Principal, role: str | None, limit: int, offset: int, ctx: RequestContext
    ) -> DelegationPage:
        check_page(limit, offset)
        if role not in (None, "delegator", "delegate", "subtree"):
            raise InvalidRequest("role must be delegator, delegate or subtree")
        async with self.core.reads() as session:
            if role == "subtree":
                # Every delegation of this tenant granted in the caller's subtree (the tenant root: all of them);
                # under a delegation, the delegate's own subtree - what it could manage itself.
                items, total = await repo.list_for_subtree(
                    session, principal.tenant_id, principal.acting.path, limit, offset
                )
                return DelegationPage(items=[delegation_out(d) for d in items], total=total, limit=limit, offset=offset)
            # Its own token: every delegation the agent is party to, whichever tenant's authority it carries.
            # Under a delegation: those within the tenant the token acts for.
            tenant = None if principal.actor is None else principal.tenant_id
            items, total = await repo.list_for_agent(session, tenant, principal.acting.id, role, limit, offset)
        return DelegationPage(items=[delegation_out(d) for d in items], total=total, limit=limit, offset=offset)

    @use_case("delegations.chain")
    async def chain(self, principal: Principal, delegation_id: str, ctx: RequestContext) -> DelegationChain:
        async with self.core.reads() as session:
            delegation = await self._visible(session, principal, delegation_id)
            links = await repo.chain(session, delegation)
        return DelegationChain(
            delegation_id=delegation.id,
            links=[delegation_out(d) for d in links],
            effective_scopes=sorted(delegation.scopes),
            root_delegator_agent_id=links[0].delegator_id,
        )

    @use_case("delegations.revoke")
    async def revoke(self, principal: Principal, delegation_id: str, ctx: RequestContext) -> DelegationOut:
        """Revoke a delegation, every delegation below it and every token resting on any of them."""
        now = self.core.clock()
        # Stage 1: one read (the delegation, its ancestors, their agents), the rules.
        (rows,) = await self.core.ports.reads.fetch(Query(sql.CHAIN_WITH_AGENTS_BY_ID, {"delegation": delegation_id}))
        chain = [repo.link_of(row) for row in rows]
        if not chain or chain[-1].id != delegation_id:
            raise NotFound("no such delegation")
        delegation, delegate, delegator = chain[-1], repo.delegate_of(rows[-1]), repo.delegator_of(rows[-1])
        acting = principal.acting.id
        # Visible to the agents it connects and to anyone whose subtree holds one of them (``_visible``).
        if acting not in (delegator.id, delegate.id) and not any(
            agent.path.startswith(principal.agent.path) for agent in (delegator, delegate)
        ):
            raise NotFound("no such delegation")
        if not may_revoke_given(principal, chain, delegator):
            raise AccessDenied("only the delegator (or someone above it) can revoke this delegation")
        # Stage 2: one plan - the cascade of ``revocation.revoke_delegation_subtrees`` in set-at-a-time steps,
        # each audit event made by ``audit.event`` and fanned out in SQL over the rows it revokes.
        subtree = sql.subtree(delegation.path) | {"now": now}
        revoked = audit.event(ctx, now, action="delegation.revoked", tenant_id=None, actor=acting,
                              target_type="delegation")  # fmt: skip
        resting = audit.event(ctx, now, action="_credential.revoked", tenant_id=None, actor=acting,
                              target_type="credential", details={"cause": "delegation revoked"})  # fmt: skip
        await self.core.ports.writes.run(
            WritePlan((
                Execute(sql.LOCK_SUBTREE, subtree),
                Execute(sql.AUDIT_REVOKED_DELEGATIONS, subtree | _constant(revoked)),
                Execute(sql.AUDIT_REVOKED_CREDENTIALS, subtree | _constant(resting)),
                Execute(sql.BUMP_RESTING_LISTS, subtree),
                Execute(sql.REVOKE_RESTING, subtree),
                Execute(sql.REVOKE_SUBTREE, subtree),
            ))
        )  # fmt: skip
        if delegation.status == DelegationStatus.ACTIVE:
            delegation = dataclasses.replace(delegation, status=DelegationStatus.REVOKED, revoked_at=now)
        return delegation_out(delegation)


def _constant(event: dict[str, Any]) -> dict[str, Any]:
    """The columns of ``event`` that are the same for every row it is fanned out over."""
    return {k: v for k, v in event.items() if k not in ("tenant_id", "target_id")}
