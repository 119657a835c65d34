"""The ``ClientDirectory`` of the service (``issuer/clients.py``): one ``resolve`` for every kind of client.

* ``https://...`` - a Client ID Metadata Document, fetched under the limits of ``issuer/cimd.py``; a document
  that cannot be used (not fetched, or invalid as a client) raises ``InvalidClientMetadataDocument`` with the
  reason - never a registration error, and nothing is stored;
* ``cli_...`` - a client registered through RFC 7591 (``issuer/client_registration.py``), from storage;
* ``agt_...`` - an active agent as a confidential client: it authenticates at the token endpoint with its API key
  (``client_secret_basic`` or ``client_secret_post``, client_id = the agent id) or an RFC 7523 assertion signed by
  its did:key (``private_key_jwt``); it has no redirect URIs, so it cannot be the client of an authorization
  request.
"""

from __future__ import annotations

from agentauth.errors import InvalidClientMetadataDocument
from agentauth.issuer.cimd import CimdFetcher, looks_like_cimd
from agentauth.issuer.client_registration import CLIENT_ID_PREFIX
from agentauth.issuer.clients import OAuthClient
from agentauth.issuer.core import IssuerCore
from agentauth.storage import client_statements as sql
from agentauth.storage.ports import Query
from agentauth.storage.records import RegisteredClient

MAX_CLIENT_ID_CHARS = 2000
AGENT_PREFIX = "agt_"
# What an agent may present at the token endpoint (``token_endpoint_auth_method`` names the default one).
AGENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")


def _dcr_client(record: RegisteredClient) -> OAuthClient:
    return OAuthClient(
        client_id=record.client_id,
        client_name=record.client_name,
        logo_uri=record.logo_uri,
        redirect_uris=record.redirect_uris,
        token_endpoint_auth_method=record.token_endpoint_auth_method,
        grant_types=record.grant_types,
        scope=record.scope,
        source="dcr",
        dpop_bound_access_tokens=record.document.get("dpop_bound_access_tokens") is True,
    )


class Clients:
    """``ClientDirectory``: DCR clients from storage, CIMD URLs by fetching, agents as confidential clients."""

    def __init__(self, core: IssuerCore, cimd: CimdFetcher, agent_grant_types: tuple[str, ...]) -> None:
        self.core = core
        self.cimd = cimd
        self.agent_grant_types = agent_grant_types

    async def resolve(self, client_id: str) -> OAuthClient | None:
        if not isinstance(client_id, str) or not client_id:
            return None
        if looks_like_cimd(client_id):
            if len(client_id) > MAX_CLIENT_ID_CHARS:  # refused before the fetcher: not even a cache key
                raise InvalidClientMetadataDocument(
                    client_id, f"client_id URL is too long (over {MAX_CLIENT_ID_CHARS} characters)"
                )
            return await self.cimd.resolve(client_id)
        if len(client_id) > MAX_CLIENT_ID_CHARS:
            return None
        if client_id.startswith(CLIENT_ID_PREFIX + "_"):
            record = await self.registered(client_id)
            return _dcr_client(record) if record is not None else None
        if client_id.startswith(AGENT_PREFIX):
            return await self._agent(client_id)
        return None

    async def registered(self, client_id: str) -> RegisteredClient | None:
        """The stored RFC 7591 registration of ``client_id`` (with its secret's hash), or None."""
        (rows,) = await self.core.ports.reads.fetch(Query(sql.CLIENT_BY_ID, {"client_id": client_id}))
        return sql.client_of(rows[0]) if rows else None

    async def authenticate_secret(self, client_id: str, secret: str) -> OAuthClient | None:
        """The DCR client ``client_id`` if ``secret`` is its client secret (constant-time comparison of the keyed
        hashes), else None. Agents authenticate with their API keys through the token endpoint's own path."""
        if not client_id.startswith(CLIENT_ID_PREFIX + "_") or not isinstance(secret, str) or not secret:
            return None
        return self.registered_client(await self.registered(client_id), secret)

    def names_registered(self, client_id: str) -> bool:
        return (
            isinstance(client_id, str)
            and len(client_id) <= MAX_CLIENT_ID_CHARS
            and client_id.startswith(CLIENT_ID_PREFIX + "_")
        )

    def registered_client(self, record: RegisteredClient | None, secret: str | None) -> OAuthClient | None:
        if secret is None:
            return _dcr_client(record) if record is not None else None
        if record is None or record.secret_hash is None:
            self.core.hasher.hash(secret)  # the same work whether or not the client exists
            return None
        return _dcr_client(record) if self.core.hasher.matches(secret, record.secret_hash) else None

    async def _agent(self, agent_id: str) -> OAuthClient | None:
        (rows,) = await self.core.ports.reads.fetch(Query(sql.AGENT_BY_ID, {"id": agent_id}))
        if not rows:
            return None
        agent = sql.agent_of(rows[0])
        if not agent.is_active:
            return None
        return OAuthClient(
            client_id=agent.id,
            client_name=agent.name,
            logo_uri=None,
            redirect_uris=(),
            token_endpoint_auth_method=AGENT_AUTH_METHODS[0],
            grant_types=self.agent_grant_types,
            scope=" ".join(agent.scopes),
            source="agent",
        )

    async def close(self) -> None:
        await self.cimd.close()
