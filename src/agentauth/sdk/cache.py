"""What the online verifiers cache, and how the pure core tells them what is missing. Nothing here fetches.

The core's two hooks - ``refresh_keys`` and the status-list source - do no I/O here: ``IssuerCache`` serves
what is cached and *records* what is missing (``Needs``, per verification through a context variable, so
concurrent verifications - threads or tasks - never mix). A verification that failed only for want of something
fetchable raises ``Miss``; the verifier (``online.py``) fetches what was recorded and runs the core again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import httpx

from agentauth import __version__
from agentauth.sdk.http import (
    DEFAULT_TIMEOUT_SECONDS,
    MAX_DOCUMENT_BYTES,
    FetchError,
    check_fetchable,
    freshness_lifetime,
    jwks_url,
    parse_jwks,
    parse_status_list,
)
from agentauth.vc import (
    DEFAULT_MAX_STATUS_STALENESS_SECONDS,
    StatusListSource,
    VerificationError,
    status_list_usable_until,
)
from agentauth.vc import errors as e
from agentauth.vc.jws import parse_compact

log = logging.getLogger("agentauth.sdk")
T = TypeVar("T")

# Reason code of this layer: the issuer's keys could not be fetched (a resource server answers 503, not 401).
JWKS_UNAVAILABLE: Final = "jwks_unavailable"
# A stale status list is the issuer's (or the mirror's) outage too: the token may be fine, its status is unknown.
UNAVAILABLE_CODES: Final = frozenset({JWKS_UNAVAILABLE, e.STATUS_UNAVAILABLE, e.STATUS_STALE})

DEFAULT_MIN_REFRESH_SECONDS: Final = 30.0
DEFAULT_JWKS_MAX_AGE: Final = 300.0
DEFAULT_STATUS_MAX_AGE: Final = 300.0
# After a failed status-list fetch, requests fail fast for this long instead of each waiting on the issuer.
STATUS_FAILURE_BACKOFF: Final = 2.0
# A response marked no-store is still usable for the verification that fetched it.
MIN_FRESHNESS: Final = 1.0
# unknown kid -> JWKS; missing list -> list; the list's own kid -> JWKS again; one spare.
MAX_ROUNDS: Final = 4
USER_AGENT: Final = f"agentauth-sdk/{__version__}"


class Needs:
    """What one verification found missing (recorded by the core's hooks)."""

    __slots__ = ("kids", "lists")

    def __init__(self) -> None:
        self.kids: set[str] = set()
        self.lists: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.kids or self.lists)


_current_needs: ContextVar[Needs | None] = ContextVar("agentauth_sdk_needs", default=None)


@dataclass(frozen=True, slots=True)
class CachedList:
    jwt: str
    etag: str | None
    fresh_until: float


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    headers: dict[str, str]


class Miss(Exception):
    """A verification failed only for want of something fetchable."""

    def __init__(self, error: VerificationError, needs: Needs) -> None:
        super().__init__(error.code)
        self.error = error
        self.needs = needs


class IssuerCache:
    """The cached JWKS and status lists of one issuer, and the refresh rate limit. No I/O: the verifiers feed it.

    It is the core's status-list source: a fresh list is served, a missing or stale one recorded as needed.
    A list stays fresh while its ``Cache-Control`` allows *and* while it is younger than its own ``iat + ttl +
    max_status_staleness`` (the core's staleness rule, ``agentauth.vc.status``): the cache refetches before
    the core would refuse the copy as ``status_stale``.
    """

    def __init__(
        self,
        issuer_url: str,
        *,
        min_refresh_interval: float,
        extra_status_source: StatusListSource | None,
        monotonic: Callable[[], float],
        freshness_margin: float = 0.0,
        clock: Callable[[], datetime] | None = None,
        max_status_staleness: float | None = DEFAULT_MAX_STATUS_STALENESS_SECONDS,
    ) -> None:
        self.issuer_url = issuer_url.rstrip("/")
        self.max_status_staleness = max_status_staleness
        self._clock = clock or (lambda: datetime.now(UTC))
        self.freshness_margin = freshness_margin
        self.min_refresh_interval = min_refresh_interval
        self.jwks_fresh_until = -math.inf
        self.last_jwks_attempt = -math.inf
        self.jwks_error: str | None = None
        self.jwks_generation = 0
        self.lists: dict[str, CachedList] = {}
        self.list_failures: dict[str, tuple[float, str]] = {}
        self._local = extra_status_source
        self._now = monotonic

    # -- hooks the core calls ------------------------------------------------------------------------------

    def record_unknown_kid(self, kid: str) -> Mapping[str, Any] | None:
        needs = _current_needs.get()
        if needs is not None:
            needs.kids.add(kid)
        return None

    def fetch(self, url: str) -> str:
        if self._local is not None:
            return self._local.fetch(url)
        cached = self.lists.get(url)
        if cached is not None and cached.fresh_until > self._now():
            return cached.jwt
        needs = _current_needs.get()
        if needs is not None:
            needs.lists.add(url)
        raise LookupError(f"status list {url} is not cached")

    # -- planning and applying fetches ---------------------------------------------------------------------

    def jwks_stale(self) -> bool:
        return self.jwks_fresh_until <= self._now()

    def may_fetch_jwks(self) -> bool:
        return self._now() - self.last_jwks_attempt >= self.min_refresh_interval

    def jwks_request(self) -> Request:
        self.last_jwks_attempt = self._now()
        return Request(jwks_url(self.issuer_url), {"accept": "application/json"})

    def jwks_received(self, status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        document = parse_jwks(status, body)
        lifetime = freshness_lifetime(headers, DEFAULT_JWKS_MAX_AGE)
        self.jwks_fresh_until = self._now() + max(lifetime, self.min_refresh_interval)
        self.jwks_error = None
        self.jwks_generation += 1
        return document

    def jwks_failed(self, reason: str) -> None:
        self.jwks_error = reason
        log.warning("cannot fetch the JWKS of %s: %s", self.issuer_url, reason)

    def list_fresh(self, url: str) -> bool:
        cached = self.lists.get(url)
        return cached is not None and cached.fresh_until > self._now()

    def status_request(self, url: str) -> Request:
        """The (conditional) request for a list, or ``VerificationError`` when it may not be fetched now."""
        try:
            check_fetchable(url, self.issuer_url)
        except FetchError as exc:
            raise VerificationError(e.STATUS_UNAVAILABLE, str(exc)) from None
        failure = self.list_failures.get(url)
        if failure is not None and self._now() - failure[0] < STATUS_FAILURE_BACKOFF:
            raise VerificationError(e.STATUS_UNAVAILABLE, f"status list {url} unavailable: {failure[1]}")
        headers = {"accept": "application/vc+jwt, application/jwt;q=0.9, */*;q=0.1"}
        cached = self.lists.get(url)
        if cached is not None and cached.etag:
            headers["if-none-match"] = cached.etag
        return Request(url, headers)

    def status_received(self, url: str, status: int, headers: Mapping[str, str], body: bytes) -> None:
        lifetime = freshness_lifetime(headers, DEFAULT_STATUS_MAX_AGE) - self.freshness_margin
        cached = self.lists.get(url)
        if status == 304 and cached is not None:
            jwt, etag = cached.jwt, cached.etag
        else:
            jwt, etag = parse_status_list(status, body), headers.get("etag")
        lifetime = max(min(lifetime, self._seconds_until_stale(jwt)), MIN_FRESHNESS)
        self.lists[url] = CachedList(jwt, etag, self._now() + lifetime)
        self.list_failures.pop(url, None)

    def _seconds_until_stale(self, jwt: str) -> float:
        """How long the list's own ``iat + ttl + max_status_staleness`` still allows (unverified claims: this
        only decides when to fetch again; the core verifies the list and judges its age itself)."""
        if self.max_status_staleness is None:
            return math.inf
        try:
            usable_until = status_list_usable_until(parse_compact(jwt).payload, self.max_status_staleness)
        except VerificationError:
            return 0.0
        if usable_until is None:
            return 0.0
        return usable_until - self._clock().timestamp() - self.freshness_margin

    def status_failed(self, url: str, reason: str) -> VerificationError:
        self.list_failures[url] = (self._now(), reason)
        log.warning("cannot fetch status list %s: %s", url, reason)
        return VerificationError(e.STATUS_UNAVAILABLE, f"cannot fetch status list {url}: {reason}")


def check_response(request: Request, response: httpx.Response, issuer_url: str) -> None:
    if str(response.url) != request.url:
        check_fetchable(str(response.url), issuer_url)  # a redirect must not leave the issuer either
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise FetchError(f"{request.url} returned more than {MAX_DOCUMENT_BYTES} bytes")


def attempt(op: Callable[[], T]) -> T:
    """Run a core verification once, recording what it finds missing; ``Miss`` when it failed only for want
    of keys or lists to fetch. (Inline rather than a context manager: this wraps every warm verification.)"""
    needs = Needs()
    token = _current_needs.set(needs)
    try:
        return op()
    except VerificationError as exc:
        if exc.code in (e.UNKNOWN_KID, e.STATUS_UNAVAILABLE) and needs:
            raise Miss(exc, needs) from None
        raise
    finally:
        _current_needs.reset(token)


def sync_client() -> httpx.Client:
    return httpx.Client(timeout=DEFAULT_TIMEOUT_SECONDS, follow_redirects=False, headers={"user-agent": USER_AGENT})


def async_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=DEFAULT_TIMEOUT_SECONDS, follow_redirects=False, headers={"user-agent": USER_AGENT}
    )
