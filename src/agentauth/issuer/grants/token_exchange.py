"""``urn:ietf:params:oauth:grant-type:token-exchange`` (RFC 8693): the delegate exchanges a delegation
credential for an access token acting under it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentauth.errors import (
    Conflict,
    InvalidClient,
    InvalidDPoPProof,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
)
from agentauth.issuer import audit
from agentauth.issuer.audience import resource_param
from agentauth.issuer.context import RequestContext
from agentauth.issuer.core import token_response
from agentauth.issuer.dpop import require_binding
from agentauth.issuer.grants.base import Grant, Parameter, param
from agentauth.issuer.schemas import TokenResponse
from agentauth.issuer.scopes import parse_scope
from agentauth.issuer.secrets import REFRESH_TOKEN_PREFIX
from agentauth.storage import delegation_statements as sql
from agentauth.storage import delegations as delegations_repo
from agentauth.storage.models import AuditEventRow, CredentialRow, UsedAssertionRow
from agentauth.storage.ports import Insert, Query, Require, WritePlan
from agentauth.storage.records import Agent, Delegation
from agentauth.vc import DELEGATION_CREDENTIAL, VerificationError, Verifier

GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"


class TokenExchangeGrant(Grant):
    grant_type = GRANT_TOKEN_EXCHANGE
    parameters = (
        Parameter("subject_token", "The delegation credential (compact JWT) to act under.", required=True),
        Parameter("subject_token_type", f"{TOKEN_TYPE_JWT} (a delegation credential).", required=True),
        Parameter("actor_token", "The delegate's own access token; or authenticate with client_secret."),
        Parameter("actor_token_type", f"{TOKEN_TYPE_ACCESS}, with actor_token."),
        Parameter("client_secret", "The delegate's API key, when no actor_token is given."),
        Parameter("scope", "Space-separated; a subset of the delegated scopes (default: all of them)."),
        Parameter(
            "resource",
            "RFC 8707 / RFC 8693 section 2.1: the resource server the exchanged token is for (may repeat); sets "
            "aud, and then scope names that server's scopes. Default: AgentAuth's own API.",
        ),
    )

    async def handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        """``sub`` is the chain's root delegator (the token's tenant is the root's, also for a delegate of another
        tenant), ``act`` names the delegates (current actor outermost, section
        4.1), ``scope`` is requested intersected with delegated, and ``delegation_chain`` carries the compact
        delegation credentials root first, so a verifier holding only our JWKS checks the whole chain.
        """
        subject_token = param(params, "subject_token", required=True)
        subject_type = param(params, "subject_token_type", required=True)
        assert subject_token is not None
        if subject_type != TOKEN_TYPE_JWT:
            raise InvalidRequest(f"subject_token_type must be {TOKEN_TYPE_JWT} (a delegation credential)")
        actor = await self._actor(params, ctx)
        require_binding(actor, ctx.dpop)  # the actor presents the new token: its requirement holds
        now = self.core.clock()
        if subject_token.startswith(REFRESH_TOKEN_PREFIX):
            raise InvalidGrant("subject_token must be a delegation credential, not a refresh token")
        verifier = self.services.self_verifier()
        try:
            claims = verifier.verify_credential(subject_token, expected_type=DELEGATION_CREDENTIAL, now=now)
        except VerificationError as exc:
            raise InvalidGrant(
                "subject_token is not a valid delegation credential", debug=f"{exc.code}: {exc.detail}"
            ) from exc
        resources = resource_param(params)
        scope = param(params, "scope")
        # A registered server's scopes are not AgentAuth's: parsed against that server (``issuer/audience.py``).
        own = not resources or all(r in self.core.audience.own for r in resources)
        requested = parse_scope(scope) if own else None
        slot = await self.core.status.allocate()
        # Stage 1, outside any transaction: one read (the delegation, its ancestors and their agents), the rules,
        # the signed access token.
        chain, root, delegates = await self._chain(str(claims["jti"]), actor, verifier, now)
        delegation = chain[-1]
        # The token acts over the root delegator's tenant only, whichever tenants its delegates belong to:
        # every link hands on that tenant's authority (a cross-tenant delegate's own tenant gains nothing).
        if any(d.tenant_id != root.tenant_id for d in chain):
            raise InvalidGrant("the delegation chain does not verify", debug="links of another tenant")
        granted = set(delegation.scopes)
        scopes = tuple(s for s in requested if s in granted) if requested else tuple(delegation.scopes)
        audience: str | list[str] | None = None
        if not own:
            # RFC 8693 section 2.1 ``resource``: a registered server's token carries that server's scopes and
            # must be one the root's tenant may obtain (``audience.AudienceResolver``). The delegate acts only
            # within what was delegated: a scope of that server that the delegation does not name is not granted
            # (delegations carry AgentAuth's scopes today, so an exchange for another server is refused).
            target = await self.core.audience.resolve(root.tenant_id, resources, scope, ())
            scopes = tuple(s for s in target.scopes if s in granted)
            if not scopes:
                raise InvalidScope("the delegation grants none of the resource server's scopes")
            audience = target.audience(self.core.issuer_url)
        elif not scopes:
            raise InvalidScope("none of the requested scopes was delegated")
        act: dict[str, Any] | None = None
        for link in chain:
            agent = delegates[link.delegate_id]
            act = {"sub": agent.did} if act is None else {"sub": agent.did, "act": act}
        access, exp, credential_row = self.core.access_token_row(
            root,
            scopes,
            status=slot,
            now=now,
            client_id=actor.id,
            api_key_id=None,
            family_id=None,
            subject_did=root.did,
            act=act,
            delegation_chain=[d.credential_jwt for d in chain],
            delegation_id=delegation.id,
            expires_at=delegation.expires_at,
            extra_subject_claims={"actorAgentId": actor.id},
            audience=audience,
            dpop_jkt=ctx.dpop_jkt,  # the actor's proof key: the actor is who presents the new token
        )
        event = audit.event(
            ctx, now, action="token.exchanged", tenant_id=root.tenant_id, actor=actor.id,
            target_type="delegation", target_id=delegation.id, details={"scopes": list(scopes)},
        )  # fmt: skip
        # Stage 2: one plan, re-checking what stage 1 relied on - every link still live, every agent of the chain
        # still active - with the answer each change gives when it came before the request.
        chain_ids = {"delegation": delegation.id}
        agent_ids = {root.id, *delegates}
        await self._record(
            ctx,
            Require(sql.LIVE_CHAIN, chain_ids | {"now": now}, len(chain), self._dead_chain(["(re-checked)"])),
            Require(sql.ACTIVE_CHAIN_AGENTS, chain_ids, len(agent_ids), self._deactivated()),
            Insert.of(CredentialRow.__table__, credential_row),
            Insert.of(AuditEventRow.__table__, event),
        )
        response = token_response(access, exp, now, scopes, None, bound=ctx.dpop is not None)
        response.issued_token_type = TOKEN_TYPE_ACCESS
        return response

    async def _chain(
        self, jti: str, actor: Agent, verifier: Verifier, now: datetime
    ) -> tuple[list[Delegation], Agent, dict[str, Agent]]:
        """(chain root first, root delegator, delegate of each link) of the delegation whose credential is ``jti``,
        read in one fetch and judged: ``actor`` is its delegate, every link live and verifying, every agent active."""
        (rows,) = await self.core.ports.reads.fetch(Query(sql.CHAIN_WITH_AGENTS, {"jti": jti}))
        chain = [delegations_repo.link_of(row) for row in rows]
        if not chain or chain[-1].credential_jti != jti:
            raise InvalidGrant("unknown delegation")
        delegation = chain[-1]
        # RFC 8693 section 2.1: the server decides whether the actor may act; here only the named delegate.
        if delegation.delegate_id != actor.id:
            raise InvalidGrant("only the delegate named in the delegation can use it")
        dead = [d.id for d in chain if not d.live_at(now)]
        if dead or len(chain) != delegation.depth:
            raise self._dead_chain(dead)
        try:
            verifier.verify_delegation_chain([d.credential_jwt for d in chain], now=now)
        except VerificationError as exc:
            raise InvalidGrant("the delegation chain does not verify", debug=f"{exc.code}: {exc.detail}") from exc
        root = delegations_repo.delegator_of(rows[0])
        delegates = {d.delegate_id: delegations_repo.delegate_of(row) for d, row in zip(chain, rows, strict=True)}
        if not root.is_active or any(not a.is_active for a in delegates.values()):
            raise self._deactivated()
        return chain, root, delegates

    async def _record(self, ctx: RequestContext, *steps: Require | Insert) -> None:
        """Stage 2's plan, with the DPoP proof's single use (``issuer/dpop.py``) if the request had one: its
        primary key refuses a replay on another replica."""
        proof = (Insert.of(UsedAssertionRow.__table__, ctx.dpop.row()),) if ctx.dpop else ()
        try:
            await self.core.ports.writes.run(WritePlan((*steps, *proof)))
        except Conflict as exc:
            if not proof:
                raise
            raise InvalidDPoPProof("the DPoP proof was used before", debug="DPoP proof jti replayed") from exc

    @staticmethod
    def _dead_chain(dead: list[str]) -> InvalidGrant:
        return InvalidGrant("the delegation (or one above it) is revoked or expired", debug=f"dead: {dead}")

    @staticmethod
    def _deactivated() -> InvalidGrant:
        return InvalidGrant("an agent of the delegation chain is deactivated")

    async def _actor(self, params: dict[str, Any], ctx: RequestContext) -> Agent:
        """The delegate authenticates: its own access token as ``actor_token``, or its API key."""
        actor_token = param(params, "actor_token")
        if actor_token is not None:
            actor_type = param(params, "actor_token_type")
            if actor_type != TOKEN_TYPE_ACCESS:
                raise InvalidRequest(f"actor_token_type must be {TOKEN_TYPE_ACCESS}")
            try:
                # A DPoP-bound actor token counts only with the request's proof by its key (RFC 9449 section 5
                # binds the new token to that key too): a stolen bound token cannot be exchanged for a bearer one.
                principal = await self.services.authenticate_bearer(actor_token, proven_jkt=ctx.dpop_jkt)
            except InvalidToken as exc:
                raise InvalidGrant("actor_token is not valid", debug=exc.debug) from exc
            if principal.actor is not None:
                raise InvalidGrant("actor_token must be the delegate's own token, not a delegated one")
            return principal.agent
        secret = param(params, "client_secret")
        if secret is None:
            raise InvalidClient("authenticate as the delegate: actor_token or client_secret (API key)")
        _, agent = await self.services.api_keys.authenticate(secret)
        return agent
