"""The statements of the owner's email about an approval request (``issuer/approval_emails.py``): which are due,
with what they say, and - through ``approval_pings``' claim and close, on the ``email_*`` columns - a claim on one
and an attempt's outcome."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Integer, Table, and_, bindparam, select, update

from agentauth.storage.approval_pings import DUE, FAILED, SENT, claim_statement, close_statement
from agentauth.storage.models import AgentRow, ApprovalRequestRow, OwnerRow, UTCDateTime
from agentauth.storage.ports import Query

__all__ = ["CLAIM", "CLOSE", "DUE", "FAILED", "MOOT", "SENT", "SETTLE_DECIDED", "due"]

MOOT = "moot"  # decided (or closed) before it went out: nothing left to ask
_APPROVALS: Table = cast(Table, ApprovalRequestRow.__table__)
_NOW = bindparam("now", type_=UTCDateTime())
# Due: owed, its time come, and the request still open - an email about a decided or expired one asks nothing.
_IS_DUE = and_(
    _APPROVALS.c.email_state == DUE,
    _APPROVALS.c.email_at <= _NOW,
    _APPROVALS.c.status == "pending",  # issuer/approvals.py ApprovalStatus.PENDING
    _APPROVALS.c.expires_at > _NOW,
)
_DUE = (
    select(
        _APPROVALS.c.id, _APPROVALS.c.email_attempts, OwnerRow.email, AgentRow.name, _APPROVALS.c.tenant_id,
        _APPROVALS.c.binding_message, _APPROVALS.c.authorization_details, _APPROVALS.c.scopes,
        _APPROVALS.c.expires_at, _APPROVALS.c.single_use,
    )
    .join(OwnerRow, OwnerRow.id == _APPROVALS.c.owner_id)
    .join(AgentRow, AgentRow.id == _APPROVALS.c.agent_id)
    .where(_IS_DUE)
    .order_by(_APPROVALS.c.email_at, _APPROVALS.c.id)
    .limit(bindparam("limit", type_=Integer()))
)  # fmt: skip
CLAIM = claim_statement("email", _IS_DUE)
CLOSE = close_statement("email")
# The owner decided (or the request was closed) while its email was still owed: it is not sent.
SETTLE_DECIDED = (
    update(_APPROVALS)
    .where(_APPROVALS.c.id == bindparam("approval"), _APPROVALS.c.email_state == DUE)
    .values(email_state=MOOT)
)


def due(now: datetime, limit: int) -> Query:
    """(id, email_attempts, the owner's email, the agent's name, tenant, binding message, authorization_details,
    scopes, expires_at, single_use) of the emails due at ``now``, oldest first."""
    return Query(_DUE, {"now": now, "limit": limit})
