"""The two request paths that carry most traffic, run set-at-a-time (see ``storage/batch.py``):

* issuing tokens for API keys (``client_credentials``): one round authenticates every waiting request's key
  (one ``IN`` query, locked FOR SHARE on PostgreSQL so a concurrent revocation cannot slip between check and
  issue), signs, and records all their tokens, refresh tokens and audit events with one insert per table and
  one commit;
* looking up the state of presented tokens (every authenticated request, introspection): one joined query
  gives revocation, expiry, the owning agent and its tenant's policy version for every waiting request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agentauth.errors import AgentAuthError, InvalidClient, printable
from agentauth.issuer.context import RequestContext
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.schemas import TokenResponse
from agentauth.issuer.scopes import narrow
from agentauth.issuer.secrets import api_key_lookup_prefix, looks_like_api_key
from agentauth.storage import lookups
from agentauth.storage.batch import MicroBatcher
from agentauth.storage.lookups import TokenState
from agentauth.storage.records import Agent, ApiKey
from agentauth.vc import StatusEntry

log = logging.getLogger("agentauth.tokens")

LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class ClientCredentialsRequest:
    api_key: str
    client_id: str | None
    scopes: tuple[str, ...] | None
    slot: StatusEntry
    ctx: RequestContext


class ClientCredentialsIssuer:
    def __init__(self, core: IssuerCore) -> None:
        self.core = core
        self._lock = core.is_postgres
        self._batcher: MicroBatcher[ClientCredentialsRequest, TokenResponse] = MicroBatcher(self._round)

    async def issue(self, request: ClientCredentialsRequest) -> TokenResponse:
        return await self._batcher.submit(request)

    async def _round(self, requests: Sequence[ClientCredentialsRequest]) -> list[TokenResponse | BaseException]:
        now = self.core.clock()
        results: list[TokenResponse | BaseException] = []
        credentials_rows: list[dict[str, Any]] = []
        refresh_rows: list[dict[str, Any]] = []
        audit_rows: list[dict[str, Any]] = []
        touched: list[str] = []
        async with self.core.sessions.begin() as session:
            prefixes = [api_key_lookup_prefix(r.api_key) for r in requests if looks_like_api_key(r.api_key)]
            found = await lookups.api_keys_with_agents(session, prefixes, lock=self._lock) if prefixes else {}
            for request in requests:
                try:
                    tokens, rows = self._one(request, found, now)
                except AgentAuthError as exc:
                    results.append(exc)
                    if isinstance(exc, InvalidClient):
                        audit_rows.append(self._audit(request, now, "failure", exc.debug or exc.description))
                    continue
                key_id, agent_tenant, agent_id, credential_row, refresh_row, stale = rows
                credentials_rows.append(credential_row)
                refresh_rows.append(refresh_row)
                audit_rows.append(
                    self._audit(request, now, "success", None, tenant_id=agent_tenant, actor=agent_id, key_id=key_id)
                )
                if stale:
                    touched.append(key_id)
                results.append(tokens)
            await lookups.record_issued(session, credentials_rows, refresh_rows, audit_rows)
            await lookups.touch_keys(session, sorted(set(touched)), now)
        return results

    def _one(
        self, request: ClientCredentialsRequest, found: Mapping[str, tuple[ApiKey, Agent]], now: datetime
    ) -> tuple[TokenResponse, tuple[str, str, str, dict[str, Any], dict[str, Any], bool]]:
        if not looks_like_api_key(request.api_key):
            raise InvalidClient("client authentication failed", debug="malformed API key")
        pair = found.get(api_key_lookup_prefix(request.api_key))
        if pair is None:
            raise InvalidClient("client authentication failed", debug="unknown API key")
        key, agent = pair
        if not self.core.hasher.matches(request.api_key, key.key_hash):
            raise InvalidClient("client authentication failed", debug="unknown API key")
        if key.status != "active" or (key.expires_at is not None and key.expires_at <= now):
            raise InvalidClient("client authentication failed", debug=f"API key {key.id} is {key.status}/expired")
        if not agent.is_active:
            raise InvalidClient("client authentication failed", debug=f"agent {agent.id} is deactivated")
        if request.client_id is not None and request.client_id not in (agent.id, agent.did):
            raise InvalidClient("client authentication failed", debug="client_id does not own this API key")
        allowed = [s for s in key.scopes if s in agent.scopes]
        scopes = narrow(request.scopes, allowed)
        tokens, credential_row, refresh_row = self.core.token_pair_rows(
            agent, scopes, status=request.slot, now=now, api_key_id=key.id
        )
        stale = key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION
        return tokens, (key.id, agent.tenant_id, agent.id, credential_row, refresh_row, stale)

    @staticmethod
    def _audit(
        request: ClientCredentialsRequest,
        now: datetime,
        outcome: str,
        reason: str | None,
        *,
        tenant_id: str | None = None,
        actor: str | None = None,
        key_id: str | None = None,
    ) -> dict[str, Any]:
        return {
            "tenant_id": tenant_id,
            "actor": actor,
            "action": "token.issued" if outcome == "success" else "token.denied",
            "target_type": "api_key" if key_id else None,
            "target_id": key_id,
            "outcome": outcome,
            "reason": printable(f"client_credentials: {reason}", 200) if reason else None,
            "request_id": request.ctx.request_id,
            "ip": request.ctx.ip,
            "created_at": now,
            "details": {"grant_type": "client_credentials"},
        }


class TokenStateLookup:
    """Batched ``jti -> TokenState`` reads on the read engine (SQLite: no write lock taken)."""

    def __init__(self, core: IssuerCore) -> None:
        self.core = core
        self._batcher: MicroBatcher[str, TokenState | None] = MicroBatcher(self._round)

    async def get(self, jti: str) -> TokenState | None:
        return await self._batcher.submit(jti)

    async def _round(self, jtis: Sequence[str]) -> list[TokenState | BaseException | None]:
        async with self.core.reads() as session:
            states = await lookups.token_states(session, jtis)
        return [states.get(jti) for jti in jtis]
