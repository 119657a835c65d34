"""``client_credentials`` (RFC 6749 section 4.4): the API key is the client secret; ``scope`` may narrow it.

The request joins the batched issuing round (``issuer/hotpath.py``), which authenticates the key, signs and
records the token pair and records each refusal with its batch.
"""

from __future__ import annotations

from typing import Any

from agentauth.errors import InvalidClient
from agentauth.issuer.audience import resource_param
from agentauth.issuer.context import RequestContext
from agentauth.issuer.grants.base import RESOURCE_PARAMETER, Grant, Parameter, param, record_refusal
from agentauth.issuer.hotpath import ClientCredentialsRequest
from agentauth.issuer.schemas import TokenResponse

GRANT_CLIENT_CREDENTIALS = "client_credentials"


class ClientCredentialsGrant(Grant):
    grant_type = GRANT_CLIENT_CREDENTIALS
    parameters = (
        Parameter(
            "client_secret", "The API key (or as the HTTP Basic password, RFC 6749 section 2.3.1).", required=True
        ),
        Parameter("client_id", "Optional: the id of the agent owning the API key."),
        Parameter("scope", "Space-separated; narrows the API key's scopes (with resource: the server's scopes)."),
        RESOURCE_PARAMETER,
    )
    records_own_failures = True  # the issuing round records its refusals; ``handle`` the one before it

    async def handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
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
