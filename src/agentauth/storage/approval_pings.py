"""The statements of CIBA ping delivery (``issuer/approval_pings.py``): which pings are due, a claim on one, and
an attempt's outcome - on the general ports, so every backend runs the same SQL."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Integer, String, Table, and_, bindparam, or_, select, update

from agentauth.errors import AgentAuthError
from agentauth.storage.models import AgentRow, ApprovalRequestRow, UTCDateTime
from agentauth.storage.ports import Query, Require

WAITING, DUE, SENT, FAILED = "waiting", "due", "sent", "failed"

_APPROVALS: Table = cast(Table, ApprovalRequestRow.__table__)
_AGENTS: Table = cast(Table, AgentRow.__table__)
_NOW = bindparam("now", type_=UTCDateTime())
_SEEN = bindparam("seen", type_=Integer())
# Due: decided (``due`` from the decision, or a failed attempt's retry time, or a lapsed claim), or still waiting
# at its expiry - CIBA section 10.2 pings after a failed authentication too, and an expired one is failed.
_IS_DUE = or_(
    and_(_APPROVALS.c.ping_state == DUE, _APPROVALS.c.ping_at <= _NOW),
    and_(_APPROVALS.c.ping_state == WAITING, _APPROVALS.c.expires_at <= _NOW),
)
_DUE = (
    select(_APPROVALS.c.id, _AGENTS.c.notification_endpoint, _APPROVALS.c.ping_sealed, _APPROVALS.c.ping_attempts)
    .join(_AGENTS, _AGENTS.c.id == _APPROVALS.c.agent_id)
    .where(_IS_DUE)
    .order_by(_APPROVALS.c.ping_at, _APPROVALS.c.id)
    .limit(bindparam("limit", type_=Integer()))
)
# A claim counts the attempt and leases the row until ``:until``; it holds only if no one claimed it since it was
# read (its attempt count unchanged) and it is still due.
_CLAIM = (
    update(_APPROVALS)
    .where(_APPROVALS.c.id == bindparam("approval"), _APPROVALS.c.ping_attempts == _SEEN, _IS_DUE)
    .values(
        ping_state=DUE, ping_attempts=_APPROVALS.c.ping_attempts + 1, ping_at=bindparam("until", type_=UTCDateTime())
    )
)
_CLOSE = (
    update(_APPROVALS)
    .where(_APPROVALS.c.id == bindparam("approval"), _APPROVALS.c.ping_attempts == bindparam("attempt"))
    .values(ping_state=bindparam("new_state", type_=String()), ping_at=bindparam("next", type_=UTCDateTime()))
)
# The owner's decision makes a waiting ping due at once.
MAKE_DUE = (
    update(_APPROVALS)
    .where(_APPROVALS.c.id == bindparam("approval"), _APPROVALS.c.ping_state == WAITING)
    .values(ping_state=DUE, ping_at=_NOW)
)


def due(now: datetime, limit: int) -> Query:
    """(id, the agent's notification endpoint now, ping_sealed, ping_attempts) of the pings due at ``now``,
    oldest first."""
    return Query(_DUE, {"now": now, "limit": limit})


def claim(approval_id: str, seen_attempts: int, now: datetime, until: datetime, taken: AgentAuthError) -> Require:
    return Require(_CLAIM, {"approval": approval_id, "seen": seen_attempts, "now": now, "until": until}, 1, taken)


def close(approval_id: str, attempt: int, state: str, next_at: datetime, lost: AgentAuthError) -> Require:
    """An attempt's outcome: ``sent``, ``failed`` (given up), or ``due`` again at ``next_at``."""
    params = {"approval": approval_id, "attempt": attempt, "new_state": state, "next": next_at}
    return Require(_CLOSE, params, 1, lost)
