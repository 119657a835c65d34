"""``authorization_code`` (RFC 6749 section 4.1.3, OAuth 2.1 section 4.1.3, RFC 7636 section 4.6): a code the
authorization endpoint gave after an owner's consent (``issuer/authorization_codes.py``), redeemed once.

The client authenticates as it registered: a public client (``none``) names itself with ``client_id`` and proves
possession with the PKCE ``code_verifier`` alone; a confidential one adds its secret (Basic or the body). The code
must have been issued to that client, with the same ``redirect_uri`` when the request carried one (section
4.1.3), and BASE64URL(SHA256(code_verifier)) must equal its challenge. A code presented again revokes the family
its first redemption started (section 4.1.2: "SHOULD revoke ... all tokens previously issued based on that
authorization code"). The token's ``sub`` is the owner, ``act`` the agent when one was chosen, ``client_id`` the
client; ``resource`` may narrow the consented resources (RFC 8707 section 2.2).

One read (for a registered client, one statement: the registration and the code), the pair signed outside any
transaction, then recorded with the API keys' next issuing round (``hotpath.SignedRedemption``): one statement
spends the round's codes, set at a time, if unused and their agents still active.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any

from agentauth.errors import InvalidClient, InvalidDPoPProof, InvalidGrant, InvalidRequest
from agentauth.issuer import audit
from agentauth.issuer.audience import resource_param
from agentauth.issuer.authorization_codes import GRANT_AUTHORIZATION_CODE
from agentauth.issuer.clients import OAuthClient
from agentauth.issuer.context import RequestContext
from agentauth.issuer.dpop import require_binding
from agentauth.issuer.grants.base import GrantServices, Parameter, RecordsRefusals, param, required_param
from agentauth.issuer.hotpath import SignedRedemption
from agentauth.issuer.revocation import revoke_refresh_families
from agentauth.issuer.schemas import TokenResponse
from agentauth.storage import authorization_statements as sql
from agentauth.storage.batch import MicroBatcher
from agentauth.storage.ports import CodeRedemption, Query
from agentauth.storage.records import Agent

# RFC 7636 section 4.1: code_verifier = 43*128unreserved.
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def s256(verifier: str) -> str:
    """RFC 7636 section 4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


class AuthorizationCodeGrant(RecordsRefusals):
    grant_type = GRANT_AUTHORIZATION_CODE
    response_types = ("code",)
    parameters = (
        Parameter("code", "The authorization code the authorization endpoint returned.", required=True),
        Parameter("redirect_uri", "The redirect_uri of the authorization request, when it carried one."),
        Parameter("code_verifier", "RFC 7636: the PKCE verifier of the request's S256 challenge.", required=True),
        Parameter("client_id", "The client (required for public clients; or HTTP Basic with the client's secret)."),
        Parameter("client_secret", "A confidential client's secret (or as the HTTP Basic password)."),
        Parameter("resource", "RFC 8707: a subset of the consented resources (may repeat); default: all of them."),
    )

    def __init__(self, services: GrantServices) -> None:
        super().__init__(services)
        # Concurrent redemptions read together, as refreshes do (``refresh_token.py``): one ``Reads.fetch`` - one
        # connection and snapshot, on SQLite one hop to the reader thread - for every client-and-code read queued
        # while the previous one ran, instead of one each.
        self._reads: MicroBatcher[Query, list[tuple[Any, ...]]] = MicroBatcher(
            self._read_round, self.core.settings.batch_max_size
        )

    async def _read_round(self, queries: Sequence[Query]) -> list[list[tuple[Any, ...]]]:
        return await self.core.ports.reads.fetch(*queries)

    async def _client_and_code(
        self, params: dict[str, Any], code_hash: str
    ) -> tuple[OAuthClient, tuple[sql.AuthorizationCode, Agent | None] | None]:
        """The authenticated client, and the presented code with its agent (None: no such code). A registered
        client is read with the code in one statement (``sql.CLIENT_CODE_GRANT``); any other with ``resolve``,
        then the code."""
        client_id, secret = param(params, "client_id"), param(params, "client_secret")
        if client_id is None:
            raise InvalidClient("client authentication failed: client_id is required", debug="no client_id")
        clients = self.services.clients
        found: tuple[sql.AuthorizationCode, Agent | None] | None = None
        if clients.names_registered(client_id):
            rows = await self._reads.submit(Query(sql.CLIENT_CODE_GRANT, {"client_id": client_id, "hash": code_hash}))
            record, found = sql.client_code_grant(rows[0]) if rows else (None, None)
            client = clients.registered_client(record, secret)
        elif secret is not None:
            client = await clients.authenticate_secret(client_id, secret)
        else:
            client = await clients.resolve(client_id)
        if secret is not None and client is None:
            raise InvalidClient("client authentication failed", debug=f"bad secret for {client_id[:80]}")
        if client is None or client.source == "agent":
            raise InvalidClient("client authentication failed", debug=f"unknown client {client_id[:80]}")
        if secret is None and not client.is_public:
            raise InvalidClient(
                "client authentication failed: this client must authenticate with its secret",
                debug=f"{client_id[:80]} is {client.token_endpoint_auth_method}",
            )
        if not clients.names_registered(client_id):
            rows = await self._reads.submit(Query(sql.CODE_GRANT, {"hash": code_hash}))
            found = sql.code_grant(rows[0]) if rows else None
        return client, found

    async def _handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        presented = required_param(params, "code")
        verifier = required_param(params, "code_verifier")
        if not VERIFIER.fullmatch(verifier):
            raise InvalidRequest("code_verifier must be 43 to 128 unreserved characters (RFC 7636 section 4.1)")
        redirect_uri = param(params, "redirect_uri")
        resources = resource_param(params)
        code_hash = self.core.hasher.hash(presented)
        client, found = await self._client_and_code(params, code_hash)
        now = self.core.clock()
        invalid = InvalidGrant("the authorization code is invalid, expired or already used")
        if found is None:
            raise InvalidGrant(invalid.description, debug="unknown code")
        code, agent = found
        if code.used_at is not None:
            await self._replayed(code, ctx, now)
        if code.expires_at <= now:
            raise InvalidGrant(invalid.description, debug="expired code")
        if code.client_id != client.client_id:
            raise InvalidGrant(invalid.description, debug=f"code of {code.client_id[:80]} shown by another client")
        if code.redirect_uri_given and redirect_uri != code.redirect_uri:
            raise InvalidGrant("redirect_uri does not match the authorization request's", debug=str(redirect_uri))
        if not code.redirect_uri_given and redirect_uri is not None and redirect_uri != code.redirect_uri:
            raise InvalidGrant("redirect_uri does not match the authorization request's", debug=redirect_uri)
        if not hmac.compare_digest(s256(verifier), code.code_challenge):
            raise InvalidGrant("code_verifier does not match the code_challenge", debug="PKCE mismatch")
        self._check_code_binding(code.dpop_jkt, ctx)
        if client.dpop_bound_access_tokens and ctx.dpop is None:
            raise InvalidDPoPProof(
                "this client registered dpop_bound_access_tokens: send a DPoP proof", debug="client requires DPoP"
            )
        inactive = InvalidGrant(invalid.description, debug=f"agent {code.agent_id} inactive")
        if agent is None or not agent.is_active:
            raise inactive
        require_binding(agent, ctx.dpop)
        # RFC 8707 section 2.2: the token request may name fewer of the consented resources, never others (AgentAuth's
        # own API and MCP URLs name the consent for AgentAuth itself).
        target = await self.core.audience.resolve(
            agent.tenant_id, resources, None, code.scopes, granted=code.scopes, within=code.resources
        )
        slot = await self.core.status.allocate()
        tokens, access_row, refresh_row = self.core.token_pair_rows(
            agent, target.scopes, status=slot, now=now, api_key_id=None, family_id=code.family_id,
            resources=target.resources, client_id=client.client_id, subject=code.owner_id, agent_acts=code.agent_acts,
            dpop_jkt=ctx.dpop_jkt,
        )  # fmt: skip
        event = audit.event(
            ctx, now, action="token.issued", tenant_id=agent.tenant_id, actor=code.owner_id,
            target_type="agent", target_id=agent.id,
            details={"grant_type": GRANT_AUTHORIZATION_CODE, "client_id": client.client_id[:200]},
        )  # fmt: skip
        spent = InvalidGrant(invalid.description, debug="lost the redemption")
        signed = SignedRedemption(
            CodeRedemption(code_hash, agent.id, now), tokens, access_row, refresh_row, event, inactive, spent,
            proof=ctx.dpop.use(agent, None) if ctx.dpop else None,
        )  # fmt: skip
        try:
            return await self.services.client_credentials.redeem(signed)
        except InvalidGrant as exc:
            if exc is spent:
                await self._replayed(code, ctx, now)
            raise

    @staticmethod
    def _check_code_binding(bound_to: str | None, ctx: RequestContext) -> None:
        """RFC 9449 section 10: a code the authorization request bound with ``dpop_jkt`` is redeemed only with a
        proof by that key - "If they do not match, it MUST reject the request". The code is not spent: a stolen
        code stays useless to the thief, and the client that holds the key can still redeem it."""
        if bound_to is None:
            return
        if ctx.dpop is None:
            raise InvalidDPoPProof(
                "the authorization code is bound to a DPoP key (dpop_jkt): send a DPoP proof by that key",
                debug="code bound by dpop_jkt; no proof",
            )
        if not hmac.compare_digest(ctx.dpop.jkt.encode(), bound_to.encode()):
            raise InvalidGrant("the authorization code is bound to another DPoP key", debug=f"proof key {ctx.dpop.jkt}")

    async def _replayed(self, code: sql.AuthorizationCode, ctx: RequestContext, now: Any) -> None:
        """A code presented a second time: revoke what its first redemption issued, then refuse."""
        async with self.core.sessions.begin() as session:
            await revoke_refresh_families(
                session, ctx, now, [code.family_id], code.agent_id, "authorization code reuse"
            )
            audit.record(
                session, ctx, now, action="authorization_code.reuse_detected", tenant_id=code.tenant_id,
                actor=code.owner_id, target_type="refresh_family", target_id=code.family_id, outcome="failure",
                reason="an authorization code was presented again; the tokens issued for it are revoked",
            )  # fmt: skip
        raise InvalidGrant("the authorization code is invalid, expired or already used", debug="code replay")
