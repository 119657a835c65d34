"""The token endpoint (RFC 6749 section 3.2) and bearer authentication of our own tokens (RFC 6750).

``token`` dispatches on ``grant_type`` through the grant registry (``agentauth.issuer.grants``: one module per
grant); the rest of this module authenticates the callers of every protected route.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agentauth.errors import (
    InvalidClient,
    InvalidDPoPProof,
    InvalidGrant,
    InvalidToken,
    UnsupportedGrantType,
    UseDPoPNonce,
)
from agentauth.issuer.apikeys import ApiKeyService
from agentauth.issuer.clients import ClientDirectory
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.dpop import TokenEndpointProofs
from agentauth.issuer.grants import GRANTS, GrantRegistry
from agentauth.issuer.grants.base import record_refusal, required_param
from agentauth.issuer.grants.client_credentials import GRANT_CLIENT_CREDENTIALS
from agentauth.issuer.grants.jwt_bearer import GRANT_JWT_BEARER
from agentauth.issuer.grants.refresh_token import GRANT_REFRESH_TOKEN
from agentauth.issuer.grants.token_exchange import GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS, TOKEN_TYPE_JWT
from agentauth.issuer.hotpath import ClientCredentialsIssuer, TokenStateLookup
from agentauth.issuer.schemas import TokenResponse
from agentauth.storage import agents as agents_repo
from agentauth.storage import delegations as delegations_repo
from agentauth.storage.records import Agent
from agentauth.vc import DPoPRequest, NonceRegistry, VerificationError, VerifiedToken, Verifier
from agentauth.vc.dpop import INVALID_DPOP_PROOF, USE_DPOP_NONCE
from agentauth.vc.verifier import check_binding

log = logging.getLogger("agentauth.tokens")

# The grant types and token types by name, for the adapters that make token requests of their own (MCP tools).
__all__ = [
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_JWT_BEARER",
    "GRANT_REFRESH_TOKEN",
    "GRANT_TOKEN_EXCHANGE",
    "TOKEN_TYPE_ACCESS",
    "TOKEN_TYPE_JWT",
    "TokenService",
]

VERIFIED_CACHE_SIZE = 10_000
# Our own tokens, judged by ourselves: ``exp`` is exact (introspection says ``active: false`` from that second on,
# so must every route); ``nbf``/``iat`` keep the verifier's skew tolerance, for replicas whose clocks differ.
NBF_LEEWAY_SECONDS = 30
EXP_LEEWAY_SECONDS = 0


class TokenService:
    def __init__(
        self, core: IssuerCore, api_keys: ApiKeyService, clients: ClientDirectory, grants: GrantRegistry = GRANTS
    ) -> None:
        self.core = core
        self.api_keys = api_keys
        self.clients = clients
        self.client_credentials = ClientCredentialsIssuer(core)
        self.token_states = TokenStateLookup(core)
        self._verifier: Verifier | None = None
        self._verified: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._verifier_ring: object = None
        self.grants = grants
        self._handlers = grants.bind(self)
        nonces = core.dpop_nonces if core.settings.dpop_nonce_required else None
        self.proofs = TokenEndpointProofs(core.token_endpoint, nonces)
        # The jtis of DPoP proofs sent to our own routes (RFC 9449 section 11.1), per process: a proof is bound to
        # one request's method and URL and lives 60 s, so a replay elsewhere is a replay to another replica
        # within that minute; the token endpoint's proofs are recorded in the database (``issuer/dpop.py``).
        self.resource_replay = NonceRegistry()

    # -- the token endpoint -------------------------------------------------------------------------------

    async def token(
        self, params: dict[str, Any], ctx: RequestContext, dpop_proofs: Sequence[str] = ()
    ) -> TokenResponse:
        """One token request; ``dpop_proofs``: its ``DPoP`` header values (RFC 9449 section 5), whose key every
        grant binds what it issues to (``issuer/dpop.py``)."""
        grant_type = required_param(params, "grant_type")
        handler = self._handlers.get(grant_type)
        if handler is None:
            raise UnsupportedGrantType(f"grant_type {grant_type!r} is not supported")
        if dpop_proofs:
            try:
                ctx = dataclasses.replace(ctx, dpop=self.proofs.check(dpop_proofs, self.core.clock()))
            except (InvalidDPoPProof, UseDPoPNonce) as exc:
                if isinstance(exc, InvalidDPoPProof):
                    await record_refusal(self.core, ctx, handler.grant_type, exc)
                raise
        try:
            return await handler.handle(params, ctx)
        except (InvalidClient, InvalidGrant, InvalidDPoPProof) as exc:
            if not handler.records_own_failures:
                await record_refusal(self.core, ctx, handler.grant_type, exc)
            raise

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

    def _verify_bearer(
        self, token: str, now: datetime, dpop: DPoPRequest | None = None, proven_jkt: str | None = None
    ) -> VerifiedToken:
        """Signature and claims of an access token, remembered per token string: an agent presents the same token
        many times, and its signature cannot change. Time claims are re-checked on every use, with the verifier's
        own leeways (none on ``exp``: an entry never outlives its token), and so is the DPoP binding - each request
        brings its own proof (``dpop``; ``proven_jkt``: the key of a proof the token endpoint checked); revocation
        is checked by the caller every time. The cache is emptied whenever the key ring changes."""
        verifier = self.self_verifier()
        cached = self._verified.get(token)
        if cached is not None:
            exp, nbf = cached.claims["exp"], cached.claims.get("nbf", 0)
            if nbf - NBF_LEEWAY_SECONDS <= now.timestamp() < exp + EXP_LEEWAY_SECONDS:
                self._verified.move_to_end(token)
                if dpop is not None or proven_jkt is not None or "cnf" in cached.claims:
                    check_binding(token, cached.claims, dpop, now.timestamp(), proven_jkt)
                return cached
            del self._verified[token]
        verified = verifier.verify_access_token(
            token, audience=self.core.issuer_url, now=now, dpop=dpop, proven_jkt=proven_jkt
        )
        self._verified[token] = verified
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return verified

    async def authenticate_request(
        self, authorization: str | None, dpop_proofs: Sequence[str], method: str, path: str
    ) -> Principal:
        """The caller of one of our own routes from its ``Authorization`` header: ``Bearer <token>``, or
        ``DPoP <token>`` with exactly one ``DPoP`` proof for ``method`` and our public URL of ``path`` (RFC 9449
        section 7.1). Proof ``jti``s are remembered per process (``resource_replay``); with
        ``dpop_nonce_required`` a proof must carry a current nonce (``UseDPoPNonce``, 401)."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "dpop":
            return await self.authenticate_bearer(token if scheme.lower() == "bearer" else None)
        if not token or " " in token:
            raise InvalidToken("the DPoP scheme needs an access token", debug="DPoP scheme without a token")
        if len(dpop_proofs) != 1:
            raise InvalidDPoPProof(
                "send exactly one DPoP proof header", status_code=401, debug=f"{len(dpop_proofs)} DPoP headers"
            )
        nonces = self.core.dpop_nonces if self.core.settings.dpop_nonce_required else None
        dpop = DPoPRequest(dpop_proofs[0], method, self.core.issuer_url + path, self.resource_replay, nonces)
        try:
            return await self.authenticate_bearer(token, dpop)
        except InvalidToken as exc:
            if nonces is not None and exc.debug is not None and exc.debug.startswith(USE_DPOP_NONCE):
                raise UseDPoPNonce(
                    nonces.current(self.core.clock().timestamp()),
                    "Resource server requires nonce in DPoP proof", status_code=401,
                ) from None  # fmt: skip
            if exc.debug is not None and exc.debug.startswith(INVALID_DPOP_PROOF):
                # Section 7.1: the token is fine, this request's proof is not (signature, htm, htu, iat, ath, a
                # replayed jti); a proof by another key than the token's stays invalid_token (Figure 20).
                raise InvalidDPoPProof(
                    "the DPoP proof is invalid for this request and token", status_code=401, debug=exc.debug
                ) from None
            raise

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

    async def authenticate_bearer(
        self, token: str | None, dpop: DPoPRequest | None = None, proven_jkt: str | None = None
    ) -> Principal:
        """The caller of a protected route, by its access token: a bearer token, or a DPoP-bound one with
        ``dpop``, the request's proof (RFC 9449 section 7; a bound token without it is refused, an unbound one
        with it too). ``proven_jkt``: for a token given as a token endpoint parameter (``actor_token``), the key
        of the request's own checked proof."""
        if not token:
            raise InvalidToken("an access token is required")
        now = self.core.clock()
        try:
            verified = self._verify_bearer(token, now, dpop, proven_jkt)
        except VerificationError as exc:
            raise InvalidToken("the access token is invalid", debug=f"{exc.code}: {exc.detail}") from exc
        claims = verified.claims
        subject = claims.get("vc", {}).get("credentialSubject", {})
        agent_id = subject.get("agentId") if isinstance(subject, dict) else None
        actor: Agent | None = None
        delegation_id: str | None = None
        state = await self.token_states.get(str(claims["jti"]))
        if state is None or not state.live_at(now):
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
            if last is None or not last.live_at(now) or actor is None or not actor.is_active:
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
