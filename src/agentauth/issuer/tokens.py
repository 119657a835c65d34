"""The token endpoint's grants (RFC 6749 section 4.4 and 6, RFC 7523 section 2.1) and bearer authentication.

* ``client_credentials``: the API key is the client secret; ``scope`` may narrow it.
* ``refresh_token``: rotated on every use; a spent token presented again revokes its whole family and the
  access tokens minted from it (RFC 9700 section 4.14.2). Rotation is one conditional UPDATE, so of N
  concurrent uses exactly one wins.
* ``urn:ietf:params:oauth:grant-type:jwt-bearer``: an assertion signed by the agent's own did:key.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime
from typing import Any

from agentauth.errors import (
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
    UnsupportedGrantType,
)
from agentauth.issuer import audit
from agentauth.issuer.apikeys import ApiKeyService
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore, token_response
from agentauth.issuer.hotpath import ClientCredentialsIssuer, ClientCredentialsRequest, TokenStateLookup
from agentauth.issuer.revocation import revoke_refresh_families
from agentauth.issuer.schemas import TokenResponse
from agentauth.issuer.scopes import narrow, parse_scope
from agentauth.issuer.secrets import REFRESH_TOKEN_PREFIX
from agentauth.storage import agents as agents_repo
from agentauth.storage import api_keys as api_keys_repo
from agentauth.storage import assertions, refresh_tokens
from agentauth.storage import delegations as delegations_repo
from agentauth.storage.records import Agent
from agentauth.vc import DELEGATION_CREDENTIAL, VerificationError, VerifiedToken, Verifier, verify_agent_assertion

log = logging.getLogger("agentauth.tokens")

VERIFIED_CACHE_SIZE = 10_000
# Our own tokens, judged by ourselves: ``exp`` is exact (introspection says ``active: false`` from that second on,
# so must every route); ``nbf``/``iat`` keep the verifier's skew tolerance, for replicas whose clocks differ.
NBF_LEEWAY_SECONDS = 30
EXP_LEEWAY_SECONDS = 0

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_REFRESH_TOKEN = "refresh_token"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_TYPES = (GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN, GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE)
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"


def _one(params: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"missing parameter: {name}")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"parameter {name} must be a string")
    if len(value) > 16_384:
        raise InvalidRequest(f"parameter {name} is too long")
    return value


class TokenService:
    def __init__(self, core: IssuerCore, api_keys: ApiKeyService) -> None:
        self.core = core
        self.api_keys = api_keys
        self.client_credentials = ClientCredentialsIssuer(core)
        self.token_states = TokenStateLookup(core)
        self._verifier: Verifier | None = None
        self._verified: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._verifier_ring: object = None

    # -- the token endpoint -------------------------------------------------------------------------------

    async def token(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        grant_type = _one(params, "grant_type", required=True)
        try:
            if grant_type == GRANT_CLIENT_CREDENTIALS:
                return await self._client_credentials(params, ctx)
            if grant_type == GRANT_REFRESH_TOKEN:
                return await self._refresh(params, ctx)
            if grant_type == GRANT_JWT_BEARER:
                return await self._jwt_bearer(params, ctx)
            if grant_type == GRANT_TOKEN_EXCHANGE:
                return await self._token_exchange(params, ctx)
        except (InvalidClient, InvalidGrant) as exc:
            if grant_type == GRANT_CLIENT_CREDENTIALS and exc.debug != "no client_secret":
                raise  # the issuing round recorded it with its batch
            await audit.record_failure(
                self.core.sessions, ctx, self.core.clock, action="token.denied",
                reason=f"{grant_type}: {exc.debug or exc.description}",
            )  # fmt: skip
            raise
        raise UnsupportedGrantType(f"grant_type {grant_type!r} is not supported")

    async def _client_credentials(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        secret = _one(params, "client_secret")
        if secret is None:
            raise InvalidClient(
                "client authentication failed: give the API key as client_secret", debug="no client_secret"
            )
        request = ClientCredentialsRequest(
            api_key=secret,
            client_id=_one(params, "client_id"),
            scopes=parse_scope(_one(params, "scope")),
            slot=await self.core.status.allocate(),
            ctx=ctx,
        )
        return await self.client_credentials.issue(request)

    async def _refresh(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        presented = _one(params, "refresh_token", required=True)
        assert presented is not None
        token_hash = self.core.hasher.hash(presented)
        slot = await self.core.status.allocate()
        now = self.core.clock()
        requested = parse_scope(_one(params, "scope"))
        async with self.core.sessions.begin() as session:
            won = await refresh_tokens.consume(session, token_hash, now)
            if won is not None:
                agent = await agents_repo.get(session, won.agent_id)
                key = await api_keys_repo.get(session, won.api_key_id) if won.api_key_id else None
                key_dead = key is not None and (
                    key.status != "active" or (key.expires_at is not None and key.expires_at <= now)
                )
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
            if existing.status == "used":
                await revoke_refresh_families(
                    session, ctx, now, [existing.family_id], existing.agent_id, "refresh token reuse"
                )
                audit.record(
                    session, ctx, now, action="refresh_token.reuse_detected", tenant_id=existing.tenant_id,
                    actor=existing.agent_id, target_type="refresh_family", target_id=existing.family_id,
                    outcome="failure", reason="a spent refresh token was presented again; family revoked",
                )  # fmt: skip
        # Outside the transaction above, so the family revocation is committed before we answer.
        if existing.status == "used":
            raise InvalidGrant("refresh token was already used", debug=f"reuse in family {existing.family_id}")
        if existing.status == "revoked":
            raise InvalidGrant("refresh token is revoked", debug=f"family {existing.family_id} revoked")
        raise InvalidGrant("refresh token is expired", debug=f"family {existing.family_id}")

    async def _jwt_bearer(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        assertion = _one(params, "assertion", required=True)
        assert assertion is not None
        now = self.core.clock()
        audiences = {self.core.token_endpoint, self.core.issuer_url, f"{self.core.issuer_url}/"}
        try:
            claims = verify_agent_assertion(assertion, audiences=audiences, now=now)
        except VerificationError as exc:
            raise InvalidGrant("the assertion is not valid", debug=f"{exc.code}: {exc.detail}") from exc
        did = str(claims["iss"])
        slot = await self.core.status.allocate()
        async with self.core.sessions.begin() as session:
            agent = await agents_repo.get_by_did(session, did)
            if agent is None or not agent.is_active:
                raise InvalidGrant("the assertion is not valid", debug=f"no active agent with did {did}")
            scopes = narrow(parse_scope(_one(params, "scope")), agent.scopes)
            exp = datetime.fromtimestamp(float(claims["exp"]), tz=now.tzinfo)
            # RFC 7523 section 3: "the authorization server ... MAY ensure that JWTs are not replayed by
            # maintaining the set of used jti values for the length of time for which the JWT would be
            # considered valid". We do: the primary key refuses a second insert, across replicas.
            if not await assertions.remember(session, did, str(claims["jti"]), exp):
                raise InvalidGrant("the assertion was already used", debug=f"replayed jti {claims['jti']}")
            tokens = await self.core.mint_token_pair(session, agent, scopes, status=slot, now=now, api_key_id=None)
            audit.record(
                session, ctx, now, action="token.issued", tenant_id=agent.tenant_id, actor=agent.id,
                target_type="agent", target_id=agent.id, details={"grant_type": GRANT_JWT_BEARER},
            )  # fmt: skip
        return tokens

    async def _token_exchange(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        """RFC 8693: the delegate exchanges a delegation credential for an access token acting under it.

        ``sub`` is the chain's root delegator (the token's tenant is the root's, also for a delegate of another
        tenant), ``act`` names the delegates (current actor outermost, section
        4.1), ``scope`` is requested intersected with delegated, and ``delegation_chain`` carries the compact
        delegation credentials root first, so a verifier holding only our JWKS checks the whole chain.
        """
        subject_token = _one(params, "subject_token", required=True)
        subject_type = _one(params, "subject_token_type", required=True)
        assert subject_token is not None
        if subject_type != TOKEN_TYPE_JWT:
            raise InvalidRequest(f"subject_token_type must be {TOKEN_TYPE_JWT} (a delegation credential)")
        actor = await self._exchange_actor(params)
        now = self.core.clock()
        if subject_token.startswith(REFRESH_TOKEN_PREFIX):
            raise InvalidGrant("subject_token must be a delegation credential, not a refresh token")
        verifier = self.self_verifier()
        try:
            claims = verifier.verify_credential(subject_token, expected_type=DELEGATION_CREDENTIAL, now=now)
        except VerificationError as exc:
            raise InvalidGrant(
                "subject_token is not a valid delegation credential", debug=f"{exc.code}: {exc.detail}"
            ) from exc
        requested = parse_scope(_one(params, "scope"))
        slot = await self.core.status.allocate()
        async with self.core.sessions.begin() as session:
            delegation = await delegations_repo.get_by_credential(session, str(claims["jti"]))
            if delegation is None:
                raise InvalidGrant("unknown delegation")
            # RFC 8693 section 2.1: the server decides whether the actor may act; here only the named delegate.
            if delegation.delegate_id != actor.id:
                raise InvalidGrant("only the delegate named in the delegation can use it")
            chain = await delegations_repo.chain(session, delegation)
            dead = [d.id for d in chain if d.status != "active" or d.expires_at <= now]
            if dead or len(chain) != delegation.depth:
                raise InvalidGrant("the delegation (or one above it) is revoked or expired", debug=f"dead: {dead}")
            try:
                verifier.verify_delegation_chain([d.credential_jwt for d in chain], now=now)
            except VerificationError as exc:
                raise InvalidGrant("the delegation chain does not verify", debug=f"{exc.code}: {exc.detail}") from exc
            root = await agents_repo.get(session, chain[0].delegator_id)
            delegates = {d.delegate_id: await agents_repo.get(session, d.delegate_id) for d in chain}
            if root is None or not root.is_active or any(a is None or not a.is_active for a in delegates.values()):
                raise InvalidGrant("an agent of the delegation chain is deactivated")
            # The token acts over the root delegator's tenant only, whichever tenants its delegates belong to:
            # every link hands on that tenant's authority (a cross-tenant delegate's own tenant gains nothing).
            if any(d.tenant_id != root.tenant_id for d in chain):
                raise InvalidGrant("the delegation chain does not verify", debug="links of another tenant")
            granted = set(delegation.scopes)
            scopes = tuple(s for s in requested if s in granted) if requested else tuple(delegation.scopes)
            if not scopes:
                raise InvalidScope("none of the requested scopes was delegated")
            act: dict[str, Any] | None = None
            for link in chain:
                agent = delegates[link.delegate_id]
                assert agent is not None
                act = {"sub": agent.did} if act is None else {"sub": agent.did, "act": act}
            access, exp = await self.core.mint_access_token(
                session,
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
            )
            audit.record(
                session, ctx, now, action="token.exchanged", tenant_id=root.tenant_id, actor=actor.id,
                target_type="delegation", target_id=delegation.id, details={"scopes": list(scopes)},
            )  # fmt: skip
        response = token_response(access, exp, now, scopes, None)
        response.issued_token_type = TOKEN_TYPE_ACCESS
        return response

    async def _exchange_actor(self, params: dict[str, Any]) -> Agent:
        """The delegate authenticates: its own access token as ``actor_token``, or its API key."""
        actor_token = _one(params, "actor_token")
        if actor_token is not None:
            actor_type = _one(params, "actor_token_type")
            if actor_type != TOKEN_TYPE_ACCESS:
                raise InvalidRequest(f"actor_token_type must be {TOKEN_TYPE_ACCESS}")
            try:
                principal = await self.authenticate_bearer(actor_token)
            except InvalidToken as exc:
                raise InvalidGrant("actor_token is not valid", debug=exc.debug) from exc
            if principal.actor is not None:
                raise InvalidGrant("actor_token must be the delegate's own token, not a delegated one")
            return principal.agent
        secret = _one(params, "client_secret")
        if secret is None:
            raise InvalidClient("authenticate as the delegate: actor_token or client_secret (API key)")
        _, agent = await self.api_keys.authenticate(secret)
        return agent

    # -- bearer authentication for every protected route --------------------------------------------------

    def self_verifier(self) -> Verifier:
        ring = self.core.credentials.ring
        if self._verifier is None or self._verifier_ring is not ring:
            # Our own tokens: signature and claims offline; revocation is read from the database below,
            # which is fresher than any status list.
            self._verifier = Verifier(
                issuer_url=self.core.issuer_url,
                jwks=ring.jwks(),
                issuer_did=ring.issuer_did,
                check_status=False,
                leeway_seconds=NBF_LEEWAY_SECONDS,
                exp_leeway_seconds=EXP_LEEWAY_SECONDS,
            )
            self._verifier_ring = ring
            self._verified.clear()  # a dropped key must not live on in the cache
        return self._verifier

    def _verify_bearer(self, token: str, now: datetime) -> VerifiedToken:
        """Signature and claims of a bearer token, remembered per token string: an agent presents the same token
        many times, and its signature cannot change. Time claims are re-checked on every use, with the verifier's
        own leeways (none on ``exp``: an entry never outlives its token); revocation is checked by the caller every
        time. The cache is emptied whenever the key ring changes."""
        verifier = self.self_verifier()
        cached = self._verified.get(token)
        if cached is not None:
            exp, nbf = cached.claims["exp"], cached.claims.get("nbf", 0)
            if nbf - NBF_LEEWAY_SECONDS <= now.timestamp() < exp + EXP_LEEWAY_SECONDS:
                self._verified.move_to_end(token)
                return cached
            del self._verified[token]
        verified = verifier.verify_access_token(token, audience=self.core.issuer_url, now=now)
        self._verified[token] = verified
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return verified

    async def authenticate_client(self, api_key: str) -> Principal:
        """A caller authenticating with its API key (RFC 7009/7662 client authentication)."""
        key, agent = await self.api_keys.authenticate(api_key)
        return Principal(
            agent=agent,
            scopes=frozenset(s for s in key.scopes if s in agent.scopes),
            jti="",
            client_id=agent.id,
            token_exp=0,
        )

    async def authenticate_bearer(self, token: str | None) -> Principal:
        if not token:
            raise InvalidToken("an access token is required")
        now = self.core.clock()
        try:
            verified = self._verify_bearer(token, now)
        except VerificationError as exc:
            raise InvalidToken("the access token is invalid", debug=f"{exc.code}: {exc.detail}") from exc
        claims = verified.claims
        subject = claims.get("vc", {}).get("credentialSubject", {})
        agent_id = subject.get("agentId") if isinstance(subject, dict) else None
        actor: Agent | None = None
        delegation_id: str | None = None
        state = await self.token_states.get(str(claims["jti"]))
        if state is None or state.revoked_at is not None or state.expires_at <= now:
            raise InvalidToken(
                "the access token is invalid", debug=f"token {claims['jti']} revoked, expired or unknown"
            )
        agent = state.agent
        if agent.id != agent_id or not agent.is_active:
            raise InvalidToken("the access token is invalid", debug=f"agent {agent_id} missing or deactivated")
        if verified.chain:
            async with self.core.reads() as session:
                actor = await agents_repo.get_by_did(session, verified.chain[-1].delegate)
                last = await delegations_repo.get_by_credential(session, verified.chain[-1].id)
            if last is None or last.status != "active" or actor is None or not actor.is_active:
                raise InvalidToken("the access token is invalid", debug="delegation or actor no longer active")
            delegation_id = last.id
        return Principal(
            agent=agent,
            scopes=verified.scopes,
            jti=str(claims["jti"]),
            client_id=str(claims["client_id"]),
            token_exp=int(claims["exp"]),
            claims=claims,
            actor=actor,
            delegation_id=delegation_id,
            delegation_depth=len(verified.chain),
            policy_version=state.policy_version,
        )
