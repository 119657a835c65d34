"""CIBA ping mode (OpenID CIBA Core 1.0 section 10.2): once the owner approved or denied an approval request of a
ping-mode agent - or it expired undecided - the agent's registered client notification endpoint is sent

    POST <backchannel_client_notification_endpoint>
    Authorization: Bearer <the request's client_notification_token>
    Content-Type: application/json

    {"auth_req_id": "<the auth_req_id>"}

and the agent then calls the token endpoint once to learn the outcome (a token, ``access_denied`` or
``expired_token``). The ping is owed in the database (``approval_requests.ping_state``), so no replica restart
loses it: the webhook worker's loop sends what is due, one claim per attempt (as deliveries are claimed), through
the same target checks as a webhook - https, public addresses only, checked again at each attempt and connected
to as checked, no redirects - and retries a failed one (no 2xx in time) with the webhooks' backoff. The
``auth_req_id`` and the token are kept sealed under the KEK, bound to their request, until then.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx

from agentauth.errors import AgentAuthError
from agentauth.issuer.cimd import Resolver, system_resolver
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.webhook_delivery import post_checked, retry_delay
from agentauth.keys import KeyEncryptionKey
from agentauth.storage import approval_pings as repo
from agentauth.storage.ports import Require, WritePlan

log = logging.getLogger(__name__)

CLAIM_BATCH = 50
CLAIM_SECONDS = 60.0
NOUN = "notification endpoint"


class Lost(AgentAuthError):
    """Another replica claimed this delivery since it was read."""

    error = "lease_lost"
    status_code = 409


def _bound_to(approval_id: str) -> bytes:
    return f"ciba-ping:{approval_id}".encode()


def seal_ping(kek: KeyEncryptionKey, approval_id: str, auth_req_id: str, notification_token: str) -> str:
    """What the ping needs, sealed and bound to its request (a sealed value copied onto another row does not open)."""
    plain = json.dumps({"auth_req_id": auth_req_id, "token": notification_token}).encode()
    return kek.seal(plain, _bound_to(approval_id))


def open_ping(kek: KeyEncryptionKey, approval_id: str, sealed: str) -> tuple[str, str]:
    opened = json.loads(kek.open(sealed, _bound_to(approval_id)))
    return str(opened["auth_req_id"]), str(opened["token"])


Row = TypeVar("Row", bound=Sequence[Any])


async def claim_due(
    core: IssuerCore, rows: list[Row], now: datetime, attempts: list[int], claim: Callable[..., Require], what: str
) -> list[Row]:
    """Claim each due row (its id first; ``attempts``: its attempt count as read) for one attempt, leased for
    ``CLAIM_SECONDS``; returns the rows this process won (another replica's claim is not an error)."""
    until = now + timedelta(seconds=CLAIM_SECONDS)
    plans = (WritePlan((claim(row[0], seen, now, until, Lost()),)) for row, seen in zip(rows, attempts, strict=True))
    outcomes = await asyncio.gather(*(core.ports.writes.run(plan) for plan in plans), return_exceptions=True)
    mine = []
    for row, outcome in zip(rows, outcomes, strict=True):
        if outcome is None:
            mine.append(row)
        elif not isinstance(outcome, Lost):
            log.warning("could not claim the %s of %s: %r", what, row[0], outcome)
    return mine


class ApprovalPings:
    def __init__(
        self,
        core: IssuerCore,
        kek: KeyEncryptionKey,
        *,
        allow_loopback: bool,
        retry_first_seconds: float,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.core = core
        self.kek = kek
        self.allow_loopback = allow_loopback
        self.retry_first_seconds = retry_first_seconds
        self.resolver = resolver

    async def send_due(self, http: httpx.AsyncClient) -> int:
        """Attempt every ping due now that this process could claim; returns how many were attempted."""
        now = self.core.clock()
        (rows,) = await self.core.ports.reads.fetch(repo.due(now, CLAIM_BATCH))
        if not rows:
            return 0
        mine = await claim_due(self.core, rows, now, [int(r[3]) for r in rows], repo.claim, "CIBA ping")
        await asyncio.gather(*(self._attempt(http, r[0], r[1], r[2], int(r[3]) + 1) for r in mine))
        return len(mine)

    async def _attempt(
        self, http: httpx.AsyncClient, approval_id: str, endpoint: str | None, sealed: str, number: int
    ) -> None:
        if endpoint is None:  # the agent went back to poll mode since: nothing to ping
            await self._close(approval_id, number, repo.FAILED, self.core.clock())
            return
        auth_req_id, token = open_ping(self.kek, approval_id, sealed)
        body = json.dumps({"auth_req_id": auth_req_id}).encode()
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        attempt = await post_checked(
            http, endpoint, headers, body, allow_loopback=self.allow_loopback, resolver=self.resolver, noun=NOUN
        )
        now = self.core.clock()
        if attempt.ok:
            await self._close(approval_id, number, repo.SENT, now)
            return
        delay = retry_delay(number, first=self.retry_first_seconds)
        log.info("CIBA ping of %s failed (attempt %d): %s", approval_id, number, attempt.error)
        if delay is None:
            await self._close(approval_id, number, repo.FAILED, now)
        else:
            await self._close(approval_id, number, repo.DUE, now + timedelta(seconds=delay))

    async def _close(self, approval_id: str, number: int, state: str, at: datetime) -> None:
        try:
            await self.core.ports.writes.run(WritePlan((repo.close(approval_id, number, state, at, Lost()),)))
        except Lost:
            log.warning("CIBA ping of %s: claimed by another process before its attempt was recorded", approval_id)
