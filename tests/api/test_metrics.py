"""Prometheus ``/metrics`` (issue 16 item 6; ``api/metrics.py``), scraped and parsed with prometheus-client's own
parser: off by default (404); when on, the request and latency series move per route *template* - direct routes
included, every unmatched path under one label - and the token series per grant and outcome, batch rounds are
observed, rate-limit refusals counted per limit; no label value holds an id, a path or a secret; with
``AGENTAUTH_METRICS_TOKEN`` a scrape needs that bearer token (401 otherwise)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from agentauth.api.app import create_app
from agentauth.bootstrap import Services, build_services
from agentauth.errors import AgentAuthError
from agentauth.issuer.context import RequestContext
from agentauth.mcp.embedded import EmbeddedBackend
from support import ISSUER_URL, assert_error, bearer, ok, quickstart, reset_postgres

pytestmark = pytest.mark.anyio

TOKEN = "/api/v1/auth/token"
SCRAPE_TOKEN = "scrape-0123456789abcdef"


@contextlib.asynccontextmanager
async def metrics_client(
    settings_factory: Any, backend: str, **overrides: Any
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """Services with metrics on (and ``overrides``) and a client to their app; the process-wide batch-round hook
    is released afterwards."""
    if backend == "postgres":
        await reset_postgres()
    services = await build_services(settings_factory(metrics_enabled=True, **overrides))
    app = create_app(services=services)
    app.state.services = services  # ASGITransport does not run the lifespan
    try:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as http:
            yield services, http
    finally:
        app.state.metrics.detach(services)
        await services.close()


async def scrape(http: httpx.AsyncClient, **headers: str) -> dict[str, list[Sample]]:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version="), response.headers
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(samples: dict[str, list[Sample]], family: str, sample: str, **labels: str) -> float:
    """The value of the one sample named ``sample`` of ``family`` whose labels include ``labels`` (0 if none)."""
    found = [s for s in samples.get(family, []) if s.name == sample and labels.items() <= s.labels.items()]
    assert len(found) <= 1, found
    return found[0].value if found else 0.0


def label_values(samples: dict[str, list[Sample]]) -> set[str]:
    return {v for family in samples.values() for s in family for v in s.labels.values()}


async def test_metrics_are_off_by_default(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/metrics"), 404, "not_found")


async def test_requests_tokens_and_batches_are_counted_by_template_and_grant(
    settings_factory: Any, backend: str
) -> None:
    async with metrics_client(settings_factory, backend) as (_, http):
        root = await quickstart(http, "metered")
        agent_id, api_key = root["agent"]["id"], root["api_key"]
        issued = []
        for _ in range(3):
            issued.append(
                ok(await http.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": api_key}))
            )
        refreshed = ok(
            await http.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": root["refresh_token"]})
        )
        wrong = api_key[:-1] + ("A" if api_key[-1] != "A" else "B")
        refused = await http.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": wrong})
        assert_error(refused, 401, "invalid_client")
        assert_error(await http.post(TOKEN, data={"grant_type": "urn:example:made-up"}), 400, None)
        token = issued[0]["access_token"]
        ok(await http.get(f"/api/v1/agents/{agent_id}", headers=bearer(token)))  # a direct route with an id
        ok(await http.get("/api/v1/agents", headers=bearer(token)))
        assert_error(await http.get(f"/no/such/path/{agent_id}"), 404, None)
        assert_error(await http.get(f"/another/{agent_id}/unknown"), 404, None)
        samples = await scrape(http)

    requests = "agentauth_http_requests"
    total = "agentauth_http_requests_total"
    assert value(samples, requests, total, method="POST", route=TOKEN, status="2xx") == 4
    assert value(samples, requests, total, method="POST", route=TOKEN, status="4xx") == 2
    assert value(samples, requests, total, method="GET", route="/api/v1/agents/{agent_id}", status="2xx") == 1
    assert value(samples, requests, total, method="GET", route="/api/v1/agents", status="2xx") == 1
    assert value(samples, requests, total, method="POST", route="/api/v1/agents/quickstart", status="2xx") == 1
    assert value(samples, requests, total, method="GET", route="unmatched", status="4xx") == 2
    latency = "agentauth_http_request_duration_seconds"
    assert value(samples, latency, latency + "_count", method="POST", route=TOKEN) == 6
    assert value(samples, latency, latency + "_sum", method="POST", route=TOKEN) > 0

    grants = "agentauth_token_requests"
    assert value(samples, grants, grants + "_total", grant_type="client_credentials", outcome="issued") == 3
    assert value(samples, grants, grants + "_total", grant_type="client_credentials", outcome="invalid_client") == 1
    assert value(samples, grants, grants + "_total", grant_type="refresh_token", outcome="issued") == 1
    assert value(samples, grants, grants + "_total", grant_type="other", outcome="unsupported_grant_type") == 1

    rounds = [s for s in samples["agentauth_batch_round_size"] if s.name == "agentauth_batch_round_size_count"]
    issuance = [s for s in rounds if s.labels["batcher"].startswith("ClientCredentialsIssuer.")]
    assert issuance and all(s.value >= 1 for s in issuance), rounds
    sizes = {s.labels["batcher"]: s.value for s in samples["agentauth_batch_round_size"] if s.name.endswith("_sum")}
    assert sizes["ClientCredentialsIssuer.commit_round"] >= 3, sizes  # the three client_credentials tokens
    db = "agentauth_db_round_duration_seconds"
    durations = {s.labels["batcher"]: s.value for s in samples[db] if s.name == db + "_count"}
    assert durations["ClientCredentialsIssuer.commit_round"] == value(
        samples, "agentauth_batch_round_size", "agentauth_batch_round_size_count",
        batcher="ClientCredentialsIssuer.commit_round",
    )  # fmt: skip
    assert value(samples, db, db + "_sum", batcher="ClientCredentialsIssuer.commit_round") > 0

    secrets = [api_key, wrong, root["refresh_token"], refreshed["refresh_token"], token]
    for label in label_values(samples):
        assert agent_id not in label and "/no/such" not in label and "another" not in label, label
        assert not any(secret in label for secret in secrets), label


async def test_rate_limit_refusals_are_counted_per_limit(settings_factory: Any, backend: str) -> None:
    async with metrics_client(settings_factory, backend, token_rate_per_client=2) as (_, http):
        api_key = (await quickstart(http, "limited"))["api_key"]
        answers = [
            (await http.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": api_key})).status_code
            for _ in range(4)
        ]
        samples = await scrape(http)
    assert answers == [200, 200, 429, 429], answers
    assert value(samples, "agentauth_rate_limited", "agentauth_rate_limited_total", limit="token:key") == 2
    grants = "agentauth_token_requests_total"
    assert (
        value(samples, "agentauth_token_requests", grants, grant_type="client_credentials", outcome="rate_limited") == 2
    )
    assert value(samples, "agentauth_http_requests", "agentauth_http_requests_total", route=TOKEN, status="4xx") == 2


async def test_a_configured_token_is_required_to_scrape(settings_factory: Any, backend: str) -> None:
    async with metrics_client(settings_factory, backend, metrics_token=SCRAPE_TOKEN) as (_, http):
        for headers in (
            {},
            bearer(SCRAPE_TOKEN[:-1]),
            bearer(SCRAPE_TOKEN + "x"),
            {"Authorization": f"Basic {SCRAPE_TOKEN}"},
        ):
            refused = await http.get("/metrics", headers=headers)
            assert_error(refused, 401, "invalid_token", str(headers))
            assert "agentauth_" not in refused.text
        samples = await scrape(http, **bearer(SCRAPE_TOKEN))
        assert "agentauth_http_requests" in samples
        assert "agentauth_http_requests" in await scrape(http, Authorization=f"bearer {SCRAPE_TOKEN}")


async def test_token_requests_of_the_mcp_tools_are_counted_too(settings_factory: Any, backend: str) -> None:
    async with metrics_client(settings_factory, backend) as (services, http):
        root = await quickstart(http)
        mcp = EmbeddedBackend(lambda: services)  # what the /mcp tools call (``authenticate``, ``refresh_token``)
        await mcp.token({"grant_type": "client_credentials", "client_secret": root["api_key"]}, RequestContext())
        with pytest.raises(AgentAuthError):
            await mcp.token({"grant_type": "client_credentials", "client_secret": "ak_live_wrong"}, RequestContext())
        samples = await scrape(http)
    grants = "agentauth_token_requests"
    assert value(samples, grants, grants + "_total", grant_type="client_credentials", outcome="issued") == 1
    assert value(samples, grants, grants + "_total", grant_type="client_credentials", outcome="invalid_client") == 1


async def test_webhook_attempts_are_counted_by_outcome(settings_factory: Any, backend: str) -> None:
    from webhook_support import receiver

    async with metrics_client(settings_factory, backend, webhook_retry_first_seconds=0.01) as (services, http):
        token = (await quickstart(http, "hooked"))["access_token"]
        with receiver(script=[500]) as hook:
            made = await http.post("/api/v1/webhooks", json={"url": hook.url, "events": ["agent.*"]},
                                   headers=bearer(token))  # fmt: skip
            ok(made, 201)
            ok(await http.post("/api/v1/agents", json={"name": "c", "agent_type": "tool"}, headers=bearer(token)), 201)
            worker = services.webhook_worker
            await worker.fan_out()
            attempts = [await worker.deliver_due()]
            await asyncio.sleep(0.5)  # the retry is due after 0.01 s and its jitter
            attempts.append(await worker.deliver_due())
        samples = await scrape(http)
    assert attempts == [1, 1] and [r.answered for r in hook.received] == [500, 204]
    family, total = "agentauth_webhook_attempts", "agentauth_webhook_attempts_total"
    assert value(samples, family, total, outcome="retrying") == 1
    assert value(samples, family, total, outcome="delivered") == 1
    duration = "agentauth_webhook_attempt_duration_seconds"
    assert value(samples, duration, f"{duration}_count") == 2
