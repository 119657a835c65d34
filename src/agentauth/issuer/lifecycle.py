"""Token introspection (RFC 7662) and revocation (RFC 7009).

Both first establish what the presented token *is* from our own signature (a JWT) or our own hash (a refresh
token); a forged or foreign token therefore can neither name nor reveal someone else's credential.
Introspection answers exactly ``{"active": false}`` for anything inactive, unknown, malformed or not the
caller's (RFC 7662 section 2.2: "the authorization server SHOULD NOT include any additional information").
A database outage propagates as an error (503 at the edge), never as ``active: false``.

Who may ask (the one rule for REST and MCP; ``principal`` is None when the request carries no credential):

* A **refresh token** is a credential for itself: whoever holds it may revoke it and learn its own state, with
  or without authenticating otherwise (RFC 7009 section 2.1 and RFC 7662 section 2.1 ask the caller to prove it
  may act; holding the token is that proof - it could be redeemed at the token endpoint anyway). The answer is
  about that token (and its grant) only.
* Anything else needs a caller: a bearer access token or an API key (client authentication). Given alone, a
  token that is not one of our refresh tokens proves nothing, and the answer is the one for a request without
  credentials (``invalid_token``, 401) - the same whether it is an access token, an unknown ``rt_`` string or
  garbage, so the endpoints cannot be used to probe for tokens without a credential.
* Revoking either half of a token pair revokes the pair, in one transaction (RFC 7009 section 2.1): a refresh
  token takes its whole family (rotations included) and every access token minted from it (the spec's SHOULD);
  an access token takes the refresh tokens of the family it was minted with (the spec's MAY), so the grant
  cannot be renewed - also when the access token itself has already expired or was revoked. Other access
  tokens of that family (minted by earlier rotations) live out their own, short lifetime unless revoked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentauth.errors import InvalidRequest, InvalidToken
from agentauth.issuer import audit
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.delegations import may_revoke
from agentauth.issuer.hotpath import Revocations
from agentauth.issuer.revocation import revoke_delegation_subtrees, revoke_refresh_families
from agentauth.issuer.secrets import REFRESH_TOKEN_PREFIX
from agentauth.issuer.tokens import TokenService
from agentauth.storage import agents as agents_repo
from agentauth.storage import credentials as credentials_repo
from agentauth.storage import delegations as delegations_repo
from agentauth.storage import refresh_tokens
from agentauth.storage.records import Agent, RefreshToken
from agentauth.vc import ACCESS_CREDENTIAL, VerificationError
from agentauth.vc.jws import parse_compact

INACTIVE: dict[str, Any] = {"active": False}
TOKEN_TYPE_HINTS = ("access_token", "refresh_token")
MAX_TOKEN_LENGTH = 64 * 1024
# Revoking a delegation credential is revoking the delegation: either scope that may change it will do.
DELEGATION_SCOPES = frozenset({"delegations.write", "credentials.write"})
NO_CREDENTIALS = "authenticate with a bearer access token or your API key as client_secret"


def no_credentials() -> InvalidToken:
    """The answer to a request that proves nothing: no credential, and no refresh token of ours given alone."""
    return InvalidToken(NO_CREDENTIALS)


def _check_params(token: object, hint: object, principal: Principal | None) -> str:
    if principal is None and not (isinstance(token, str) and token.startswith(REFRESH_TOKEN_PREFIX)):
        raise no_credentials()  # before judging the parameters: as for a request with no credential at all
    if not isinstance(token, str) or not token:
        raise InvalidRequest("missing parameter: token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidRequest("token is too long")
    # RFC 7009 section 2.1 / RFC 7662 section 2.1: an unknown hint is not an error; the server searches anyway.
    if hint is not None and not isinstance(hint, str):
        raise InvalidRequest("token_type_hint must be a string")
    return token


def _chain_summary(claims: dict[str, Any]) -> list[dict[str, Any]] | None:
    chain = claims.get("delegation_chain")
    if not isinstance(chain, list):
        return None
    summary = []
    for link in chain:
        try:
            payload = parse_compact(link).payload
        except VerificationError:
            return None
        subject = payload.get("vc", {}).get("credentialSubject", {})
        summary.append(
            {
                "id": payload.get("jti"),
                "delegator": subject.get("delegator"),
                "delegate": payload.get("sub"),
                "scopes": subject.get("scopes"),
                "remaining_depth": subject.get("remainingDepth"),
                "exp": payload.get("exp"),
            }
        )
    return summary


class LifecycleService:
    def __init__(self, core: IssuerCore, tokens: TokenService) -> None:
        self.core = core
        self.tokens = tokens
        self.revocations = Revocations(core)

    def _ours(self, token: str) -> dict[str, Any] | None:
        """Claims of a JWT we signed (any type, even expired), else None."""
        if token.count(".") != 2:
            return None
        try:
            _, claims = self.tokens.self_verifier().verify_signature(token)
        except VerificationError:
            return None
        return claims

    @staticmethod
    def _may_see(principal: Principal, owner: Agent | None, own_token: bool) -> bool:
        """The caller's own token, or (with tokens.introspect) a token of an agent in the caller's subtree."""
        if own_token:
            return True
        if owner is None or "tokens.introspect" not in principal.scopes:
            return False
        return owner.tenant_id == principal.tenant_id and owner.path.startswith(principal.agent.path)

    # -- RFC 7662 -----------------------------------------------------------------------------------------

    async def introspect(self, principal: Principal | None, token: object, hint: object = None) -> dict[str, Any]:
        """``principal`` None: the request carried no credential (see the module docstring for who may ask)."""
        raw = _check_params(token, hint, principal)
        if raw.startswith(REFRESH_TOKEN_PREFIX):
            return await self._introspect_refresh(principal, raw)
        assert principal is not None  # _check_params let only a refresh token through without one
        claims = self._ours(raw)
        if claims is None:
            return INACTIVE
        raw_vc = claims.get("vc")
        vc: dict[str, Any] = raw_vc if isinstance(raw_vc, dict) else {}
        types = vc.get("type", [])
        if ACCESS_CREDENTIAL not in types:
            return INACTIVE
        now = self.core.clock()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int) or exp <= now.timestamp() or (isinstance(nbf, int) and nbf > now.timestamp()):
            return INACTIVE
        record = await self.tokens.token_states.get(str(claims.get("jti")))
        owner = record.agent if record else None
        if record is None or not record.live_at(now) or owner is None or not owner.is_active:
            return INACTIVE
        # Own: the very token presented; or, for a caller authenticated with its API key (the full client
        # credential), any token issued to it as client - including a delegate's exchanged tokens. A narrowed
        # bearer token does not get to see its agent's other, possibly wider, tokens.
        as_client = principal.jti == "" and record.client_id == principal.acting.id
        own = record.jti == principal.jti or as_client
        if not self._may_see(principal, owner, own_token=own):
            return INACTIVE
        subject = vc.get("credentialSubject", {})
        response: dict[str, Any] = {
            "active": True,
            "scope": claims.get("scope", ""),
            "client_id": claims.get("client_id"),
            "sub": claims.get("sub"),
            "aud": claims.get("aud"),
            "iss": claims.get("iss"),
            "exp": claims.get("exp"),
            "iat": claims.get("iat"),
            "nbf": claims.get("nbf"),
            "jti": claims.get("jti"),
            # RFC 9449 section 6.2: a DPoP-bound token introspects as token_type DPoP with its cnf.
            "token_type": "DPoP" if "cnf" in claims else "Bearer",
            "agent_id": owner.id,
            "agent_type": subject.get("agentType", owner.agent_type),
            "trust_level": subject.get("trustLevel", owner.trust_level),
        }
        if "cnf" in claims:
            response["cnf"] = claims["cnf"]
        if "act" in claims:
            response["act"] = claims["act"]
        if "authorization_details" in claims:  # RFC 9396 section 9.2: the introspection response MUST carry them
            response["authorization_details"] = claims["authorization_details"]
        chain = _chain_summary(claims)
        if chain is not None:
            response["delegation_chain"] = chain
        return response

    async def _refresh_record(self, raw: str) -> tuple[RefreshToken | None, Agent | None]:
        async with self.core.reads() as session:
            record = await refresh_tokens.find(session, self.core.hasher.hash(raw))
            owner = await agents_repo.get(session, record.agent_id) if record else None
        return record, owner

    async def _introspect_refresh(self, principal: Principal | None, raw: str) -> dict[str, Any]:
        """A refresh token's own state, to whoever holds it (the caller, if any, changes nothing)."""
        now = self.core.clock()
        record, owner = await self._refresh_record(raw)
        if record is None and principal is None:
            raise no_credentials()
        if record is None or owner is None or not record.usable_at(now):
            return INACTIVE
        if not owner.is_active:
            return INACTIVE
        return {
            "active": True,
            "scope": " ".join(record.scopes),
            "client_id": record.client_id,
            "sub": owner.did,
            "iss": self.core.issuer_url,
            "exp": int(record.expires_at.timestamp()),
            "iat": int(record.created_at.timestamp()),
            "token_type": "refresh_token",
            "agent_id": owner.id,
            "agent_type": owner.agent_type,
            "trust_level": owner.trust_level,
        } | ({"cnf": {"jkt": record.dpop_jkt}} if record.dpop_jkt else {})

    # -- RFC 7009 -----------------------------------------------------------------------------------------

    async def revoke(self, principal: Principal | None, token: object, hint: object, ctx: RequestContext) -> None:
        """Revoke if the token is one we issued and the caller may act on it; otherwise do nothing.

        Always "succeeds" for a caller that proved something (RFC 7009 section 2.2: "invalid tokens do not cause
        an error response"); a token of another tenant gets the same answer, so revocation cannot be used to probe
        for tokens. ``principal`` None: no credential, only the token (see the module docstring).
        """
        raw = _check_params(token, hint, principal)
        now = self.core.clock()
        if raw.startswith(REFRESH_TOKEN_PREFIX):
            await self._revoke_refresh(principal, raw, ctx)
            return
        assert principal is not None  # _check_params let only a refresh token through without one
        claims = self._ours(raw)
        jti = claims.get("jti") if claims else None
        if not isinstance(jti, str):
            return
        state = await self.tokens.token_states.get(jti)
        if state is None:
            return
        # A delegation credential stands for its delegation and is judged by the delegation's rule.
        if state.kind == "delegation" and await self._revoke_delegation(principal, jti, now, ctx):
            return
        # Who may: the credential's agent or client, or (with credentials.write) whoever may manage its agent.
        # All these facts are fixed when the credential is issued, so deciding before the write transaction is safe.
        acting, owner = principal.acting, state.agent
        own = acting.id in (owner.id, state.client_id)
        if not own and not ("credentials.write" in principal.scopes and principal.may_manage(owner)):
            return
        # An access token goes with its pair (RFC 7009 section 2.1: the server "MAY revoke the respective refresh
        # token as well"), even when it is itself already dead: its refresh family may still be alive (e.g. after a
        # signing-key compromise revoked only the access tokens).
        if state.revoked_at is None or state.kind == "access":
            await self.revocations.revoke(jti, acting.id, ctx)

    async def _revoke_delegation(self, principal: Principal, jti: str, now: datetime, ctx: RequestContext) -> bool:
        """A delegation credential stands for the delegation: revoking it revokes the delegation, all below it and
        every token resting on them - the same as ``DelegationService.revoke``, and allowed to the same callers:
        ``delegations.may_revoke`` (the delegator, anyone upstream of it, or whoever may manage the delegator - never
        the delegate it was given to), holding delegations.write or credentials.write.
        False if the credential names no delegation (then it is revoked like any other)."""
        async with self.core.sessions.begin() as session:
            record = await credentials_repo.get(session, jti)
            if record is None or record.delegation_id is None:
                return False
            delegation = await delegations_repo.get(session, record.delegation_id)
            if delegation is None:
                return True
            if DELEGATION_SCOPES & principal.scopes and await may_revoke(session, principal, delegation):
                await revoke_delegation_subtrees(session, ctx, now, [delegation.path], principal.acting.id)
        return True

    async def _revoke_refresh(self, principal: Principal | None, raw: str, ctx: RequestContext) -> None:
        """Holding a refresh token is enough to revoke it: its family and every access token minted from it (RFC
        7009 section 2.1: revoking a refresh token SHOULD also revoke the access tokens of its grant)."""
        now = self.core.clock()
        # Found on the read engine: a stranger's random rt_ string never takes the writer lock. Family, owner and
        # tenant of a refresh token never change, so deciding before the write transaction is safe.
        record, _ = await self._refresh_record(raw)
        if record is None:
            if principal is None:
                raise no_credentials()
            return
        actor = principal.agent.id if principal is not None else record.agent_id
        async with self.core.sessions.begin() as session:
            if await revoke_refresh_families(session, ctx, now, [record.family_id], actor, "refresh token revoked"):
                audit.record(
                    session, ctx, now, action="refresh_token.revoked", tenant_id=record.tenant_id,
                    actor=actor, target_type="refresh_family", target_id=record.family_id,
                )  # fmt: skip
