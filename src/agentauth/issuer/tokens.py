"""The token endpoint's grants (RFC 6749 section 4.4 and 6, RFC 7523 section 2.1) and bearer authentication.

* ``client_credentials``: the API key is the client secret; ``scope`` may narrow it.
* ``refresh_token``: rotated on every use; a spent token presented again revokes its whole family and the
  access tokens minted from it (RFC 9700 section 4.14.2). Rotation is one conditional UPDATE, so of N
  concurrent uses exactly one wins.
* ``urn:ietf:params:oauth:grant-type:jwt-bearer``: an assertion signed by the agent's own did:key.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from agentauth.errors import InvalidClient, InvalidGrant, InvalidRequest, InvalidToken, UnsupportedGrantType
from agentauth.issuer import audit
from agentauth.issuer.apikeys import ApiKeyService
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.revocation import audit_credentials
from agentauth.issuer.schemas import TokenResponse
from agentauth.issuer.scopes import narrow, parse_scope
from agentauth.storage import agents as agents_repo
from agentauth.storage import api_keys as api_keys_repo
from agentauth.storage import assertions, refresh_tokens
from agentauth.storage import credentials as credentials_repo
from agentauth.vc import VerificationError, Verifier, verify_agent_assertion

log = logging.getLogger("agentauth.tokens")

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_REFRESH_TOKEN = "refresh_token"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_TYPES = (GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN, GRANT_JWT_BEARER)


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
        self._verifier: Verifier | None = None
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
        except (InvalidClient, InvalidGrant) as exc:
            await audit.record_failure(
                self.core.sessions, ctx, self.core.clock, action="token.denied",
                reason=f"{grant_type}: {exc.debug or exc.description}",
            )  # fmt: skip
            raise
        raise UnsupportedGrantType(f"grant_type {grant_type!r} is not supported")

    async def _client_credentials(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        secret = _one(params, "client_secret")
        if secret is None:
            raise InvalidClient("client authentication failed: give the API key as client_secret")
        key, agent = await self.api_keys.authenticate(secret)
        client_id = _one(params, "client_id")
        if client_id is not None and client_id not in (agent.id, agent.did):
            raise InvalidClient("client authentication failed", debug="client_id does not own this API key")
        allowed = [s for s in key.scopes if s in agent.scopes]
        scopes = narrow(parse_scope(_one(params, "scope")), allowed)
        slot = await self.core.status.allocate()
        now = self.core.clock()
        async with self.core.sessions.begin() as session:
            tokens = await self.core.mint_token_pair(session, agent, scopes, status=slot, now=now, api_key_id=key.id)
            audit.record(
                session, ctx, now, action="token.issued", tenant_id=agent.tenant_id, actor=agent.id,
                target_type="api_key", target_id=key.id, details={"grant_type": GRANT_CLIENT_CREDENTIALS},
            )  # fmt: skip
        return tokens

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
                await refresh_tokens.revoke_family(session, existing.family_id)
                revoked = await credentials_repo.revoke(session, now, refresh_family_id=existing.family_id)
                audit_credentials(session, ctx, now, revoked, existing.agent_id, "refresh token reuse")
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

    # -- bearer authentication for every protected route --------------------------------------------------

    def self_verifier(self) -> Verifier:
        ring = self.core.credentials.ring
        if self._verifier is None or self._verifier_ring is not ring:
            # Our own tokens: signature and claims offline; revocation is read from the database below,
            # which is fresher than any status list.
            self._verifier = Verifier(
                issuer_url=self.core.issuer_url, jwks=ring.jwks(), issuer_did=ring.issuer_did, check_status=False
            )
            self._verifier_ring = ring
        return self._verifier

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
            verified = self.self_verifier().verify_access_token(token, audience=self.core.issuer_url, now=now)
        except VerificationError as exc:
            raise InvalidToken("the access token is invalid", debug=f"{exc.code}: {exc.detail}") from exc
        claims = verified.claims
        subject = claims.get("vc", {}).get("credentialSubject", {})
        agent_id = subject.get("agentId") if isinstance(subject, dict) else None
        async with self.core.sessions() as session:
            exists, revoked_at = await credentials_repo.revoked_at(session, str(claims["jti"]))
            agent = await agents_repo.get(session, str(agent_id)) if isinstance(agent_id, str) else None
        if not exists or revoked_at is not None:
            raise InvalidToken("the access token is invalid", debug=f"token {claims['jti']} revoked or unknown")
        if agent is None or not agent.is_active:
            raise InvalidToken("the access token is invalid", debug=f"agent {agent_id} missing or deactivated")
        return Principal(
            agent=agent,
            scopes=verified.scopes,
            jti=str(claims["jti"]),
            client_id=str(claims["client_id"]),
            token_exp=int(claims["exp"]),
            claims=claims,
        )
