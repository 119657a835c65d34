"""Token introspection (RFC 7662) and revocation (RFC 7009).

Both first establish what the presented token *is* from our own signature (a JWT) or our own hash (a refresh
token); a forged or foreign token therefore can neither name nor reveal someone else's credential.
Introspection answers exactly ``{"active": false}`` for anything inactive, unknown, malformed or not the
caller's (RFC 7662 section 2.2: "the authorization server SHOULD NOT include any additional information").
A database outage propagates as an error (503 at the edge), never as ``active: false``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentauth.errors import InvalidRequest
from agentauth.issuer import audit
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.delegations import may_revoke
from agentauth.issuer.hotpath import Revocations
from agentauth.issuer.revocation import audit_credentials, revoke_delegation_subtrees
from agentauth.issuer.secrets import REFRESH_TOKEN_PREFIX
from agentauth.issuer.tokens import TokenService
from agentauth.storage import agents as agents_repo
from agentauth.storage import credentials as credentials_repo
from agentauth.storage import delegations as delegations_repo
from agentauth.storage import refresh_tokens
from agentauth.storage.records import Agent
from agentauth.vc import ACCESS_CREDENTIAL, VerificationError
from agentauth.vc.jws import parse_compact

INACTIVE: dict[str, Any] = {"active": False}
TOKEN_TYPE_HINTS = ("access_token", "refresh_token")
MAX_TOKEN_LENGTH = 64 * 1024
# Revoking a delegation credential is revoking the delegation: either scope that may change it will do.
DELEGATION_SCOPES = frozenset({"delegations.write", "credentials.write"})


def _check_params(token: object, hint: object) -> str:
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

    async def introspect(self, principal: Principal, token: object, hint: object = None) -> dict[str, Any]:
        raw = _check_params(token, hint)
        if raw.startswith(REFRESH_TOKEN_PREFIX):
            return await self._introspect_refresh(principal, raw)
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
        if record is None or record.revoked_at is not None or owner is None or not owner.is_active:
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
            "token_type": "Bearer",
            "agent_id": owner.id,
            "agent_type": subject.get("agentType", owner.agent_type),
            "trust_level": subject.get("trustLevel", owner.trust_level),
        }
        if "act" in claims:
            response["act"] = claims["act"]
        chain = _chain_summary(claims)
        if chain is not None:
            response["delegation_chain"] = chain
        return response

    async def _introspect_refresh(self, principal: Principal, raw: str) -> dict[str, Any]:
        now = self.core.clock()
        async with self.core.reads() as session:
            record = await refresh_tokens.find(session, self.core.hasher.hash(raw))
            owner = await agents_repo.get(session, record.agent_id) if record else None
        if record is None or owner is None or record.status != "active" or record.expires_at <= now:
            return INACTIVE
        if not owner.is_active or not self._may_see(principal, owner, own_token=owner.id == principal.agent.id):
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
        }

    # -- RFC 7009 -----------------------------------------------------------------------------------------

    async def revoke(self, principal: Principal, token: object, hint: object, ctx: RequestContext) -> None:
        """Revoke if the token is one we issued and the caller may act on it; otherwise do nothing.

        Always "succeeds" (RFC 7009 section 2.2: "invalid tokens do not cause an error response"); a token of
        another tenant gets the same answer, so revocation cannot be used to probe for tokens.
        """
        raw = _check_params(token, hint)
        now = self.core.clock()
        if raw.startswith(REFRESH_TOKEN_PREFIX):
            await self._revoke_refresh(principal, raw, ctx)
            return
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
        # Revoking an access token leaves its refresh family alive (RFC 7009 section 2.1 makes that a MAY).
        if state.revoked_at is None:
            await self.revocations.revoke(jti, acting.id, ctx)

    async def _revoke_delegation(self, principal: Principal, jti: str, now: datetime, ctx: RequestContext) -> bool:
        """A delegation credential stands for the delegation: revoking it revokes the delegation, all below it and
        every token resting on them - the same as DELETE /api/v1/delegations/{id}, and allowed to the same callers:
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

    async def _revoke_refresh(self, principal: Principal, raw: str, ctx: RequestContext) -> None:
        now = self.core.clock()
        async with self.core.sessions.begin() as session:
            record = await refresh_tokens.find(session, self.core.hasher.hash(raw))
            owner = await agents_repo.get(session, record.agent_id) if record else None
            if record is None or owner is None:
                return
            own = owner.id == principal.acting.id
            if not own and not ("credentials.write" in principal.scopes and principal.may_manage(owner)):
                return
            # RFC 7009 section 2.1: revoking a refresh token SHOULD also revoke the access tokens of its grant.
            await refresh_tokens.revoke_family(session, record.family_id)
            revoked = await credentials_repo.revoke(session, now, refresh_family_id=record.family_id)
            audit_credentials(session, ctx, now, revoked, principal.agent.id, "refresh token revoked")
            audit.record(
                session, ctx, now, action="refresh_token.revoked", tenant_id=owner.tenant_id,
                actor=principal.agent.id, target_type="refresh_family", target_id=record.family_id,
            )  # fmt: skip
