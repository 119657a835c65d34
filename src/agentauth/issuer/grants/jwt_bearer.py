"""``urn:ietf:params:oauth:grant-type:jwt-bearer`` (RFC 7523 section 2.1): an assertion signed by the agent's
own did:key, accepted once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentauth.errors import InvalidGrant
from agentauth.issuer import audit
from agentauth.issuer.context import RequestContext
from agentauth.issuer.grants.base import Grant, Parameter, param
from agentauth.issuer.schemas import TokenResponse
from agentauth.issuer.scopes import narrow, parse_scope
from agentauth.storage import agents as agents_repo
from agentauth.storage import assertions
from agentauth.vc import VerificationError, verify_agent_assertion

GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class JwtBearerGrant(Grant):
    grant_type = GRANT_JWT_BEARER
    parameters = (
        Parameter(
            "assertion",
            "A JWT signed by the agent's did:key: iss = sub = the DID, aud = the token endpoint or the issuer, "
            "a unique jti, exp.",
            required=True,
        ),
        Parameter("scope", "Space-separated; narrows the agent's scopes."),
    )

    async def handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        assertion = param(params, "assertion", required=True)
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
            scopes = narrow(parse_scope(param(params, "scope")), agent.scopes)
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
