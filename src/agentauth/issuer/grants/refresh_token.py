"""``refresh_token`` (RFC 6749 section 6): rotated on every use.

A spent token presented again revokes its whole family and the access tokens minted from it (RFC 9700
section 4.14.2). Rotation is one conditional UPDATE, so of N concurrent uses exactly one wins.

On the general ports (issue 13 item 7), like ``AgentService.quickstart``: one read, the new pair signed outside
any transaction, one write plan in the next batched round (``storage/grant_statements.py`` holds the statements).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn

from agentauth.errors import Conflict, InvalidClient, InvalidDPoPProof, InvalidGrant
from agentauth.issuer import audit
from agentauth.issuer.audience import resource_param
from agentauth.issuer.context import RequestContext
from agentauth.issuer.dpop import require_binding
from agentauth.issuer.grants.base import Grant, GrantServices, Parameter, param
from agentauth.issuer.revocation import revoke_refresh_families
from agentauth.issuer.schemas import TokenResponse
from agentauth.storage import grant_statements, refresh_tokens
from agentauth.storage.batch import MicroBatcher
from agentauth.storage.models import AuditEventRow, CredentialRow, RefreshTokenRow, UsedAssertionRow
from agentauth.storage.ports import Insert, Query, Require, WritePlan
from agentauth.storage.records import RefreshTokenStatus

GRANT_REFRESH_TOKEN = "refresh_token"


class RefreshTokenGrant(Grant):
    grant_type = GRANT_REFRESH_TOKEN
    parameters = (
        Parameter("refresh_token", "The refresh token; each use returns a new one.", required=True),
        Parameter("scope", "Space-separated; may narrow the original grant, never widen it."),
        Parameter("client_id", "The OAuth client a refresh token was issued to (authorization code grant)."),
        Parameter("client_secret", "A confidential OAuth client's secret (or as the HTTP Basic password)."),
        Parameter(
            "resource",
            "RFC 8707: a subset of the original grant's resources (may repeat); default: all of them. The new "
            "token's aud.",
        ),
    )

    def __init__(self, services: GrantServices) -> None:
        super().__init__(services)
        # Concurrent refreshes read together: one ``Reads.fetch`` (one connection, one snapshot; on SQLite one
        # hop) for all the lookups queued while the previous one ran. One fetch per request held a pooled
        # connection each; 32 at once overflowed the PostgreSQL pool into a connect-and-close per request.
        self._lookups: MicroBatcher[str, list[tuple[Any, ...]]] = MicroBatcher(
            self._lookup_round, self.core.settings.batch_max_size
        )

    async def _lookup_round(self, token_hashes: Sequence[str]) -> list[list[tuple[Any, ...]]]:
        return await self.core.ports.reads.fetch(
            *(Query(grant_statements.REFRESH_GRANT, {"hash": token_hash}) for token_hash in token_hashes)
        )

    async def handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        presented = param(params, "refresh_token", required=True)
        assert presented is not None
        token_hash = self.core.hasher.hash(presented)
        now = self.core.clock()
        scope = param(params, "scope")
        resources = resource_param(params)
        # Stage 1, outside any transaction: the token with its agent and key in one read, the rules, the new pair
        # signed. A token that cannot be rotated is refused by ``_refresh_lost``, which explains why.
        rows = await self._lookups.submit(token_hash)
        if not rows:
            await self._refresh_lost(token_hash, now, ctx)
        token, agent, key = grant_statements.refresh_grant(rows[0])
        if not token.usable_at(now):
            await self._refresh_lost(token_hash, now, ctx)
        if token.subject is not None:
            await self._check_client(token.client_id, params)
        self._check_binding(token.dpop_jkt, ctx)
        inactive = InvalidGrant("refresh token is no longer valid", debug="agent or API key inactive")
        key_dead = token.api_key_id is not None and (key is None or not key.usable_at(now))
        if agent is None or not agent.is_active or key_dead:
            raise inactive
        require_binding(agent, ctx.dpop)  # a family issued before the agent required DPoP rotates only with a proof
        # RFC 6749 section 6: a narrower scope may be requested, never a wider one; RFC 8707 section 2.2: the
        # same for the resources - the family keeps the original set, a request may name fewer of them.
        target = await self.core.audience.resolve(
            agent.tenant_id, resources, scope, token.scopes, granted=token.scopes, within=token.resources
        )
        slot = await self.core.status.allocate()
        tokens, access_row, refresh_row = self.core.token_pair_rows(
            agent, target.scopes, status=slot, now=now, api_key_id=token.api_key_id, family_id=token.family_id,
            resources=target.resources, client_id=token.client_id, subject=token.subject,
            agent_acts=token.agent_acts, dpop_jkt=ctx.dpop_jkt,
        )  # fmt: skip
        event = audit.event(
            ctx, now, action="token.refreshed", tenant_id=agent.tenant_id, actor=agent.id,
            target_type="refresh_family", target_id=token.family_id,
        )  # fmt: skip
        # Stage 2: one plan in the next write round, re-checking what stage 1 relied on - the agent and key still
        # active, then the rotation itself (the conditional UPDATE: of N concurrent uses exactly one wins).
        lost = InvalidGrant("refresh token is invalid", debug="lost the rotation")
        checks = [Require(grant_statements.ACTIVE_AGENT, {"agent": agent.id}, 1, inactive)]
        if token.api_key_id is not None:
            checks.append(Require(grant_statements.ACTIVE_KEY, {"key": token.api_key_id}, 1, inactive))
        # The DPoP proof's single use (``issuer/dpop.py``): its primary key refuses a replay on another replica.
        proof = (Insert.of(UsedAssertionRow.__table__, ctx.dpop.row()),) if ctx.dpop else ()
        try:
            await self.core.ports.writes.run(
                WritePlan((
                    *checks,
                    Require(grant_statements.ROTATE, {"hash": token_hash, "now": now}, 1, lost),
                    *proof,
                    Insert.of(CredentialRow.__table__, access_row),
                    Insert.of(RefreshTokenRow.__table__, refresh_row),
                    Insert.of(AuditEventRow.__table__, event),
                ))
            )  # fmt: skip
        except Conflict as exc:
            if not proof:
                raise
            raise InvalidDPoPProof("the DPoP proof was used before", debug="DPoP proof jti replayed") from exc
        except InvalidGrant as exc:
            if exc is not lost:
                raise
            await self._refresh_lost(token_hash, now, ctx)
        return tokens

    @staticmethod
    def _check_binding(bound_to: str | None, ctx: RequestContext) -> None:
        """RFC 9449 section 5: a family issued with a DPoP proof is bound to its key - "The binding MUST be
        validated when the refresh token is later presented to get new access tokens". Refresh tokens here are
        their own credential (no client authentication for an agent's family), so every bound family is held to
        it, not only public clients'. An unbound family refreshed with a proof becomes bound from then on."""
        if bound_to is None:
            return
        if ctx.dpop is None:
            raise InvalidDPoPProof(
                "this refresh token is DPoP-bound: send a DPoP proof signed by its key", debug="no DPoP proof"
            )
        if not hmac.compare_digest(ctx.dpop.jkt.encode(), bound_to.encode()):
            raise InvalidGrant("the refresh token is bound to another DPoP key", debug=f"proof key {ctx.dpop.jkt}")

    async def _check_client(self, client_id: str, params: dict[str, Any]) -> None:
        """A family the authorization code grant started belongs to its OAuth client (RFC 6749 section 6): a
        confidential client authenticates again, a public one names itself if it sends a client_id at all."""
        given, secret = param(params, "client_id"), param(params, "client_secret")
        if given is not None and given != client_id:
            raise InvalidGrant("refresh token was issued to another client", debug=f"client_id {given[:80]}")
        client = await self.services.clients.resolve(client_id)
        if client is None:
            raise InvalidGrant("refresh token is no longer valid", debug=f"client {client_id[:80]} is gone")
        if not client.is_public and (
            secret is None or await self.services.clients.authenticate_secret(client_id, secret) is None
        ):
            raise InvalidClient("client authentication failed", debug=f"refresh by {client_id[:80]}")

    async def _refresh_lost(self, token_hash: str, now: datetime, ctx: RequestContext) -> NoReturn:
        """Explain a failed refresh; a token that was already used means theft or a replay: kill the family.
        The rare path, in one ORM unit of work."""
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
