"""Storage failures, translated into ``agentauth.errors`` in this one place (issue 12 item 8).

Every path to the database goes through it: the ORM sessions (``db.StorageSessions``: plain sessions and
``begin()``), and the SQLite hot path (``SqliteSessionMaker.read`` / ``write``, used by
``sqlite_onehop``, the one-hop implementation of the storage ports). So an adapter (REST, MCP) sees only
``AgentAuthError`` and maps only that - the same failure gets the same answer through every adapter:

* an integrity violation (a unique value already taken - two registrations of one did:key racing -, a foreign
  key gone meanwhile) is the request conflicting with the current state: ``Conflict`` (409);
* a value the database refuses (out of range, unstorable character; SQLSTATE class 22, ``DataError``) is the
  request's fault: ``InvalidRequest`` (400);
* anything else from the driver or the pool (unreachable, stalled, locked, read-only file, disk full, pool
  exhausted, statement timeout, deadlock) is an outage: ``TemporarilyUnavailable`` (503 + ``Retry-After``), logged
  here once as a warning - never a guessed answer (an auth server that fails open is worse than none).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from agentauth.errors import AgentAuthError, Conflict, InvalidRequest, TemporarilyUnavailable

log = logging.getLogger("agentauth.storage")

# What a taken unique value means to the caller, by the column the database names (SQLite: "table.column",
# PostgreSQL: the constraint, "<table>_<column>_key").
_UNIQUE_MEANING = {
    "agents.did": "an agent with this did:key is already registered",
    "agents_did_key": "an agent with this did:key is already registered",
}
CONFLICT = "the request conflicts with the current state (a value that must be unique is already taken)"
UNSTORABLE = "a value in the request cannot be stored or compared"
UNAVAILABLE = "the service is temporarily unavailable"


def translate(exc: BaseException) -> AgentAuthError | None:
    """The ``AgentAuthError`` that storage failure ``exc`` means; None when ``exc`` is not a storage failure
    (an ``AgentAuthError`` raised on purpose, a bug, a cancellation), which then propagates unchanged."""
    if isinstance(exc, AgentAuthError) or not isinstance(exc, DBAPIError | PoolTimeoutError | OSError):
        return None
    first_line = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    if isinstance(exc, IntegrityError) or _sqlstate(exc).startswith("23"):
        return Conflict(_conflict_meaning(exc), debug=first_line)
    if isinstance(exc, DataError) or _sqlstate(exc).startswith("22") or _sqlite_name(exc) == "SQLITE_TOOBIG":
        return InvalidRequest(UNSTORABLE, debug=first_line)
    log.warning("database unavailable: %s", first_line)
    return TemporarilyUnavailable(UNAVAILABLE)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise what ``translate`` makes of a storage failure inside the block (chained to it); the rest as is."""
    try:
        yield
    except BaseException as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc


def _sqlstate(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")


def _sqlite_name(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(getattr(orig, "sqlite_errorname", "")) if isinstance(orig, sqlite3.Error) else ""


def _conflict_meaning(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    names = [str(getattr(orig, "constraint_name", "") or "")]
    cause = getattr(orig, "__cause__", None)  # asyncpg's own error behind SQLAlchemy's adapter
    names.append(str(getattr(cause, "constraint_name", "") or ""))
    message = str(orig or exc)
    names.append(message.rsplit(":", 1)[-1].strip())  # SQLite: "UNIQUE constraint failed: agents.did"
    for name in names:
        if name in _UNIQUE_MEANING:
            return _UNIQUE_MEANING[name]
    return CONFLICT
