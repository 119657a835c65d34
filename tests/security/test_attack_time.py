"""Expired and not-yet-valid tokens (RFC 7519 sections 4.1.4-4.1.5, RFC 7523 section 3, RFC 6749 section 6):
the service's clock (``services.core.clock``) is moved past ``exp`` or before ``nbf`` and every artifact is
refused wherever it is presented, without changing the database. The verifier's leeway is 30 s; the moves
below are minutes, so the leeway is never what decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from security_support import (
    INTROSPECT,
    JWT_BEARER,
    TOKEN,
    World,
    assert_unchanged,
    assertion_for,
    client_credentials,
    decode,
    exchange_data,
    snapshot,
)

from agentauth.bootstrap import Services
from support import assert_error, bearer, ok

pytestmark = pytest.mark.anyio


def move_clock(services: Services, monkeypatch: pytest.MonkeyPatch, by: timedelta) -> None:
    real = services.core.clock
    monkeypatch.setattr(services.core, "clock", lambda: real() + by)


async def refused_everywhere(client: httpx.AsyncClient, w: World, token: str, api_key: str) -> None:
    """An access token that is not valid now: no route, no introspection, no exchange."""
    assert_error(await client.get("/api/v1/agents", headers=bearer(token)), 401, "invalid_token", "bearer")
    seen = await client.post(INTROSPECT, data={"token": token, "client_secret": api_key})
    assert seen.status_code == 200 and seen.json() == {"active": False}, seen.text
    exchanged = await client.post(TOKEN, data=exchange_data(w.delegation["credential"], token))
    assert_error(exchanged, 400, "invalid_grant", "actor_token")


@pytest.mark.parametrize("minutes", [16, 60 * 24, 60 * 24 * 400])
async def test_expired_access_token_is_refused(
    client: httpx.AsyncClient, services: Services, world: World, monkeypatch: pytest.MonkeyPatch, minutes: int
) -> None:
    payload = decode(world.child_token)[1]
    assert payload["exp"] - payload["iat"] == 15 * 60, "the default 15-minute lifetime"
    before = await snapshot(services)
    move_clock(services, monkeypatch, timedelta(minutes=minutes))
    await refused_everywhere(client, world, world.child_token, world.child["api_key"])
    await assert_unchanged(services, before, f"{minutes} min later")


@pytest.mark.parametrize("minutes", [2, 60])
async def test_not_yet_valid_access_token_is_refused(
    client: httpx.AsyncClient, services: Services, world: World, monkeypatch: pytest.MonkeyPatch, minutes: int
) -> None:
    """A token whose ``nbf``/``iat`` lie ahead of the verifier's clock (a clock set back, or a token minted by a
    replica whose clock runs fast) is refused, not honoured early."""
    before = await snapshot(services)
    move_clock(services, monkeypatch, -timedelta(minutes=minutes))
    await refused_everywhere(client, world, world.child_token, world.child["api_key"])
    await assert_unchanged(services, before, f"{minutes} min earlier")


async def test_the_same_token_is_accepted_on_time(client: httpx.AsyncClient, world: World) -> None:
    """The control for the two tests above."""
    assert (await client.get("/api/v1/agents", headers=bearer(world.child_token))).status_code == 200
    exchanged = await client.post(TOKEN, data=exchange_data(world.delegation["credential"], world.child_token))
    assert exchanged.status_code == 200, exchanged.text


async def test_expired_delegation_cannot_be_exchanged(
    client: httpx.AsyncClient, services: Services, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    expires = datetime.fromisoformat(world.delegation["expires_at"])
    fresh = ok(await client_credentials(client, world.child["api_key"]))["access_token"]
    before = await snapshot(services)
    real = services.core.clock
    # The actor's token is judged by the same clock: give the exchange a fresh one minted "then".
    monkeypatch.setattr(services.core, "clock", lambda: expires + timedelta(minutes=1))
    minted = await client_credentials(client, world.child["api_key"])
    assert minted.status_code == 200
    after_mint = await snapshot(services)
    data = exchange_data(world.delegation["credential"], minted.json()["access_token"])
    response = await client.post(TOKEN, data=data)
    assert_error(response, 400, "invalid_grant", "expired delegation")
    await assert_unchanged(services, after_mint, "by the refused exchange")
    monkeypatch.setattr(services.core, "clock", real)
    exchanged = await client.post(TOKEN, data=exchange_data(world.delegation["credential"], fresh))
    assert exchanged.status_code == 200, exchanged.text
    assert before.counts["credentials"] < after_mint.counts["credentials"]


@pytest.mark.parametrize(
    ("label", "shift"),
    [("expired 10 min ago", -timedelta(minutes=11)), ("issued 10 min in the future", timedelta(minutes=10))],
)
async def test_assertion_outside_its_window_is_refused(
    client: httpx.AsyncClient, services: Services, world: World, label: str, shift: timedelta
) -> None:
    assertion = assertion_for(world.a, now=datetime.now(UTC) + shift)
    before = await snapshot(services)
    response = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion})
    assert_error(response, 400, "invalid_grant", label)
    await assert_unchanged(services, before, label)


async def test_expired_refresh_token_is_refused(
    client: httpx.AsyncClient, services: Services, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await snapshot(services)
    ttl = services.settings.refresh_token_ttl_seconds
    move_clock(services, monkeypatch, timedelta(seconds=ttl + 60))
    response = await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": world.a["refresh_token"]})
    assert_error(response, 400, "invalid_grant", "expired refresh token")
    seen = await client.post(INTROSPECT, data={"token": world.a["refresh_token"], "client_secret": world.a["api_key"]})
    assert seen.json() == {"active": False}
    await assert_unchanged(services, before, "by an expired refresh token")


async def test_expired_api_key_is_refused(
    client: httpx.AsyncClient, services: Services, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await client.post("/api/v1/credentials", json={"expires_in_days": 1}, headers=bearer(world.a_token))
    key = ok(created, 201)["raw_key"]
    before = await snapshot(services)
    move_clock(services, monkeypatch, timedelta(days=1, minutes=1))
    assert_error(await client_credentials(client, key), 401, "invalid_client", "expired API key")
    assert_error(
        await client.post(INTROSPECT, data={"token": world.a_token, "client_secret": key}), 401, None, "introspect"
    )
    await assert_unchanged(services, before, "by an expired API key")
