"""Prometheus metrics at ``/metrics`` (issue 16 item 6), off unless ``AGENTAUTH_METRICS_ENABLED``; with
``AGENTAUTH_METRICS_TOKEN`` a scrape must bring ``Authorization: Bearer <token>``.

* ``agentauth_http_requests_total{method, route, status}`` and ``agentauth_http_request_duration_seconds{method,
  route}``: every HTTP request (``api/logs.py: AccessLog`` feeds them), by route *template* - the matched route's
  path, direct routes included, ``unmatched`` for any path no route took - and status class (``2xx``...). No label
  ever holds an id or a raw path, so the number of series stays bounded whatever clients send.
* ``agentauth_token_requests_total{grant_type, outcome}``: the token endpoint and the MCP tools that get tokens
  (``authenticate``, ``refresh_token``, ``exchange_delegation`` at /mcp), by grant (its short name, ``other`` for an
  unknown one) and outcome (``issued``, or the RFC 6749 error code it answered).
* ``agentauth_batch_round_size{batcher}``: requests taken by each micro-batched round (``storage/batch.py``):
  issuance, token lookups, revocation, write plans, reads.
* ``agentauth_db_round_duration_seconds{batcher}``: how long each of those rounds ran - the database latency as
  the server sees it (a round is one transaction or one read on one connection; the issuance rounds' include
  signing), and PostgreSQL reads outside a batcher (``PgReads.fetch``).
* ``agentauth_rate_limited_total{limit}``: requests refused by a rate limit (``issuer/abuse.py``; REST and MCP), by
  limit (``token:ip``, ``token:key``, ``token:client``, ``quickstart:ip``, ``register:ip``).
* ``agentauth_webhook_attempts_total{outcome}`` and ``agentauth_webhook_attempt_duration_seconds``: webhook
  delivery attempts this process made (``issuer/webhook_worker.py``), by outcome: ``delivered``, ``retrying`` (it
  failed and is due again) or ``failed`` (it failed its last attempt).

Cost on the hot path: per request one dict lookup, one counter increment and one histogram observation (the
labelled children are cached); per batch round two histogram observations.

Several worker processes: each counts for itself. With ``PROMETHEUS_MULTIPROC_DIR`` set (to an empty directory,
wiped before each start) prometheus-client keeps the values in files there and a scrape of any worker adds up
all of them (prometheus-client's multiprocess mode; process and GC metrics are then left out).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from agentauth.api.errors import error_response
from agentauth.bootstrap import TOKEN_ISSUED
from agentauth.issuer.ratelimit import Limit, RateLimiter

if TYPE_CHECKING:
    from agentauth.bootstrap import Services

METRICS_PATH = "/metrics"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 10_000)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
ISSUED = TOKEN_ISSUED


def grant_label(grant_type: str) -> str:
    """``jwt-bearer`` for ``urn:ietf:params:oauth:grant-type:jwt-bearer``, ``client_credentials`` as is."""
    return grant_type.rsplit(":", 1)[-1]


class Metrics:
    """The instruments of one app, in a registry of its own (a test process builds many apps)."""

    def __init__(self, grant_types: Iterable[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if MULTIPROCESS_ENV not in os.environ:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(collector)
        self.requests = Counter(
            "agentauth_http_requests",
            "HTTP requests by method, route template and status class.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "agentauth_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method and route template.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.token_requests = Counter(
            "agentauth_token_requests",
            "Token endpoint requests by grant type and outcome (issued, or the OAuth error code answered).",
            ("grant_type", "outcome"),
            registry=self.registry,
        )
        self.batch_rounds = Histogram(
            "agentauth_batch_round_size",
            "Requests one micro-batched round took (issuance, token lookups, revocation, write plans).",
            ("batcher",),
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.round_latency = Histogram(
            "agentauth_db_round_duration_seconds",
            "Seconds one micro-batched database round (or unbatched PostgreSQL read) ran, by batcher.",
            ("batcher",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "agentauth_rate_limited",
            "Requests refused by a rate limit, by limit.",
            ("limit",),
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "agentauth_webhook_attempts",
            "Webhook delivery attempts by outcome (delivered, retrying, failed).",
            ("outcome",),
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "agentauth_webhook_attempt_duration_seconds",
            "Seconds one webhook delivery attempt took, to the receiver's answer or the failure.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._grants = {grant_type: grant_label(grant_type) for grant_type in grant_types}
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._token_children: dict[tuple[str, str], Counter] = {}
        self._round_children: dict[str, tuple[Histogram, Histogram]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in METHODS:
            method = "other"  # any token is a method to HTTP: a client's invention must not add series
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            status_class = STATUS_CLASSES[status // 100 - 1] if 100 <= status < 600 else "other"
            children = (self.requests.labels(method, route, status_class), self.latency.labels(method, route))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_token_request(self, grant_type: object, outcome: str) -> None:
        grant = self._grants.get(grant_type, "other") if isinstance(grant_type, str) else "none"
        child = self._token_children.get((grant, outcome))
        if child is None:
            child = self._token_children[(grant, outcome)] = self.token_requests.labels(grant, outcome)
        child.inc()

    def observe_round(self, batcher: str, size: int, seconds: float) -> None:
        children = self._round_children.get(batcher)
        if children is None:
            children = (self.batch_rounds.labels(batcher), self.round_latency.labels(batcher))
            self._round_children[batcher] = children
        children[0].observe(size)
        children[1].observe(seconds)

    def observe_webhook_attempt(self, outcome: str, seconds: float) -> None:
        self.webhook_attempts.labels(outcome).inc()
        self.webhook_latency.observe(seconds)

    def exposition(self) -> bytes:
        """The text format of a scrape: this process's values, or every worker's in multiprocess mode."""
        if MULTIPROCESS_ENV in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    def attach(self, services: Services) -> None:
        """Count ``services``' rate-limit refusals and this process's batch rounds here."""
        limiter = services.rate_limiter
        inner = limiter.inner if isinstance(limiter, CountingRateLimiter) else limiter
        services.rate_limiter = CountingRateLimiter(inner, self)
        services.observe_batch_rounds(self.observe_round)
        services.token_requests = self.observe_token_request
        services.webhook_worker.observe = self.observe_webhook_attempt

    def detach(self, services: Services) -> None:
        if isinstance(services.rate_limiter, CountingRateLimiter) and services.rate_limiter.metrics is self:
            services.rate_limiter = services.rate_limiter.inner
        services.observe_batch_rounds(None)
        services.token_requests = None
        if services.webhook_worker.observe == self.observe_webhook_attempt:
            services.webhook_worker.observe = None


def limit_label(key: str) -> str:
    """``token:ip`` for the bucket ``token:ip:203.0.113.7``: the limit, without the client it counted."""
    return ":".join(key.split(":", 2)[:2])


class CountingRateLimiter:
    """A ``RateLimiter`` that counts the refusals of the one it wraps (``agentauth_rate_limited_total``)."""

    def __init__(self, inner: RateLimiter, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def hit(self, key: str, limit: Limit) -> float | None:
        wait = await self.inner.hit(key, limit)
        if wait is not None:
            self.metrics.rate_limited.labels(limit_label(key)).inc()
        return wait

    async def close(self) -> None:
        await self.inner.close()


def observe_token_request(request: Request, grant_type: object, outcome: str) -> None:
    """For the token endpoint: count one request of ``grant_type`` that ended in ``outcome``, if metrics are on."""
    metrics: Metrics | None = request.app.state.metrics
    if metrics is not None:
        metrics.observe_token_request(grant_type, outcome)


def _authorized(header: str, token: bytes) -> bool:
    scheme, _, credentials = header.partition(" ")
    # Compared in constant time: how long the comparison takes says nothing about the token.
    return hmac.compare_digest(credentials.strip().encode(), token) and scheme.lower() == "bearer"


def install(app: FastAPI, metrics: Metrics, token: str | None) -> None:
    """``GET /metrics`` on ``app`` (only when metrics are on: otherwise the path is a 404 like any unknown one)."""
    expected = token.encode() if token is not None else None

    @app.get(METRICS_PATH, include_in_schema=False)
    async def scrape(request: Request) -> Response:
        if expected is not None and not _authorized(request.headers.get("authorization", ""), expected):
            description = "/metrics needs the configured bearer token"
            # RFC 6750 section 3: the challenge names the error.
            challenge = f'Bearer realm="agentauth-metrics", error="invalid_token", error_description="{description}"'
            return error_response(401, "invalid_token", description, {"WWW-Authenticate": challenge})
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
