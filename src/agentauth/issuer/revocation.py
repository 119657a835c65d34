"""Cascading revocation: every object revoked sets its status bit and writes one audit event."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from agentauth.issuer import audit
from agentauth.issuer.context import RequestContext
from agentauth.storage import agents as agents_repo
from agentauth.storage import api_keys as api_keys_repo
from agentauth.storage import credentials, delegations, refresh_tokens
from agentauth.storage.records import Agent, Credential


def audit_credentials(
    session: AsyncSession, ctx: RequestContext, now: datetime, revoked: list[Credential], actor: str, cause: str
) -> None:
    for credential in revoked:
        audit.record(
            session, ctx, now, action=f"{credential.kind}_credential.revoked", tenant_id=credential.tenant_id,
            actor=actor, target_type="credential", target_id=credential.jti, details={"cause": cause},
        )  # fmt: skip


async def revoke_agents(session: AsyncSession, ctx: RequestContext, now: datetime, root: Agent, actor: str) -> None:
    """Deactivate ``root`` and its subtree; revoke their API keys, refresh tokens and credentials."""
    ids = await agents_repo.subtree_ids(session, root.path)
    for agent_id in await agents_repo.deactivate_many(session, ids, now):
        audit.record(
            session, ctx, now, action="agent.deactivated", tenant_id=root.tenant_id, actor=actor,
            target_type="agent", target_id=agent_id,
        )  # fmt: skip
    for key_id in await api_keys_repo.revoke_for_agents(session, ids, now):
        audit.record(
            session, ctx, now, action="credential.revoked", tenant_id=root.tenant_id, actor=actor,
            target_type="api_key", target_id=key_id, details={"cause": "agent deactivated"},
        )  # fmt: skip
    await refresh_tokens.revoke_where(session, agent_ids=ids)
    await revoke_delegation_subtrees(session, ctx, now, await delegations.paths_involving(session, ids), actor)
    revoked = await credentials.revoke(session, now, agent_ids=ids)
    audit_credentials(session, ctx, now, revoked, actor, "agent deactivated")


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
