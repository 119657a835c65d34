"""``urn:openid:params:grant-type:ciba`` (OpenID CIBA Core 1.0 section 10.1, poll mode): the agent that made an
approval request (``issuer/approvals.py``) polls with its ``auth_req_id``, authenticated as it was then.

Section 11's answers: ``authorization_pending`` while the owner has not decided; ``slow_down`` when polled
sooner than the interval after the last poll (the interval then grows by 5 seconds for this and every later
poll); ``expired_token`` once the request expired undecided (or approved but never collected); ``access_denied``
once denied; ``invalid_grant`` for an ``auth_req_id`` that is unknown, of another agent, or already redeemed.
Approved: one access token (no refresh token) whose ``authorization_details`` claim is the approved array and
whose subject names the approver (``approvedBy``); the ``auth_req_id`` is spent in the same transaction, so two
concurrent polls get one token between them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, select, update

from agentauth.errors import (
    AgentAuthError,
    ApprovalDenied,
    AuthorizationPending,
    Conflict,
    ExpiredToken,
    InvalidDPoPProof,
    InvalidGrant,
    SlowDown,
)
from agentauth.issuer import audit
from agentauth.issuer.approvals import GRANT_CIBA, SLOW_DOWN_STEP, ApprovalStatus, authenticate_agent, string_param
from agentauth.issuer.client_auth import CLIENT_ASSERTION_TYPE
from agentauth.issuer.context import RequestContext
from agentauth.issuer.core import token_response
from agentauth.issuer.dpop import require_binding
from agentauth.issuer.grants.base import Parameter, RecordsRefusals
from agentauth.issuer.schemas import TokenResponse
from agentauth.storage.models import AgentRow, ApprovalRequestRow, AuditEventRow, CredentialRow, UsedAssertionRow
from agentauth.storage.models import UTCDateTime as _UTC
from agentauth.storage.ports import Insert, Require, WritePlan
from agentauth.storage.records import AgentStatus

_APPROVALS: Table = ApprovalRequestRow.__table__  # type: ignore[assignment]
_AGENTS: Table = AgentRow.__table__  # type: ignore[assignment]
INTERVAL_MAX = 300

# Spend an approved request: only while approved and unexpired, and only while its agent is active.
_SPEND = (
    update(_APPROVALS)
    .where(
        _APPROVALS.c.id == bindparam("approval"),
        _APPROVALS.c.status == ApprovalStatus.APPROVED.value,
        _APPROVALS.c.expires_at > bindparam("at", type_=_UTC()),
        _APPROVALS.c.agent_id.in_(
            select(_AGENTS.c.id).where(_AGENTS.c.id == bindparam("agent"), _AGENTS.c.status == AgentStatus.ACTIVE.value)
        ),
    )
    .values(status=ApprovalStatus.ISSUED.value, token_jti=bindparam("jti_issued"))
)


class CibaGrant(RecordsRefusals):
    """The answers of polling (pending, slow down, expired, denied) are not recorded as refusals: they are the
    protocol working, one every few seconds per waiting agent."""

    grant_type = GRANT_CIBA
    parameters = (
        Parameter("auth_req_id", "The auth_req_id the backchannel authentication endpoint returned.", required=True),
        Parameter("client_secret", "The API key of the agent that made the request (or as the HTTP Basic password)."),
        Parameter("client_id", "Optional: that agent's id."),
        Parameter("client_assertion_type", "private_key_jwt instead of the API key: " + CLIENT_ASSERTION_TYPE),
        Parameter(
            "client_assertion", "private_key_jwt: a JWT signed by the agent's did:key, as for client_credentials."
        ),
    )

    async def _handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        agent = await authenticate_agent(self.core, self.services.api_keys, params)
        auth_req_id = string_param(params, "auth_req_id", 200)
        if auth_req_id is None:
            raise InvalidGrant("auth_req_id is required")
        now = self.core.clock()
        unknown = InvalidGrant("the auth_req_id is unknown, of another client, or already used")
        refusal: AgentAuthError | None = None
        async with self.core.sessions.begin() as session:
            query = select(ApprovalRequestRow).where(
                ApprovalRequestRow.request_hash == self.core.hasher.hash(auth_req_id)
            )
            found = (await session.execute(query)).scalar_one_or_none()
            if found is None or found.agent_id != agent.id or found.status == ApprovalStatus.ISSUED.value:
                refusal = unknown
            elif found.status == ApprovalStatus.DENIED.value:
                refusal = ApprovalDenied()
            elif found.expires_at <= now:
                refusal = ExpiredToken()
            elif found.status == ApprovalStatus.PENDING.value:
                # The poll is recorded (committed with the session) before its answer: the next one sees it.
                refusal = SlowDown() if self._polled_too_soon(found, now) else AuthorizationPending()
            else:
                approval_id, approver = found.id, found.decided_by
                scopes, details = tuple(found.scopes), list(found.authorization_details)
                single_use = bool(found.single_use)
        if refusal is not None:
            raise refusal
        require_binding(agent, ctx.dpop)
        slot = await self.core.status.allocate()
        access, exp, credential_row = self.core.access_token_row(
            agent, scopes, status=slot, now=now, client_id=agent.id, api_key_id=None, family_id=None,
            extra_subject_claims={"approvedBy": approver or "", "approvalId": approval_id},
            dpop_jkt=ctx.dpop_jkt, authorization_details=details, single_use=single_use,
        )  # fmt: skip
        event = audit.event(
            ctx, now, action="token.issued", tenant_id=agent.tenant_id, actor=agent.id, target_type="approval",
            target_id=approval_id, details={"grant_type": GRANT_CIBA, "approved_by": approver},
        )  # fmt: skip
        spend = {"approval": approval_id, "at": now, "agent": agent.id, "jti_issued": credential_row["jti"]}
        proof = (Insert.of(UsedAssertionRow.__table__, ctx.dpop.row()),) if ctx.dpop else ()
        plan = WritePlan((
            Require(_SPEND, spend, 1, unknown),
            Insert.of(CredentialRow.__table__, credential_row),
            Insert.of(AuditEventRow.__table__, event),
            *proof,
        ))  # fmt: skip
        try:
            await self.core.ports.writes.run(plan)
        except Conflict as exc:
            raise InvalidDPoPProof("the DPoP proof was used before", debug="DPoP proof jti replayed") from exc
        return token_response(access, exp, now, scopes, None, bound=ctx.dpop is not None)

    @staticmethod
    def _polled_too_soon(row: ApprovalRequestRow, now: datetime) -> bool:
        """CIBA section 7.3 ``interval``: a poll sooner than it after the last one is too soon, and the interval
        grows by 5 seconds for it and every later poll (section 11 ``slow_down``)."""
        too_soon = row.polled_at is not None and now - row.polled_at < timedelta(seconds=row.interval_seconds)
        if too_soon:
            row.interval_seconds = min(row.interval_seconds + SLOW_DOWN_STEP, INTERVAL_MAX)
        row.polled_at = now
        return too_soon
