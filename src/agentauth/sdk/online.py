"""The online verifier: a resource server configures an issuer URL and nothing else.

* JWKS: fetched from ``{issuer}/.well-known/jwks.json`` on first use, refreshed when its ``Cache-Control``
  max-age runs out, and refetched at once when a token names an unknown ``kid`` - but at most once per
  ``min_refresh_interval`` seconds, so a flood of made-up kids costs the issuer one request per interval.
* Status lists: fetched only from the issuer's own origin (``http.check_fetchable``), kept while their
  ``Cache-Control`` (which the issuer sets to the list's ``ttl``) allows, revalidated with ``If-None-Match``.

The pure core does the verifying. Its two hooks - ``refresh_keys`` and the status-list source - do no I/O here:
they serve what is cached and *record* what is missing. On such a miss the verifier fetches what was recorded
and runs the core again. A warm verification therefore costs exactly what offline verification costs, and a
status list is only ever fetched for a credential whose signature has already been verified (the core checks
status after the signature), never for a URL in a forged token.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
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
    DelegationLink,
    NonceRegistry,
    StatusListSource,
    VerificationError,
    VerifiedPresentation,
    VerifiedToken,
    Verifier,
)
from agentauth.vc import errors as e

log = logging.getLogger("agentauth.sdk")
T = TypeVar("T")

# Reason code of this layer: the issuer's keys could not be fetched (a resource server answers 503, not 401).
JWKS_UNAVAILABLE: Final = "jwks_unavailable"
UNAVAILABLE_CODES: Final = frozenset({JWKS_UNAVAILABLE, e.STATUS_UNAVAILABLE})

DEFAULT_MIN_REFRESH_SECONDS: Final = 30.0
DEFAULT_JWKS_MAX_AGE: Final = 300.0
DEFAULT_STATUS_MAX_AGE: Final = 300.0
# After a failed status-list fetch, requests fail fast for this long instead of each waiting on the issuer.
STATUS_FAILURE_BACKOFF: Final = 2.0
# A response marked no-store is still usable for the verification that fetched it.
_MIN_FRESHNESS: Final = 1.0
# unknown kid -> JWKS; missing list -> list; the list's own kid -> JWKS again; one spare.
_MAX_ROUNDS: Final = 4
_USER_AGENT: Final = f"agentauth-sdk/{__version__}"


@dataclass
class _Needs:
    """What one verification found missing (recorded by the core's hooks)."""

    kids: set[str] = field(default_factory=set)
    lists: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.kids or self.lists)


_needs: ContextVar[_Needs | None] = ContextVar("agentauth_sdk_needs", default=None)


@dataclass(frozen=True, slots=True)
class _CachedList:
    jwt: str
    etag: str | None
    fresh_until: float


@dataclass(frozen=True, slots=True)
class _Request:
    url: str
    headers: dict[str, str]


class _Miss(Exception):
    """A verification failed only for want of something fetchable."""

    def __init__(self, error: VerificationError, needs: _Needs) -> None:
        super().__init__(error.code)
        self.error = error
        self.needs = needs


class _IssuerCache:
    """The cached JWKS and status lists of one issuer, and the refresh rate limit. No I/O: the verifiers feed it.

    It is the core's status-list source: a fresh list is served, a missing or stale one recorded as needed.
    """

    def __init__(
        self,
        issuer_url: str,
        *,
        min_refresh_interval: float,
        extra_status_source: StatusListSource | None,
        monotonic: Callable[[], float],
    ) -> None:
        self.issuer_url = issuer_url.rstrip("/")
        self.min_refresh_interval = min_refresh_interval
        self.jwks_fresh_until = -math.inf
        self.last_jwks_attempt = -math.inf
        self.jwks_error: str | None = None
        self.jwks_generation = 0
        self.lists: dict[str, _CachedList] = {}
        self.list_failures: dict[str, tuple[float, str]] = {}
        self._local = extra_status_source
        self._now = monotonic

    # -- hooks the core calls ------------------------------------------------------------------------------

    def record_unknown_kid(self, kid: str) -> Mapping[str, Any] | None:
        needs = _needs.get()
        if needs is not None:
            needs.kids.add(kid)
        return None

    def fetch(self, url: str) -> str:
        if self._local is not None:
            return self._local.fetch(url)
        cached = self.lists.get(url)
        if cached is not None and cached.fresh_until > self._now():
            return cached.jwt
        needs = _needs.get()
        if needs is not None:
            needs.lists.add(url)
        raise LookupError(f"status list {url} is not cached")

    # -- planning and applying fetches ---------------------------------------------------------------------

    def jwks_stale(self) -> bool:
        return self.jwks_fresh_until <= self._now()

    def may_fetch_jwks(self) -> bool:
        return self._now() - self.last_jwks_attempt >= self.min_refresh_interval

    def jwks_request(self) -> _Request:
        self.last_jwks_attempt = self._now()
        return _Request(jwks_url(self.issuer_url), {"accept": "application/json"})

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

    def status_request(self, url: str) -> _Request:
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
        return _Request(url, headers)

    def status_received(self, url: str, status: int, headers: Mapping[str, str], body: bytes) -> None:
        lifetime = max(freshness_lifetime(headers, DEFAULT_STATUS_MAX_AGE), _MIN_FRESHNESS)
        cached = self.lists.get(url)
        if status == 304 and cached is not None:
            self.lists[url] = _CachedList(cached.jwt, cached.etag, self._now() + lifetime)
        else:
            jwt = parse_status_list(status, body)
            self.lists[url] = _CachedList(jwt, headers.get("etag"), self._now() + lifetime)
        self.list_failures.pop(url, None)

    def status_failed(self, url: str, reason: str) -> VerificationError:
        self.list_failures[url] = (self._now(), reason)
        log.warning("cannot fetch status list %s: %s", url, reason)
        return VerificationError(e.STATUS_UNAVAILABLE, f"cannot fetch status list {url}: {reason}")


def _check_response(request: _Request, response: httpx.Response, issuer_url: str) -> None:
    if str(response.url) != request.url:
        check_fetchable(str(response.url), issuer_url)  # a redirect must not leave the issuer either
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise FetchError(f"{request.url} returned more than {MAX_DOCUMENT_BYTES} bytes")


class _OnlineBase:
    def __init__(
        self,
        issuer_url: str,
        *,
        jwks: Mapping[str, Any] | None,
        status_source: StatusListSource | None,
        check_status: bool,
        min_refresh_interval: float,
        leeway_seconds: int,
        clock: Callable[[], datetime] | None,
        monotonic: Callable[[], float],
        nonces: NonceRegistry | None,
    ) -> None:
        self._cache = _IssuerCache(
            issuer_url,
            min_refresh_interval=min_refresh_interval,
            extra_status_source=status_source,
            monotonic=monotonic,
        )
        self.core = Verifier(
            issuer_url=issuer_url,
            jwks=jwks or {"keys": []},
            status_source=self._cache,
            check_status=check_status,
            leeway_seconds=leeway_seconds,
            refresh_keys=self._cache.record_unknown_kid,
            clock=clock,
            nonces=nonces,
        )
        if jwks is not None:
            self._cache.jwks_fresh_until = monotonic() + DEFAULT_JWKS_MAX_AGE

    @property
    def issuer_url(self) -> str:
        return self.core.issuer_url

    @property
    def issuer_did(self) -> str:
        return self.core.issuer_did

    @staticmethod
    @contextmanager
    def _recording() -> Iterator[_Needs]:
        needs = _Needs()
        token = _needs.set(needs)
        try:
            yield needs
        finally:
            _needs.reset(token)

    def _attempt(self, op: Callable[[], T]) -> T:
        """Run a core verification once; ``_Miss`` when it failed only for want of keys or lists to fetch."""
        with self._recording() as needs:
            try:
                return op()
            except VerificationError as exc:
                if exc.code in (e.UNKNOWN_KID, e.STATUS_UNAVAILABLE) and needs:
                    raise _Miss(exc, needs) from None
                raise

    def _no_keys_error(self, original: VerificationError) -> VerificationError:
        if self._cache.jwks_error is not None:
            return VerificationError(JWKS_UNAVAILABLE, f"issuer keys unavailable: {self._cache.jwks_error}")
        return original


class OnlineVerifier(_OnlineBase):
    """Verifies an issuer's tokens and credentials, fetching its JWKS and status lists with a sync httpx client.

    Thread-safe; fetches are serialized. ``status_source`` replaces HTTP for status lists (e.g. a
    ``DirectoryStatusLists``); ``jwks`` seeds the key cache (e.g. from a file) so the first token needs no fetch.
    """

    def __init__(
        self,
        issuer_url: str,
        *,
        http: httpx.Client | None = None,
        jwks: Mapping[str, Any] | None = None,
        status_source: StatusListSource | None = None,
        check_status: bool = True,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_SECONDS,
        leeway_seconds: int = 30,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        nonces: NonceRegistry | None = None,
    ) -> None:
        super().__init__(
            issuer_url,
            jwks=jwks,
            status_source=status_source,
            check_status=check_status,
            min_refresh_interval=min_refresh_interval,
            leeway_seconds=leeway_seconds,
            clock=clock,
            monotonic=monotonic,
            nonces=nonces,
        )
        self._owns_http = http is None
        self._http = http or httpx.Client(
            timeout=DEFAULT_TIMEOUT_SECONDS, follow_redirects=False, headers={"user-agent": _USER_AGENT}
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> OnlineVerifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- fetching ----------------------------------------------------------------------------------------

    def _get(self, request: _Request) -> httpx.Response:
        response = self._http.get(request.url, headers=request.headers)
        _check_response(request, response, self.issuer_url)
        return response

    def refresh_keys(self) -> bool:
        """Fetch the JWKS now if the rate limit allows; True when fresh keys were installed."""
        seen = self._cache.jwks_generation
        with self._lock:
            if self._cache.jwks_generation != seen:
                return True  # another thread installed fresh keys while this one waited
            if not self._cache.may_fetch_jwks():
                return False
            request = self._cache.jwks_request()
            try:
                response = self._get(request)
                self.core.use_jwks(self._cache.jwks_received(response.status_code, response.headers, response.content))
            except (httpx.HTTPError, FetchError) as exc:
                self._cache.jwks_failed(str(exc) or type(exc).__name__)
                return False
            return True

    def _fetch_list(self, url: str) -> None:
        with self._lock:
            if self._cache.list_fresh(url):
                return  # another thread fetched it meanwhile
            request = self._cache.status_request(url)
            try:
                response = self._get(request)
                self._cache.status_received(url, response.status_code, response.headers, response.content)
            except (httpx.HTTPError, FetchError) as exc:
                raise self._cache.status_failed(url, str(exc) or type(exc).__name__) from None

    def _run(self, op: Callable[[], T]) -> T:
        if self._cache.jwks_stale() and self._cache.may_fetch_jwks():
            self.refresh_keys()
        for _ in range(_MAX_ROUNDS - 1):
            try:
                return self._attempt(op)
            except _Miss as miss:
                if miss.needs.kids and not self.refresh_keys():
                    raise self._no_keys_error(miss.error) from None
                for url in sorted(miss.needs.lists):
                    self._fetch_list(url)
        try:
            return self._attempt(op)
        except _Miss as miss:
            raise miss.error from None

    # -- verification ------------------------------------------------------------------------------------

    def verify_access_token(
        self, token: str, *, audience: str | None = None, now: datetime | None = None
    ) -> VerifiedToken:
        return self._run(lambda: self.core.verify_access_token(token, audience=audience, now=now))

    def verify_credential(self, credential: str, *, expected_type: str, now: datetime | None = None) -> dict[str, Any]:
        return self._run(lambda: self.core.verify_credential(credential, expected_type=expected_type, now=now))

    def verify_delegation_chain(
        self, chain: Sequence[str], *, now: datetime | None = None
    ) -> tuple[DelegationLink, ...]:
        return self._run(lambda: self.core.verify_delegation_chain(chain, now=now))

    def verify_presentation(
        self, presentation: str, *, audience: str, nonce: str, now: datetime | None = None
    ) -> VerifiedPresentation:
        return self._run(lambda: self.core.verify_presentation(presentation, audience=audience, nonce=nonce, now=now))

    def verify_signature(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._run(lambda: self.core.verify_signature(token))


class AsyncOnlineVerifier(_OnlineBase):
    """``OnlineVerifier`` for asyncio servers: the same checks, fetching with an ``httpx.AsyncClient``.

    Concurrent verifications that miss the same status list share one fetch. Use it from one event loop.
    """

    def __init__(
        self,
        issuer_url: str,
        *,
        http: httpx.AsyncClient | None = None,
        jwks: Mapping[str, Any] | None = None,
        status_source: StatusListSource | None = None,
        check_status: bool = True,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_SECONDS,
        leeway_seconds: int = 30,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        nonces: NonceRegistry | None = None,
    ) -> None:
        super().__init__(
            issuer_url,
            jwks=jwks,
            status_source=status_source,
            check_status=check_status,
            min_refresh_interval=min_refresh_interval,
            leeway_seconds=leeway_seconds,
            clock=clock,
            monotonic=monotonic,
            nonces=nonces,
        )
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=DEFAULT_TIMEOUT_SECONDS, follow_redirects=False, headers={"user-agent": _USER_AGENT}
        )
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._jwks_task: asyncio.Task[bool] | None = None

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncOnlineVerifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- fetching ----------------------------------------------------------------------------------------

    async def _get(self, request: _Request) -> httpx.Response:
        response = await self._http.get(request.url, headers=request.headers)
        _check_response(request, response, self.issuer_url)
        return response

    async def refresh_keys(self) -> bool:
        """Fetch the JWKS now if the rate limit allows; True when fresh keys were installed.

        Verifications that miss a kid while a fetch is under way wait for that fetch instead of failing."""
        task = self._jwks_task
        if task is None:
            if not self._cache.may_fetch_jwks():
                return False
            task = self._jwks_task = asyncio.ensure_future(self._fetch_jwks_now(self._cache.jwks_request()))
            task.add_done_callback(self._jwks_done)
        return await asyncio.shield(task)

    def _jwks_done(self, task: asyncio.Task[bool]) -> None:
        self._jwks_task = None

    async def _fetch_jwks_now(self, request: _Request) -> bool:
        try:
            response = await self._get(request)
            self.core.use_jwks(self._cache.jwks_received(response.status_code, response.headers, response.content))
        except (httpx.HTTPError, FetchError) as exc:
            self._cache.jwks_failed(str(exc) or type(exc).__name__)
            return False
        return True

    async def _fetch_list(self, url: str) -> None:
        task = self._inflight.get(url)
        if task is None:
            if self._cache.list_fresh(url):
                return
            request = self._cache.status_request(url)
            task = asyncio.ensure_future(self._fetch_list_now(request))
            self._inflight[url] = task
            task.add_done_callback(lambda done: self._list_done(url, done))
        await asyncio.shield(task)

    def _list_done(self, url: str, task: asyncio.Task[None]) -> None:
        self._inflight.pop(url, None)
        if not task.cancelled():
            task.exception()  # retrieved here too, so a waiter that went away leaves no "never retrieved" warning

    async def _fetch_list_now(self, request: _Request) -> None:
        try:
            response = await self._get(request)
            self._cache.status_received(request.url, response.status_code, response.headers, response.content)
        except (httpx.HTTPError, FetchError) as exc:
            raise self._cache.status_failed(request.url, str(exc) or type(exc).__name__) from None

    async def _run(self, op: Callable[[], T]) -> T:
        if self._cache.jwks_stale() and (self._jwks_task is not None or self._cache.may_fetch_jwks()):
            await self.refresh_keys()
        for _ in range(_MAX_ROUNDS - 1):
            try:
                return self._attempt(op)
            except _Miss as miss:
                if miss.needs.kids and not await self.refresh_keys():
                    raise self._no_keys_error(miss.error) from None
                if miss.needs.lists:
                    await asyncio.gather(*(self._fetch_list(url) for url in sorted(miss.needs.lists)))
        try:
            return self._attempt(op)
        except _Miss as miss:
            raise miss.error from None

    # -- verification ------------------------------------------------------------------------------------

    async def verify_access_token(
        self, token: str, *, audience: str | None = None, now: datetime | None = None
    ) -> VerifiedToken:
        return await self._run(lambda: self.core.verify_access_token(token, audience=audience, now=now))

    async def verify_credential(
        self, credential: str, *, expected_type: str, now: datetime | None = None
    ) -> dict[str, Any]:
        return await self._run(lambda: self.core.verify_credential(credential, expected_type=expected_type, now=now))

    async def verify_delegation_chain(
        self, chain: Sequence[str], *, now: datetime | None = None
    ) -> tuple[DelegationLink, ...]:
        return await self._run(lambda: self.core.verify_delegation_chain(chain, now=now))

    async def verify_presentation(
        self, presentation: str, *, audience: str, nonce: str, now: datetime | None = None
    ) -> VerifiedPresentation:
        return await self._run(
            lambda: self.core.verify_presentation(presentation, audience=audience, nonce=nonce, now=now)
        )

    async def verify_signature(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return await self._run(lambda: self.core.verify_signature(token))
