"""The statements of the refresh_token and jwt-bearer grants on the general ports (issue 13 item 7), built once.

Each grant reads what it relies on with one ``Reads.fetch`` (stage 1, outside any transaction), signs, and
writes one ``WritePlan`` whose ``Require``s re-check in the write round what stage 1 saw:

* the agent still active (and the refresh token's API key still active) - ``FOR SHARE`` on PostgreSQL, like
  the issuing round's ``statements.live_keys``: a deactivation or key revocation either committed before the
  round (the plan fails) or waits for it and then, statement by statement, sees - and revokes - what it
  recorded. SQLite has one writer and no ``FOR`` clause (SQLAlchemy compiles it to nothing). The plan takes
  these shared locks before it updates the refresh token, in the order a deactivation takes its own locks
  (agents, then keys, then refresh tokens), so the two queue instead of deadlocking;
* the presented refresh token rotated: one conditional UPDATE, so of N concurrent uses exactly one wins.

The expiry of an API key is not re-checked: it is set when the key is made and never changes, and stage 1
checked it with ``ApiKey.usable_at``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select, update

from agentauth.storage import agents, api_keys, refresh_tokens, statements
from agentauth.storage.models import AgentRow, ApiKeyRow, RefreshTokenRow
from agentauth.storage.records import Agent, AgentStatus, ApiKey, ApiKeyStatus, RefreshToken, RefreshTokenStatus

_REFRESH_COLUMNS = tuple(RefreshTokenRow.__table__.columns)
_AGENT_COLUMNS = statements.AGENT_COLUMNS
_KEY_COLUMNS = statements.API_KEY_COLUMNS
_AGENT_AT = len(_REFRESH_COLUMNS)
_KEY_AT = _AGENT_AT + len(_AGENT_COLUMNS)

# Stage 1 of a refresh: the token by its keyed hash (``:hash``) with its agent and its API key, if any - outer
# joins, so a token whose agent or key is gone still comes back (and is refused as "no longer valid").
REFRESH_GRANT = (
    select(*_REFRESH_COLUMNS, *_AGENT_COLUMNS, *_KEY_COLUMNS)
    .outerjoin(AgentRow, AgentRow.id == RefreshTokenRow.agent_id)
    .outerjoin(ApiKeyRow, ApiKeyRow.id == RefreshTokenRow.api_key_id)
    .where(RefreshTokenRow.token_hash == bindparam("hash"))
)

# Stage 1 of a jwt-bearer grant: the agent by its DID (``:did``).
AGENT_BY_DID = select(*_AGENT_COLUMNS).where(AgentRow.did == bindparam("did"))

# Re-checks (``Require`` ..., 1 row): ``:agent`` still active; ``:key`` still active. Two statements, run in
# this order, so the shared locks are taken one table at a time in a deactivation's order.
ACTIVE_AGENT = (
    select(AgentRow.id)
    .where(AgentRow.id == bindparam("agent"), AgentRow.status == AgentStatus.ACTIVE)
    .with_for_update(read=True)
)
# ``Require`` ..., 1 row: agent ``:agent`` active and unchanged since the snapshot a grant signed from (``:updated_at``,
# ``issuer/agent_snapshots.py``); locked like ``ACTIVE_AGENT``.
AGENT_AS_OF = (
    select(AgentRow.id)
    .where(
        AgentRow.id == bindparam("agent"),
        AgentRow.status == AgentStatus.ACTIVE,
        AgentRow.updated_at == bindparam("updated_at", type_=AgentRow.__table__.c.updated_at.type),
    )
    .with_for_update(read=True)
)
ACTIVE_KEY = (
    select(ApiKeyRow.id)
    .where(ApiKeyRow.id == bindparam("key"), ApiKeyRow.status == ApiKeyStatus.ACTIVE)
    .with_for_update(read=True)
)

# The rotation (``Require`` ..., 1 row): the token ``:hash`` spent at ``:now`` if it is still usable then - the
# SQL form of ``RefreshToken.usable_at`` (active, not expired), in the statement that changes it.
ROTATE = (
    update(RefreshTokenRow)
    .where(
        RefreshTokenRow.token_hash == bindparam("hash"),
        RefreshTokenRow.status == RefreshTokenStatus.ACTIVE,
        RefreshTokenRow.expires_at > bindparam("now"),
    )
    .values(status=RefreshTokenStatus.USED, used_at=bindparam("now"))
)


def refresh_grant(row: Sequence[Any]) -> tuple[RefreshToken, Agent | None, ApiKey | None]:
    """A ``REFRESH_GRANT`` row as records: the token, its agent and its API key (None when absent)."""
    token = refresh_tokens.to_record(statements.row_as(_REFRESH_COLUMNS, row[:_AGENT_AT]))
    agent_values, key_values = row[_AGENT_AT:_KEY_AT], row[_KEY_AT:]
    agent = None if agent_values[0] is None else agents.to_record(statements.row_as(_AGENT_COLUMNS, agent_values))
    key = None if key_values[0] is None else api_keys.to_record(statements.row_as(_KEY_COLUMNS, key_values))
    return token, agent, key


def agent_of(row: Sequence[Any]) -> Agent:
    """An ``AGENT_BY_DID`` row as a record."""
    return agents.to_record(statements.row_as(_AGENT_COLUMNS, row))
