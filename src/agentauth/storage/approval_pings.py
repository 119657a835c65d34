"""The statements of CIBA ping delivery (``issuer/approval_pings.py``): which pings are due, a claim on one, and
an attempt's outcome - on the general ports, so every backend runs the same SQL."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Integer, String, Table, Update, and_, bindparam, or_, select, update

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


def claim_statement(prefix: str, is_due: ColumnElement[bool]) -> Update:
    """A claim on the ``{prefix}_state/attempts/at`` delivery of approval ``:approval``: it counts the attempt and
    leases the row until ``:until``, and holds only if no one claimed it since it was read (its attempt count still
    ``:seen``) and it is still due (``is_due``). Shared by the pings and the owner's emails."""
    attempts = _APPROVALS.c[f"{prefix}_attempts"]
    values = {f"{prefix}_state": DUE, f"{prefix}_attempts": attempts + 1,
              f"{prefix}_at": bindparam("until", type_=UTCDateTime())}  # fmt: skip
    return update(_APPROVALS).where(_APPROVALS.c.id == bindparam("approval"), attempts == _SEEN, is_due).values(values)


def close_statement(prefix: str) -> Update:
    """An attempt's outcome on the ``prefix`` delivery: ``:new_state`` from ``:next``, if the attempt is the last."""
    values = {f"{prefix}_state": bindparam("new_state", type_=String()),
              f"{prefix}_at": bindparam("next", type_=UTCDateTime())}  # fmt: skip
    where = (_APPROVALS.c.id == bindparam("approval"), _APPROVALS.c[f"{prefix}_attempts"] == bindparam("attempt"))
    return update(_APPROVALS).where(*where).values(values)


_CLAIM = claim_statement("ping", _IS_DUE)
_CLOSE = close_statement("ping")
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


def claim(
    approval_id: str,
    seen_attempts: int,
    now: datetime,
    until: datetime,
    taken: AgentAuthError,
    statement: Update = _CLAIM,
) -> Require:
    params = {"approval": approval_id, "seen": seen_attempts, "now": now, "until": until}
    return Require(statement, params, 1, taken)


def close(
    approval_id: str, attempt: int, state: str, next_at: datetime, lost: AgentAuthError, statement: Update = _CLOSE
) -> Require:
    """An attempt's outcome: ``sent``, ``failed`` (given up), or ``due`` again at ``next_at``."""
    params = {"approval": approval_id, "attempt": attempt, "new_state": state, "next": next_at}
    return Require(statement, params, 1, lost)
