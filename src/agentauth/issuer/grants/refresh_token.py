"""``refresh_token`` (RFC 6749 section 6): rotated on every use.

A spent token presented again revokes its whole family and the access tokens minted from it (RFC 9700
section 4.14.2). Rotation is one conditional UPDATE, so of N concurrent uses exactly one wins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentauth.errors import InvalidGrant
from agentauth.issuer import audit
from agentauth.issuer.context import RequestContext
from agentauth.issuer.grants.base import Grant, Parameter, param
from agentauth.issuer.revocation import revoke_refresh_families
from agentauth.issuer.schemas import TokenResponse
from agentauth.issuer.scopes import narrow, parse_scope
from agentauth.storage import agents as agents_repo
from agentauth.storage import api_keys as api_keys_repo
from agentauth.storage import refresh_tokens
from agentauth.storage.records import RefreshTokenStatus

GRANT_REFRESH_TOKEN = "refresh_token"


class RefreshTokenGrant(Grant):
    grant_type = GRANT_REFRESH_TOKEN
    parameters = (
        Parameter("refresh_token", "The refresh token; each use returns a new one.", required=True),
        Parameter("scope", "Space-separated; may narrow the original grant, never widen it."),
    )

    async def handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        presented = param(params, "refresh_token", required=True)
        assert presented is not None
        token_hash = self.core.hasher.hash(presented)
        slot = await self.core.status.allocate()
        now = self.core.clock()
        requested = parse_scope(param(params, "scope"))
        async with self.core.sessions.begin() as session:
            won = await refresh_tokens.consume(session, token_hash, now)
            if won is not None:
                agent = await agents_repo.get(session, won.agent_id)
                key = await api_keys_repo.get(session, won.api_key_id) if won.api_key_id else None
                key_dead = key is not None and not key.usable_at(now)
                if agent is None or not agent.is_active or key_dead:
                    raise InvalidGrant("refresh token is no longer valid", debug="agent or API key inactive")
                # RFC 6749 section 6: a narrower scope may be requested, never a wider one.
                scopes = narrow(requested, won.scopes)
                tokens = await self.core.mint_token_pair(
                    session,
                    agent,
                    scopes,
                    status=slot,
                    now=now,
                    api_key_id=won.api_key_id,
                    family_id=won.family_id,
                )
                audit.record(
                    session, ctx, now, action="token.refreshed", tenant_id=agent.tenant_id, actor=agent.id,
                    target_type="refresh_family", target_id=won.family_id,
                )  # fmt: skip
                return tokens
        await self._refresh_lost(token_hash, now, ctx)
        raise AssertionError("unreachable")

    async def _refresh_lost(self, token_hash: str, now: datetime, ctx: RequestContext) -> None:
        """Explain a failed refresh; a token that was already used means theft or a replay: kill the family."""
        async with self.core.sessions.begin() as session:
            existing = await refresh_tokens.find(session, token_hash)
            if existing is None:
                raise InvalidGrant("refresh token is invalid", debug="unknown refresh token")
            if existing.status == RefreshTokenStatus.USED:
                await revoke_refresh_families(
                    session, ctx, now, [existing.family_id], existing.agent_id, "refresh token reuse"
                )
                audit.record(
                    session, ctx, now, action="refresh_token.reuse_detected", tenant_id=existing.tenant_id,
                    actor=existing.agent_id, target_type="refresh_family", target_id=existing.family_id,
                    outcome="failure", reason="a spent refresh token was presented again; family revoked",
                )  # fmt: skip
        # Outside the transaction above, so the family revocation is committed before we answer.
        if existing.status == RefreshTokenStatus.USED:
            raise InvalidGrant("refresh token was already used", debug=f"reuse in family {existing.family_id}")
        if existing.status == RefreshTokenStatus.REVOKED:
            raise InvalidGrant("refresh token is revoked", debug=f"family {existing.family_id} revoked")
        raise InvalidGrant("refresh token is expired", debug=f"family {existing.family_id}")
