"""An in-memory issuer for the SDK tests, and an httpx transport that publishes its JWKS and status lists.

``FakeIssuer`` signs like the real service (same ``CredentialIssuer``), keeps one status list, and serves
``/.well-known/jwks.json`` and ``/api/v1/status-lists/1`` through ``httpx.MockTransport`` (sync and async) with
``Cache-Control`` and ``ETag``, counting requests so tests can see exactly what the SDK fetched.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from agentauth.did import encode_did_key, url_to_did_web
from agentauth.keys import KeyPair, KeyRing
from agentauth.vc import CredentialIssuer, StatusEntry, StatusList, random_free_index

ISSUER_URL = "https://issuer.test"
LIST_URL = f"{ISSUER_URL}/api/v1/status-lists/1"
# The resource server the fake issuer's tokens are for (RFC 8707): their aud; verifiers are configured with it.
RESOURCE = "https://api.test"
TTL_SECONDS = 60


class FakeTime:
    """A wall clock and a monotonic clock that move together, only when told to."""

    def __init__(self) -> None:
        self.wall = datetime.now(UTC).replace(microsecond=0)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@dataclass
class FakeIssuer:
    time: FakeTime = field(default_factory=FakeTime)
    url: str = ISSUER_URL
    ttl: int = TTL_SECONDS
    jwks_max_age: int = 300
    requests: Counter[str] = field(default_factory=Counter)
    down: bool = False
    # Cache-Control max-age of the list (default: its ttl, as the server sends); a CDN may say more.
    list_max_age: int | None = None
    # Re-sign an unchanged list every ttl/2 like the server; False plays an old server or a replaying cache.
    resign: bool = True

    def __post_init__(self) -> None:
        self.ring = KeyRing.create(url_to_did_web(self.url), self.time.now())
        self.issuer = CredentialIssuer(self.url, self.ring)
        self.bits = StatusList()
        self.taken: set[int] = set()
        self.list_jwt = self._sign_list()

    # -- publishing -------------------------------------------------------------------------------------

    def _sign_list(self) -> str:
        self.list_signed_at = self.time.now()
        return self.issuer.issue_status_list_credential(
            list_url=LIST_URL,
            encoded_list=self.bits.encode(),
            now=self.time.now(),
            ttl_seconds=self.ttl,
            valid_for_seconds=86_400,
        )

    def rotate(self) -> None:
        self.ring = self.ring.rotate(self.time.now(), timedelta(hours=1))
        self.issuer.use_ring(self.ring)

    def revoke(self, claims: dict[str, Any]) -> None:
        self.bits.set(int(claims["vc"]["credentialStatus"]["statusListIndex"]))
        self.list_jwt = self._sign_list()

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests[str(request.url)] += 1
        if self.down:
            raise httpx.ConnectError("issuer down", request=request)
        if str(request.url) == f"{self.url}/.well-known/jwks.json":
            return httpx.Response(
                200, json=self.ring.jwks(), headers={"cache-control": f"public, max-age={self.jwks_max_age}"}
            )
        if str(request.url) == LIST_URL:
            if self.resign and self.time.now() - self.list_signed_at >= timedelta(seconds=self.ttl / 2):
                self.list_jwt = self._sign_list()  # like the server: an unchanged list is re-signed every ttl/2
            etag = '"' + hashlib.sha256(self.list_jwt.encode()).hexdigest()[:16] + '"'
            max_age = self.ttl if self.list_max_age is None else self.list_max_age
            headers = {"cache-control": f"public, max-age={max_age}", "etag": etag}
            if request.headers.get("if-none-match") == etag:
                return httpx.Response(304, headers=headers)
            return httpx.Response(200, text=self.list_jwt, headers=headers | {"content-type": "application/vc+jwt"})
        return httpx.Response(404, json={"error": "not_found"})

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))

    # -- credentials ------------------------------------------------------------------------------------

    def entry(self, list_url: str = LIST_URL) -> StatusEntry:
        index = random_free_index(self.bits.size, self.taken)
        self.taken.add(index)
        return StatusEntry(list_url, index)

    def token(
        self,
        scopes: tuple[str, ...] = ("api.read",),
        *,
        lifetime: timedelta = timedelta(minutes=15),
        list_url: str = LIST_URL,
        **extra: Any,
    ) -> tuple[str, dict[str, Any]]:
        did = encode_did_key(KeyPair.generate().public.raw)
        return self.issuer.issue_access_credential(
            subject_did=did,
            client_id="agt_test",
            scopes=scopes,
            audience=RESOURCE,
            now=self.time.now(),
            expires_at=self.time.now() + lifetime,
            status=self.entry(list_url),
            **extra,
        )

    def chained_token(self, depth: int = 3, scopes: tuple[str, ...] = ("api.read",)) -> tuple[str, dict[str, Any]]:
        """A token acting for the root of a ``depth``-link delegation chain."""
        dids = [encode_did_key(KeyPair.generate().public.raw) for _ in range(depth + 1)]
        links: list[str] = []
        parent_id: str | None = None
        for i in range(depth):
            jwt, claims = self.issuer.issue_delegation_credential(
                delegate_did=dids[i + 1],
                delegator_did=dids[i],
                scopes=scopes,
                remaining_depth=depth - i,
                now=self.time.now(),
                expires_at=self.time.now() + timedelta(hours=1),
                status=self.entry(),
                parent_jwt=links[-1] if links else None,
                parent_id=parent_id,
            )
            links.append(jwt)
            parent_id = claims["jti"]
        act: dict[str, Any] = {"sub": dids[1]}
        for did in dids[2:]:
            act = {"sub": did, "act": act}
        return self.issuer.issue_access_credential(
            subject_did=dids[0],
            client_id="agt_delegate",
            scopes=scopes,
            audience=RESOURCE,
            now=self.time.now(),
            expires_at=self.time.now() + timedelta(minutes=15),
            status=self.entry(),
            act=act,
            delegation_chain=links,
        )
