"""Every datetime a caller sends is validated once (``issuer.schemas.UtcDateTime``): read as UTC when it has no
offset, converted when it has one, and refused with 400 ``invalid_request`` - never a 5xx - when the conversion
leaves years 1-9999. Policy time windows take local ``HH:MM`` times (the zone is its own field): an offset there
is refused when the policy is written, instead of failing every later evaluation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from api_support import lenient_client

from agentauth.bootstrap import Services
from support import assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio

EVENTS = "/api/v1/audit/events"
OUT_OF_RANGE = [
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00+00:01",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59.999999-00:01",
]
IN_RANGE = ["0001-01-01T00:00:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59", "9999-12-31T23:59:59+23:59"]


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    # A lenient client: a 500 must show up as the response a real HTTP client sees, not as a raised exception.
    async with lenient_client(services) as http:
        yield http


@pytest.mark.parametrize("since", OUT_OF_RANGE)
async def test_audit_since_out_of_range_is_invalid_request(client: httpx.AsyncClient, since: str) -> None:
    root = await quickstart(client, "dt")
    response = await client.get(EVENTS, params={"since": since}, headers=bearer(root["access_token"]))
    body = assert_error(response, 400, "invalid_request", since)
    assert "since" in body["error_description"] and "out of range" in body["error_description"]


async def test_audit_since_extremes_in_range_answer(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "dt")
    headers = bearer(root["access_token"])
    for since in IN_RANGE:
        page = ok(await client.get(EVENTS, params={"since": since}, headers=headers))
        assert (page["items"] != []) == since.startswith("0001"), since


async def test_audit_since_offset_is_converted_to_utc(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "dt")
    headers = bearer(root["access_token"])
    newest = ok(await client.get(EVENTS, headers=headers))["items"][0]["created_at"]
    # The same instant written with a +05:00 offset: the event is still "at or after" it.
    instant = datetime.fromisoformat(newest).astimezone(timezone(timedelta(hours=5)))
    page = ok(await client.get(EVENTS, params={"since": instant.isoformat()}, headers=headers))
    assert any(item["created_at"] == newest for item in page["items"])
    later = ok(
        await client.get(EVENTS, params={"since": (instant + timedelta(seconds=1)).isoformat()}, headers=headers)
    )
    assert all(item["created_at"] != newest for item in later["items"])


@pytest.mark.parametrize("start", ["09:00+05:00", "09:00:00-23:59", "09:00Z"])
async def test_time_window_with_offset_is_refused_at_write(client: httpx.AsyncClient, start: str) -> None:
    root = await quickstart(client, "tw")
    headers = bearer(root["access_token"])
    policy = {
        "name": "office hours",
        "effect": "deny",
        "subjects": {"all": True},
        "actions": ["read"],
        "resources": ["api/v1/agents"],
        "conditions": {"time_window": {"start": start, "end": "17:00", "timezone": "UTC"}},
    }
    assert_error(await client.post("/api/v1/policies", json=policy, headers=headers), 400, "invalid_request", start)
    assert ok(await client.get("/api/v1/policies", headers=headers))["total"] == 0
    ok(await client.get("/api/v1/agents", headers=headers))  # evaluations keep working
