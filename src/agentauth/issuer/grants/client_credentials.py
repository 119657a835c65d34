"""``client_credentials`` (RFC 6749 section 4.4): the client is an agent, ``scope`` may narrow what it holds.

Two ways to authenticate (RFC 6749 section 2.3: exactly one per request):

* the API key as the client secret (``client_secret_post`` / ``client_secret_basic``; client_id = the agent id,
  optional): the request joins the batched issuing round (``issuer/hotpath.py``), which authenticates the key,
  signs and records the token pair and records each refusal with its batch;
* ``private_key_jwt`` (RFC 7523 section 2.2, OpenID Connect Core section 9): a ``client_assertion`` signed by
  the agent's own did:key, ``iss`` = ``sub`` = the client_id - the agent id (or its DID) -, ``aud`` the issuer
  or the token endpoint, a ``jti`` used once across replicas; the agent's scopes, like the jwt-bearer grant.
"""

from __future__ import annotations

from typing import Any

from agentauth.errors import InvalidClient, InvalidRequest
from agentauth.issuer.audience import resource_param
from agentauth.issuer.client_auth import CLIENT_ASSERTION_MAX_LIFETIME, CLIENT_ASSERTION_TYPE, REFUSED
from agentauth.issuer.context import RequestContext
from agentauth.issuer.grants.base import RESOURCE_PARAMETER, Grant, Parameter, param, record_refusal
from agentauth.issuer.hotpath import ClientAssertion, ClientCredentialsRequest
from agentauth.issuer.schemas import TokenResponse
from agentauth.storage.records import Agent
from agentauth.vc import VerificationError, unverified_issuer, verify_agent_assertion

GRANT_CLIENT_CREDENTIALS = "client_credentials"


class ClientCredentialsGrant(Grant):
    grant_type = GRANT_CLIENT_CREDENTIALS
    parameters = (
        Parameter(
            "client_secret", "The API key (or as the HTTP Basic password, RFC 6749 section 2.3.1).", required=True
        ),
        Parameter("client_id", "Optional: the id of the agent owning the API key."),
        Parameter("scope", "Space-separated; narrows the API key's scopes (with resource: the server's scopes)."),
        Parameter("client_assertion_type", f"private_key_jwt: {CLIENT_ASSERTION_TYPE}."),
        Parameter(
            "client_assertion",
            "private_key_jwt (RFC 7523 section 2.2): a JWT signed (EdDSA) by the agent's did:key, iss = sub = the "
            "agent id, aud = the issuer or the token endpoint, a unique jti, exp within an hour.",
        ),
        RESOURCE_PARAMETER,
    )
    records_own_failures = True  # the issuing round records its refusals; ``handle`` the one before it

    async def handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        if params.get("client_assertion") is not None or params.get("client_assertion_type") is not None:
            try:
                request = await self._assertion_request(params, ctx)
            except InvalidClient as failed:
                await record_refusal(self.core, ctx, self.grant_type, failed)
                raise
            return await self.services.client_credentials.issue(request)
        secret = param(params, "client_secret")
        if secret is None:
            refusal = InvalidClient(
                "client authentication failed: give the API key as client_secret", debug="no client_secret"
            )
            await record_refusal(self.core, ctx, self.grant_type, refusal)
            raise refusal
        request = ClientCredentialsRequest(
            api_key=secret,
            client_id=param(params, "client_id"),
            scope=param(params, "scope"),
            resources=resource_param(params),
            slot=await self.core.status.allocate(),
            ctx=ctx,
        )
        return await self.services.client_credentials.issue(request)

    async def _assertion_request(self, params: dict[str, Any], ctx: RequestContext) -> ClientCredentialsRequest:
        """A ``private_key_jwt`` request for the issuing round, once its form is right (its refusals before the
        round are recorded by ``handle``; the round records its own)."""
        if params.get("client_secret") is not None:
            raise InvalidRequest("use one client authentication method: client_secret or client_assertion, not both")
        if param(params, "client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise InvalidClient(REFUSED, debug="client_assertion_type is not jwt-bearer")
        assertion = param(params, "client_assertion")
        resources = resource_param(params)
        if assertion is None:
            raise InvalidClient(REFUSED, debug="no client_assertion")
        try:
            named = unverified_issuer(assertion)
        except VerificationError as exc:
            raise InvalidClient(REFUSED, debug=f"client_assertion: {exc.code}: {exc.detail}") from exc
        client_id = param(params, "client_id")
        if named is None or (client_id is not None and client_id != named):
            raise InvalidClient(REFUSED, debug="client_assertion iss missing or not the client_id")
        audiences = {self.core.token_endpoint, self.core.issuer_url, f"{self.core.issuer_url}/"}

        def verify(agent: Agent) -> dict[str, Any]:
            try:
                return verify_agent_assertion(
                    assertion, audiences=audiences, now=self.core.clock(), signer_did=agent.did,
                    max_lifetime_seconds=CLIENT_ASSERTION_MAX_LIFETIME,
                )  # fmt: skip
            except VerificationError as exc:
                raise InvalidClient(REFUSED, debug=f"client_assertion: {exc.code}: {exc.detail}") from exc

        # The API-key requests' batched issuing round (``issuer/hotpath.py``), which records the assertion's
        # single use and each refusal with its batch.
        return ClientCredentialsRequest(
            api_key="", client_id=client_id, scope=param(params, "scope"), resources=resources,
            slot=await self.core.status.allocate(), ctx=ctx, assertion=ClientAssertion(named, verify),
        )  # fmt: skip
