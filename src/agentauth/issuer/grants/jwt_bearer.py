"""``urn:ietf:params:oauth:grant-type:jwt-bearer`` (RFC 7523 section 2.1): an assertion signed by the agent's
own did:key, accepted once.

On the general ports (issue 13 item 7), like ``AgentService.quickstart``: one read, the pair signed outside any
transaction, one write plan in the next batched round.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from agentauth.errors import AgentAuthError, Conflict, InvalidGrant
from agentauth.issuer import audit
from agentauth.issuer.audience import resource_param
from agentauth.issuer.context import RequestContext
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.dpop import require_binding
from agentauth.issuer.grants.base import RESOURCE_PARAMETER, Grant, Parameter, param
from agentauth.issuer.schemas import TokenResponse
from agentauth.storage import grant_statements
from agentauth.storage.models import AuditEventRow, CredentialRow, RefreshTokenRow, UsedAssertionRow
from agentauth.storage.ports import Insert, Require, WritePlan
from agentauth.storage.records import Agent
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
        Parameter("scope", "Space-separated; narrows the agent's scopes (with resource: the server's scopes)."),
        RESOURCE_PARAMETER,
    )

    async def handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        assertion = param(params, "assertion", required=True)
        assert assertion is not None
        resources = resource_param(params)
        now = self.core.clock()
        audiences = {self.core.token_endpoint, self.core.issuer_url, f"{self.core.issuer_url}/"}
        try:
            claims = verify_agent_assertion(assertion, audiences=audiences, now=now)
        except VerificationError as exc:
            raise InvalidGrant("the assertion is not valid", debug=f"{exc.code}: {exc.detail}") from exc
        did = str(claims["iss"])
        return await issue_for_assertion(
            self.core, did, lambda agent: claims, resources, param(params, "scope"), ctx, GRANT_JWT_BEARER,
            lambda: InvalidGrant("the assertion is not valid", debug=f"no active agent with did {did}"),
            lambda: InvalidGrant("the assertion was already used", debug=f"replayed jti {claims['jti']}"),
        )  # fmt: skip


class _Changed(AgentAuthError):
    """The write round found the agent changed since the snapshot the token was signed from."""


async def issue_for_assertion(
    core: IssuerCore,
    named: str,
    verify: Callable[[Agent], dict[str, Any]],
    resources: tuple[str, ...],
    scope: str | None,
    ctx: RequestContext,
    grant_type: str,
    inactive: Callable[[], AgentAuthError],
    replayed: Callable[[], AgentAuthError],
) -> TokenResponse:
    """A token pair for the agent ``named`` (its id or DID) whose own did:key signed an assertion - a jwt-bearer
    grant, or a ``private_key_jwt`` client assertion: ``verify(agent)`` checks it and returns its claims -, the
    agent's scopes narrowed by ``scope``, for ``resources``; the assertion's ``jti`` used once. The agent comes
    from a recent snapshot when there is one (``agent_snapshots.py``); the write round re-checks it is unchanged,
    and if it changed the request is judged again on a fresh read. ``inactive``/``replayed`` make the refusals."""
    agent, cached = await core.agent_snapshots.get(named)
    while True:
        if agent is None or not agent.is_active:
            raise inactive()
        try:
            return await _issue(core, agent, verify(agent), resources, scope, ctx, grant_type, replayed)
        except _Changed:
            if not cached:
                raise inactive() from None
            agent, cached = await core.agent_snapshots.fresh(named), False


async def _issue(
    core: IssuerCore,
    agent: Agent,
    claims: dict[str, Any],
    resources: tuple[str, ...],
    scope: str | None,
    ctx: RequestContext,
    grant_type: str,
    replayed: Callable[[], AgentAuthError],
) -> TokenResponse:
    require_binding(agent, ctx.dpop)
    now = core.clock()
    target = await core.audience.resolve(agent.tenant_id, resources, scope, agent.scopes)
    exp = datetime.fromtimestamp(float(claims["exp"]), tz=now.tzinfo)
    slot = await core.status.allocate()
    tokens, access_row, refresh_row = core.token_pair_rows(
        agent, target.scopes, status=slot, now=now, api_key_id=None, resources=target.resources,
        dpop_jkt=ctx.dpop_jkt,
    )  # fmt: skip
    event = audit.event(
        ctx, now, action="token.issued", tenant_id=agent.tenant_id, actor=agent.id,
        target_type="agent", target_id=agent.id, details={"grant_type": grant_type},
    )  # fmt: skip
    # One plan in the next write round. RFC 7523 section 3: "the authorization server ... MAY ensure that JWTs
    # are not replayed by maintaining the set of used jti values for the length of time for which the JWT would
    # be considered valid". We do: the primary key of ``used_assertions`` refuses a second insert of (signer's
    # DID, jti), across replicas - a ``Conflict`` from the plan, which is nothing else's. Both kinds of
    # assertion share the namespace of the signing key, so one assertion serves one request of either kind.
    changed = _Changed("the agent changed while its token was issued")
    # The DPoP proof's single use (``issuer/dpop.py``), under the same primary key: a replay on another replica
    # fails the plan like a replayed assertion (this replica refused it before any work).
    proof = (ctx.dpop.row(),) if ctx.dpop else ()
    try:
        await core.ports.writes.run(
            WritePlan((
                Require(grant_statements.AGENT_AS_OF, {"agent": agent.id, "updated_at": agent.updated_at}, 1,
                        changed),
                Insert.of(UsedAssertionRow.__table__, {"issuer": agent.did, "jti": str(claims["jti"]),
                                                       "expires_at": exp}, *proof),
                Insert.of(CredentialRow.__table__, access_row),
                Insert.of(RefreshTokenRow.__table__, refresh_row),
                Insert.of(AuditEventRow.__table__, event),
            ))
        )  # fmt: skip
    except Conflict as exc:
        if proof:
            raise InvalidGrant("the assertion or the DPoP proof was already used", debug="jti replayed") from exc
        raise replayed() from exc
    return tokens
