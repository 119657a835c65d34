"""The statements of OAuth clients (issue 14 item 3) on the general ports, built once: registering one
(``Insert`` in a ``WritePlan``), reading one by ``client_id``, and reading an agent by id for an agent acting as
a confidential client. Every backend runs them (``Reads.fetch`` / ``Writes.run``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select

from agentauth.storage import agents, statements
from agentauth.storage.models import AgentRow, OAuthClientRow
from agentauth.storage.records import Agent, RegisteredClient

CLIENTS = OAuthClientRow.__table__
CLIENT_COLUMNS = tuple(OAuthClientRow.__table__.columns)

# The registered client ``:client_id`` (at most one row).
CLIENT_BY_ID = select(*CLIENT_COLUMNS).where(OAuthClientRow.client_id == bindparam("client_id"))
# The agent ``:id`` (at most one row).
AGENT_BY_ID = select(*statements.AGENT_COLUMNS).where(AgentRow.id == bindparam("id"))


def client_of(row: Sequence[Any]) -> RegisteredClient:
    """A ``CLIENT_BY_ID`` row as a record."""
    values = statements.row_as(CLIENT_COLUMNS, row)
    return RegisteredClient(
        client_id=values.client_id,
        secret_hash=values.secret_hash,
        client_name=values.client_name,
        logo_uri=values.logo_uri,
        redirect_uris=tuple(values.redirect_uris),
        token_endpoint_auth_method=values.token_endpoint_auth_method,
        grant_types=tuple(values.grant_types),
        scope=values.scope,
        document=dict(values.document),
        created_at=values.created_at,
    )


def agent_of(row: Sequence[Any]) -> Agent:
    """An ``AGENT_BY_ID`` row as a record."""
    return agents.to_record(statements.row_as(statements.AGENT_COLUMNS, row))
