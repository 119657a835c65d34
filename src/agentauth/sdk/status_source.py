"""``HttpStatusLists``: the online verifiers' status-list fetching as a source for a plain ``agentauth.vc.Verifier``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

import httpx

from agentauth.sdk.cache import IssuerCache, check_response, sync_client
from agentauth.sdk.http import FetchError
from agentauth.vc import DEFAULT_MAX_STATUS_STALENESS_SECONDS, VerificationError


class HttpStatusLists:
    """A status-list source that fetches over HTTP, for a plain ``agentauth.vc.Verifier``::

        Verifier(issuer_url=url, jwks=jwks, status_source=HttpStatusLists(url))

    The online verifiers' rules: the issuer's origin only, ``Cache-Control`` honoured, ``If-None-Match``
    revalidation, fail closed (``LookupError``, which the core reports as ``status_unavailable``). It fetches
    inside ``Verifier`` calls - after the credential's signature has verified - so use it from sync code, or
    use ``OnlineVerifier``, which also keeps the JWKS fresh.

    The core asks only when its own copy's ttl has run out. A copy is served from here only while it stays fresh
    for ``FRESHNESS_MARGIN`` more seconds; otherwise the core could re-cache a copy about to go stale and hide a
    revocation for up to two ttls. Give it the same ``max_status_staleness`` (and ``clock``) as the ``Verifier``,
    so it refetches a list before the verifier would refuse it as ``status_stale``.
    """

    FRESHNESS_MARGIN: Final = 1.0

    def __init__(
        self,
        issuer_url: str,
        *,
        http: httpx.Client | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] | None = None,
        max_status_staleness: float | None = DEFAULT_MAX_STATUS_STALENESS_SECONDS,
    ) -> None:
        self._cache = IssuerCache(
            issuer_url,
            min_refresh_interval=0.0,
            extra_status_source=None,
            monotonic=monotonic,
            freshness_margin=self.FRESHNESS_MARGIN,
            clock=clock,
            max_status_staleness=max_status_staleness,
        )
        self._owns_http = http is None
        self._http = http or sync_client()
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def fetch(self, url: str) -> str:
        with self._lock:
            if not self._cache.list_fresh(url):
                try:
                    request = self._cache.status_request(url)
                except VerificationError as exc:
                    raise LookupError(exc.detail) from None
                try:
                    response = self._http.get(request.url, headers=request.headers)
                    check_response(request, response, self._cache.issuer_url)
                    self._cache.status_received(url, response.status_code, response.headers, response.content)
                except (httpx.HTTPError, FetchError) as exc:
                    raise LookupError(self._cache.status_failed(url, str(exc) or type(exc).__name__).detail) from None
            return self._cache.lists[url].jwt
