"""Cascading revocation: every object revoked sets its status bit and writes one audit event.

Revoking an API key and deactivating a subtree are plan steps (``key_cascade``, ``agent_cascade``) for the
general write path (``ports.Writes``): each revoked set is one statement, its audit events one ``INSERT ...
SELECT`` over the same condition (``storage.agent_statements``). Delegations and refresh families are revoked in
a caller's unit of work (``revoke_delegation_subtrees``, ``revoke_refresh_families``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.issuer import audit
from agentauth.issuer.context import RequestContext
from agentauth.storage import agent_statements as sql
from agentauth.storage import credentials, delegations, refresh_tokens
from agentauth.storage.ports import Execute
from agentauth.storage.records import Agent, Credential

# A revoked credential's audit action: its kind, then this ("access_credential.revoked").
REVOKED_CREDENTIAL = "_credential.revoked"
AGENT_DEACTIVATED = "agent deactivated"


def audit_credentials(
    session: AsyncSession, ctx: RequestContext, now: datetime, revoked: list[Credential], actor: str, cause: str
) -> None:
    for credential in revoked:
        audit.record(
            session, ctx, now, action=f"{credential.kind}{REVOKED_CREDENTIAL}", tenant_id=credential.tenant_id,
            actor=actor, target_type="credential", target_id=credential.jti, details={"cause": cause},
        )  # fmt: skip


def _credentials(
    cascade: sql.CredentialCascade, ctx: RequestContext, now: datetime, actor: str, cause: str, **values: Any
) -> tuple[Execute, ...]:
    """The steps revoking the live credentials ``cascade`` names, each with its event (as ``audit_credentials``)."""
    event = audit.event(
        ctx, now, action=REVOKED_CREDENTIAL, tenant_id=None, actor=actor, target_type="credential",
        details={"cause": cause},
    )  # fmt: skip
    values["now"] = now
    return cascade.audit.step(event, **values), Execute(cascade.bump_lists, values), Execute(cascade.revoke, values)


def key_cascade(ctx: RequestContext, now: datetime, key_id: str, actor: str, cause: str) -> tuple[Execute, ...]:
    """Plan steps: tokens issued with a key die with it - its refresh families and access tokens. The key itself
    is the caller's step (it re-checks the key is active: ``agent_statements.REVOKE_KEY``)."""
    return (
        Execute(sql.KEY_REFRESH_TOKENS, {"key": key_id}),
        *_credentials(sql.KEY_CREDENTIALS, ctx, now, actor, cause, key=key_id),
    )


def agent_cascade(ctx: RequestContext, now: datetime, root: Agent, actor: str) -> tuple[Execute, ...]:
    """Plan steps: deactivate ``root`` and its subtree; revoke their API keys, refresh tokens and credentials, and
    the delegations granted by or to any of them (with everything below those and every token resting on them).
    The subtree is named by its path in SQL, so an agent created below it meanwhile is deactivated too."""
    subtree = {"subtree": sql.subtree_pattern(root.path)}
    at = subtree | {"now": now}
    tenant = root.tenant_id
    return (
        sql.SUBTREE_AGENTS.step(
            audit.event(ctx, now, action="agent.deactivated", tenant_id=tenant, actor=actor, target_type="agent"),
            **subtree,
        ),
        Execute(sql.DEACTIVATE_SUBTREE, at),
        Execute(sql.DENY_SUBTREE_APPROVALS, at),
        sql.SUBTREE_KEYS.step(
            audit.event(
                ctx,
                now,
                action="credential.revoked",
                tenant_id=tenant,
                actor=actor,
                target_type="api_key",
                details={"cause": AGENT_DEACTIVATED},
            ),
            **subtree,
        ),
        Execute(sql.REVOKE_SUBTREE_KEYS, at),
        Execute(sql.SUBTREE_REFRESH_TOKENS, subtree),
        sql.SUBTREE_DELEGATIONS.step(
            audit.event(ctx, now, action="delegation.revoked", tenant_id=None, actor=actor, target_type="delegation"),
            **subtree,
        ),
        # Before the delegations turn revoked: the set of credentials is named by the delegations still active.
        *_credentials(sql.DELEGATION_CREDENTIALS, ctx, now, actor, "delegation revoked", **subtree),
        Execute(sql.REVOKE_SUBTREE_DELEGATIONS, at),
        *_credentials(sql.SUBTREE_CREDENTIALS, ctx, now, actor, AGENT_DEACTIVATED, **subtree),
    )


def suspension_cascade(ctx: RequestContext, now: datetime, root: Agent, actor: str) -> tuple[Execute, ...]:
    """Plan steps: suspend ``root``'s active subtree - reversibly (``agent_statements``' suspension section): the
    agents turn suspended and the suspension bits of their credentials and of their direct delegations' are set,
    the lists' suspension versions bumped so they are re-signed at their next fetch."""
    subtree = {"subtree": sql.subtree_pattern(root.path)}
    at = subtree | {"now": now}
    event = audit.event(ctx, now, action="agent.suspended", tenant_id=root.tenant_id, actor=actor, target_type="agent")
    return (
        sql.SUBTREE_ACTIVE_AGENTS.step(event, **subtree),
        Execute(sql.SUSPEND_SUBTREE, at),
        Execute(sql.SUSPEND_LISTS, at),
        Execute(sql.SUSPEND_CREDENTIALS, at),
    )


def resumption_cascade(ctx: RequestContext, now: datetime, root: Agent, actor: str) -> tuple[Execute, ...]:
    """Plan steps undoing ``suspension_cascade`` for ``root``'s subtree: every suspended agent of it active again, and
    the suspension bits cleared wherever no agent still suspended (elsewhere) holds the credential."""
    subtree = {"subtree": sql.subtree_pattern(root.path)}
    at = subtree | {"now": now}
    event = audit.event(ctx, now, action="agent.resumed", tenant_id=root.tenant_id, actor=actor, target_type="agent")
    return (
        sql.SUBTREE_SUSPENDED_AGENTS.step(event, **subtree),
        Execute(sql.RESUME_SUBTREE, at),
        Execute(sql.RESUME_LISTS, subtree),
        Execute(sql.RESUME_CREDENTIALS, subtree),
    )


async def revoke_delegation_subtrees(
    session: AsyncSession, ctx: RequestContext, now: datetime, paths: list[str], actor: str
) -> None:
    """Revoke the delegations at and below ``paths`` and every credential resting on any of them."""
    revoked = await delegations.revoke_subtrees(session, paths, now)
    for delegation in revoked:
        audit.record(
            session, ctx, now, action="delegation.revoked", tenant_id=delegation.tenant_id, actor=actor,
            target_type="delegation", target_id=delegation.id,
        )  # fmt: skip
    if revoked:
        tokens = await credentials.revoke(session, now, delegation_ids=[d.id for d in revoked])
        audit_credentials(session, ctx, now, tokens, actor, "delegation revoked")


async def revoke_refresh_families(
    session: AsyncSession, ctx: RequestContext, now: datetime, family_ids: list[str], actor: str, cause: str
) -> dict[str, str]:
    """Revoke these refresh families (grants) and every access token minted from them (RFC 7009 section 2.1:
    revoking a refresh token "SHOULD also invalidate all access tokens based on the same authorization grant").
    Returns ``family_id -> tenant_id`` of the families that still had a token to revoke."""
    families = await refresh_tokens.revoke_families(session, family_ids)
    # After the families (see ``revoke_families``): this statement sees what a concurrent refresh minted.
    revoked = await credentials.revoke(session, now, refresh_family_ids=family_ids)
    audit_credentials(session, ctx, now, revoked, actor, cause)
    return families
