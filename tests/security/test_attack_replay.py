"""Replays: refresh-token reuse and races (RFC 9700 section 4.14.2, DESIGN "Rotation is atomic") and replayed
jwt-bearer assertions (RFC 7523 section 3, ``jti``). Every replay is refused and mints nothing; the only state a
detected reuse changes is the one it must change (the whole refresh family and its access tokens revoked).

Concurrency goes through the real app over ASGI with ``asyncio.gather``, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from security_support import INTROSPECT, JWT_BEARER, TOKEN, assert_unchanged, assertion_for, is_active, snapshot

from agentauth.bootstrap import Services
from support import assert_error, bearer, quickstart

pytestmark = pytest.mark.anyio

RACERS = 20


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": token})


async def test_refresh_reuse_is_refused_and_kills_the_family(client: httpx.AsyncClient, services: Services) -> None:
    agent = await quickstart(client, "reuse")
    first = await refresh(client, agent["refresh_token"])
    assert first.status_code == 200, first.text
    rotated = first.json()
    before = await snapshot(services)
    reuse = await refresh(client, agent["refresh_token"])
    assert_error(reuse, 400, "invalid_grant", "reuse")
    after = await snapshot(services)
    assert after.counts == before.counts, "the reuse minted nothing"
    # The family dies: the rotated refresh token and every access token of the family (RFC 9700 4.14.2).
    assert_error(await refresh(client, rotated["refresh_token"]), 400, "invalid_grant", "successor")
    assert not await is_active(client, rotated["access_token"])
    assert not await is_active(client, agent["access_token"])
    # The API key is not part of the family: the agent can start over.
    fresh = await client.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": agent["api_key"]})
    assert fresh.status_code == 200 and await is_active(client, fresh.json()["access_token"])


async def test_reuse_of_a_revoked_family_changes_nothing_more(client: httpx.AsyncClient, services: Services) -> None:
    agent = await quickstart(client, "reuse-again")
    assert (await refresh(client, agent["refresh_token"])).status_code == 200
    assert (await refresh(client, agent["refresh_token"])).status_code == 400  # detected: family revoked
    before = await snapshot(services)
    for _ in range(3):
        assert_error(await refresh(client, agent["refresh_token"]), 400, "invalid_grant", "reuse again")
    await assert_unchanged(services, before, "by replaying a dead refresh token")


async def test_refresh_race_has_exactly_one_winner(client: httpx.AsyncClient, services: Services) -> None:
    agent = await quickstart(client, "race")
    before = await snapshot(services)
    responses = await asyncio.gather(*(refresh(client, agent["refresh_token"]) for _ in range(RACERS)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    for response in responses:
        if response.status_code != 200:
            assert_error(response, 400, "invalid_grant", "race loser")
    after = await snapshot(services)
    # Exactly one rotation happened: one new access credential and one new refresh token, no more.
    assert after.counts["credentials"] == before.counts["credentials"] + 1, (before.counts, after.counts)
    assert after.counts["refresh_tokens"] == before.counts["refresh_tokens"] + 1, (before.counts, after.counts)
    winner = next(r for r in responses if r.status_code == 200).json()
    # The losers presented a spent token: reuse detection revoked the family, the winner's tokens included.
    assert_error(await refresh(client, winner["refresh_token"]), 400, "invalid_grant", "winner after the race")
    assert not await is_active(client, winner["access_token"])


async def test_refresh_race_on_distinct_families_all_win(client: httpx.AsyncClient, services: Services) -> None:
    """The control for the race: concurrency itself is not refused, only a second use of one token."""
    agents = [await quickstart(client, f"racer-{i}") for i in range(5)]
    responses = await asyncio.gather(*(refresh(client, a["refresh_token"]) for a in agents))
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]


async def test_replayed_assertion_is_refused(client: httpx.AsyncClient, services: Services) -> None:
    agent = await quickstart(client, "assertion")
    assertion = assertion_for(agent)
    first = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion})
    assert first.status_code == 200, first.text
    before = await snapshot(services)
    for _ in range(3):
        replay = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion})
        assert_error(replay, 400, "invalid_grant", "replayed assertion")
    await assert_unchanged(services, before, "by a replayed assertion")
    # A fresh assertion (new jti) still works: the refusal was about the replay.
    fresh = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion_for(agent)})
    assert fresh.status_code == 200, fresh.text


async def test_concurrent_replays_of_one_assertion_have_one_winner(
    client: httpx.AsyncClient, services: Services
) -> None:
    agent = await quickstart(client, "assertion-race")
    assertion = assertion_for(agent)
    before = await snapshot(services)
    responses = await asyncio.gather(
        *(client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion}) for _ in range(RACERS))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    for response in responses:
        if response.status_code != 200:
            assert_error(response, 400, "invalid_grant", "assertion race loser")
    after = await snapshot(services)
    assert after.counts["credentials"] == before.counts["credentials"] + 1
    assert after.counts["used_assertions"] == before.counts["used_assertions"] + 1


async def test_replayed_assertion_from_another_tenant_is_refused(client: httpx.AsyncClient, services: Services) -> None:
    """An assertion intercepted from agent A and replayed by anyone gets nothing, whoever presents it and
    however the request is dressed (client_id naming another agent)."""
    victim, attacker = await quickstart(client, "victim"), await quickstart(client, "attacker")
    assertion = assertion_for(victim)
    assert (await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion})).status_code == 200
    before = await snapshot(services)
    data = {"grant_type": JWT_BEARER, "assertion": assertion, "client_id": attacker["agent"]["id"]}
    assert_error(await client.post(TOKEN, data=data), 400, "invalid_grant", "replay with client_id")
    replay_json = await client.post(TOKEN, json={"grant_type": JWT_BEARER, "assertion": assertion})
    assert_error(replay_json, 400, "invalid_grant", "replay as JSON")
    await assert_unchanged(services, before, "by a replayed assertion")
    seen = await client.post(INTROSPECT, data={"token": victim["access_token"]}, headers=bearer(victim["access_token"]))
    assert seen.json()["active"] is True
