"""The statements of the authorization code grant on the general ports (RFC 6749 section 4.1.3), built once.

Stage 1 reads the code by its keyed hash with the agent it acts as; stage 2's plan redeems it with one conditional
UPDATE (of N concurrent redemptions exactly one wins) before it records the token pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update

from agentauth.storage import agents, client_statements, statements
from agentauth.storage.models import AgentRow, AuthorizationCodeRow, OAuthClientRow
from agentauth.storage.records import Agent, RegisteredClient

_CODE_COLUMNS = tuple(AuthorizationCodeRow.__table__.columns)
_AGENT_COLUMNS = statements.AGENT_COLUMNS
_AGENT_AT = len(_CODE_COLUMNS)
_CLIENT_COLUMNS = client_statements.CLIENT_COLUMNS
_CODE_AT = len(_CLIENT_COLUMNS)

# The code ``:hash`` with its agent (outer join: a code whose agent is gone still comes back, and is refused).
CODE_GRANT = (
    select(*_CODE_COLUMNS, *_AGENT_COLUMNS)
    .outerjoin(AgentRow, AgentRow.id == AuthorizationCodeRow.agent_id)
    .where(AuthorizationCodeRow.code_hash == bindparam("hash"))
)

# A registered client ``:client_id`` with the code ``:hash`` and its agent, in one statement (outer joins: the
# client's row comes back without the code, the code whatever client it was issued to). At most one row; none
# when no such client is registered.
CLIENT_CODE_GRANT = (
    select(*_CLIENT_COLUMNS, *_CODE_COLUMNS, *_AGENT_COLUMNS)
    .select_from(OAuthClientRow)
    .outerjoin(AuthorizationCodeRow, AuthorizationCodeRow.code_hash == bindparam("hash"))
    .outerjoin(AgentRow, AgentRow.id == AuthorizationCodeRow.agent_id)
    .where(OAuthClientRow.client_id == bindparam("client_id"))
)

# The redemption (``Require`` ..., 1 row): the code ``:hash`` spent at ``:now`` if unused and unexpired then.
REDEEM = (
    update(AuthorizationCodeRow)
    .where(
        AuthorizationCodeRow.code_hash == bindparam("hash"),
        AuthorizationCodeRow.used_at.is_(None),
        AuthorizationCodeRow.expires_at > bindparam("now"),
    )
    .values(used_at=bindparam("now"))
)

# Codes past their expiry, for the periodic clean-up (``:now``).
EXPIRED = delete(AuthorizationCodeRow).where(AuthorizationCodeRow.expires_at < bindparam("now"))


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    redirect_uri_given: bool
    code_challenge: str
    owner_id: str
    agent_id: str
    agent_acts: bool
    tenant_id: str
    scopes: tuple[str, ...]
    resources: tuple[str, ...] | None
    family_id: str
    expires_at: datetime
    used_at: datetime | None
    dpop_jkt: str | None = None  # RFC 9449 section 10: redeemed only with a proof by this key


def code_grant(row: Sequence[Any]) -> tuple[AuthorizationCode, Agent | None]:
    """A ``CODE_GRANT`` row as records: the code and its agent (None when absent)."""
    values = statements.row_as(_CODE_COLUMNS, row[:_AGENT_AT])
    code = AuthorizationCode(
        client_id=values.client_id, redirect_uri=values.redirect_uri,
        redirect_uri_given=bool(values.redirect_uri_given), code_challenge=values.code_challenge,
        owner_id=values.owner_id, agent_id=values.agent_id, agent_acts=bool(values.agent_acts),
        tenant_id=values.tenant_id, scopes=tuple(values.scopes),
        resources=tuple(values.resources) if values.resources is not None else None, family_id=values.family_id,
        expires_at=values.expires_at, used_at=values.used_at, dpop_jkt=values.dpop_jkt,
    )  # fmt: skip
    agent_values = row[_AGENT_AT:]
    agent = None if agent_values[0] is None else agents.to_record(statements.row_as(_AGENT_COLUMNS, agent_values))
    return code, agent


def client_code_grant(row: Sequence[Any]) -> tuple[RegisteredClient, tuple[AuthorizationCode, Agent | None] | None]:
    """A ``CLIENT_CODE_GRANT`` row as records: the registration, and the code with its agent (None: no such code)."""
    rest = row[_CODE_AT:]
    return client_statements.client_of(row[:_CODE_AT]), (code_grant(rest) if rest[0] is not None else None)
