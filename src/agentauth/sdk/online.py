"""The online verifier: a resource server configures an issuer URL and nothing else.

* JWKS: fetched from ``{issuer}/.well-known/jwks.json`` on first use, refreshed when its ``Cache-Control``
  max-age runs out, and refetched at once when a token names an unknown ``kid`` - but at most once per
  ``min_refresh_interval`` seconds, so a flood of made-up kids costs the issuer one request per interval.
* Status lists: fetched only from the issuer's own origin (``http.check_fetchable``), kept while their
  ``Cache-Control`` (which the issuer sets to the list's ``ttl``) allows and while the list is younger than
  its ``iat + ttl + max_status_staleness`` (default 60 s; older copies are refetched, and refused as
  ``status_stale`` if nothing fresher comes), revalidated with ``If-None-Match``.

The pure core does the verifying. Its two hooks - ``refresh_keys`` and the status-list source - do no I/O here:
they serve what is cached and *record* what is missing. On such a miss the verifier fetches what was recorded
and runs the core again. A warm verification therefore costs exactly what offline verification costs, and a
status list is only ever fetched for a credential whose signature has already been verified (the core checks
status after the signature), never for a URL in a forged token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

import httpx

from agentauth.sdk.cache import (
    DEFAULT_JWKS_MAX_AGE,
    DEFAULT_MIN_REFRESH_SECONDS,
    JWKS_UNAVAILABLE,
    MAX_ROUNDS,
    IssuerCache,
    Miss,
    Request,
    async_client,
    attempt,
    check_response,
    sync_client,
)
from agentauth.sdk.http import FetchError
from agentauth.vc import (
    DEFAULT_MAX_STATUS_STALENESS_SECONDS,
    DelegationLink,
    NonceRegistry,
    StatusListSource,
    VerificationError,
    VerifiedPresentation,
    VerifiedToken,
    Verifier,
)
from agentauth.vc.dpop import DPoPRequest, ReplayCache

T = TypeVar("T")
H = TypeVar("H", httpx.Client, httpx.AsyncClient)


class _OwnReplay:
    """The replay cache of one online verification. The core checks a DPoP proof (and records its ``jti``) before
    the token's status; a verification that misses the status list runs again once the list is fetched, and must
    not then find its own proof "used before". A ``jti`` this verification recorded passes again; any other
    replay is still refused by the shared cache."""

    __slots__ = ("_inner", "_mine")

    def __init__(self, inner: ReplayCache) -> None:
        self._inner = inner
        self._mine: set[str] = set()

    def consume(self, nonce: str, *, until: float, now: float) -> bool:
        if nonce in self._mine:
            return True
        if not self._inner.consume(nonce, until=until, now=now):
            return False
        self._mine.add(nonce)
        return True


def _retryable(dpop: DPoPRequest | None) -> DPoPRequest | None:
    if dpop is None:
        return None
    # Not dataclasses.replace: this runs on every DPoP request, and replace costs a few microseconds more.
    return DPoPRequest(dpop.proof, dpop.method, dpop.uri, _OwnReplay(dpop.replay), dpop.nonces)


class _OnlineBase(Generic[H]):
    """The core verifier, the issuer cache and the HTTP client that the sync and async verifiers share; ``http``
    defaults to a new client, which the verifier then closes.

    ``resource``: your server's resource identifier (RFC 8707; the one you registered with the issuer), which
    every access token's ``aud`` must name (``invalid_audience`` otherwise; ``audience_not_configured`` when it
    is not set and a call passes no ``audience``). ``any_audience=True`` skips that check - only for inspection
    tools (``agentauth verify``), never for a server accepting tokens."""

    def __init__(
        self,
        issuer_url: str,
        *,
        resource: str | None = None,
        any_audience: bool = False,
        http: H | None = None,
        jwks: Mapping[str, Any] | None = None,
        status_source: StatusListSource | None = None,
        check_status: bool = True,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_SECONDS,
        leeway_seconds: int = 30,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        nonces: NonceRegistry | None = None,
        max_status_staleness: float | None = DEFAULT_MAX_STATUS_STALENESS_SECONDS,
    ) -> None:
        self._cache = IssuerCache(
            issuer_url,
            min_refresh_interval=min_refresh_interval,
            extra_status_source=status_source,
            monotonic=monotonic,
            clock=clock,
            max_status_staleness=max_status_staleness,
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
            max_status_staleness=max_status_staleness,
            resource=resource,
            require_audience=not any_audience,
        )
        if jwks is not None:
            self._cache.jwks_fresh_until = monotonic() + DEFAULT_JWKS_MAX_AGE
        self._owns_http = http is None
        self._http: H = http or self._new_client()
        self._start()

    def _new_client(self) -> H:
        """The client to fetch with when none was given."""
        raise NotImplementedError

    def _start(self) -> None:
        """Set up the state the sync or async fetching needs (last step of ``__init__``)."""

    @property
    def issuer_url(self) -> str:
        return self.core.issuer_url

    @property
    def issuer_did(self) -> str:
        return self.core.issuer_did

    @property
    def resource(self) -> str | None:
        return self.core.resource

    @property
    def require_audience(self) -> bool:
        return self.core.require_audience

    def _no_keys_error(self, original: VerificationError) -> VerificationError:
        if self._cache.jwks_error is not None:
            return VerificationError(JWKS_UNAVAILABLE, f"issuer keys unavailable: {self._cache.jwks_error}")
        return original


class OnlineVerifier(_OnlineBase[httpx.Client]):
    """Verifies an issuer's tokens and credentials, fetching its JWKS and status lists with a sync httpx client.

    Thread-safe; fetches are serialized. ``status_source`` replaces HTTP for status lists (e.g. a
    ``DirectoryStatusLists``); ``jwks`` seeds the key cache (e.g. from a file) so the first token needs no fetch.
    """

    def _new_client(self) -> httpx.Client:
        return sync_client()

    def _start(self) -> None:
        self._lock = threading.Lock()

    @property
    def http(self) -> httpx.Client:
        """The client it fetches with (for fetching more from the same issuer, e.g. ``mirror``)."""
        return self._http

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> OnlineVerifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- fetching ----------------------------------------------------------------------------------------

    def _get(self, request: Request) -> httpx.Response:
        response = self._http.get(request.url, headers=request.headers)
        check_response(request, response, self.issuer_url)
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
        for _ in range(MAX_ROUNDS - 1):
            try:
                return attempt(op)
            except Miss as miss:
                if miss.needs.kids and not self.refresh_keys():
                    raise self._no_keys_error(miss.error) from None
                for url in sorted(miss.needs.lists):
                    self._fetch_list(url)
        try:
            return attempt(op)
        except Miss as miss:
            raise miss.error from None

    # -- verification ------------------------------------------------------------------------------------

    def verify_access_token(
        self, token: str, *, audience: str | None = None, now: datetime | None = None, dpop: DPoPRequest | None = None
    ) -> VerifiedToken:
        """See ``Verifier.verify_access_token``; ``dpop``: the request's DPoP proof, for a DPoP-bound token."""
        request = _retryable(dpop)
        return self._run(lambda: self.core.verify_access_token(token, audience=audience, now=now, dpop=request))

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


class AsyncOnlineVerifier(_OnlineBase[httpx.AsyncClient]):
    """``OnlineVerifier`` for asyncio servers: the same checks, fetching with an ``httpx.AsyncClient``.

    Concurrent verifications that miss the same status list share one fetch. Use it from one event loop.
    """

    def _new_client(self) -> httpx.AsyncClient:
        return async_client()

    def _start(self) -> None:
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

    async def _get(self, request: Request) -> httpx.Response:
        response = await self._http.get(request.url, headers=request.headers)
        check_response(request, response, self.issuer_url)
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

    async def _fetch_jwks_now(self, request: Request) -> bool:
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

    async def _fetch_list_now(self, request: Request) -> None:
        try:
            response = await self._get(request)
            self._cache.status_received(request.url, response.status_code, response.headers, response.content)
        except (httpx.HTTPError, FetchError) as exc:
            raise self._cache.status_failed(request.url, str(exc) or type(exc).__name__) from None

    async def _run(self, op: Callable[[], T]) -> T:
        if self._cache.jwks_stale() and (self._jwks_task is not None or self._cache.may_fetch_jwks()):
            await self.refresh_keys()
        for _ in range(MAX_ROUNDS - 1):
            try:
                return attempt(op)
            except Miss as miss:
                if miss.needs.kids and not await self.refresh_keys():
                    raise self._no_keys_error(miss.error) from None
                if miss.needs.lists:
                    await asyncio.gather(*(self._fetch_list(url) for url in sorted(miss.needs.lists)))
        try:
            return attempt(op)
        except Miss as miss:
            raise miss.error from None

    # -- verification ------------------------------------------------------------------------------------

    async def verify_access_token(
        self, token: str, *, audience: str | None = None, now: datetime | None = None, dpop: DPoPRequest | None = None
    ) -> VerifiedToken:
        """See ``Verifier.verify_access_token``; ``dpop``: the request's DPoP proof, for a DPoP-bound token."""
        request = _retryable(dpop)
        return await self._run(lambda: self.core.verify_access_token(token, audience=audience, now=now, dpop=request))

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
