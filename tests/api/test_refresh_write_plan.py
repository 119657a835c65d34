"""The refresh_token and jwt-bearer grants on the general write path (issue 13 item 7): one read, the pair signed
outside any transaction, one write plan that re-checks what the read relied on.

* Of N concurrent uses of one refresh token exactly one rotates it (the plan's conditional UPDATE): one 200, one
  new refresh token and one new access token in the family, one ``token.refreshed`` event. The losers presented
  a spent token - RFC 9700 section 4.14.2 reuse - and revoke the family, as before.
* A rotation leaves the family intact until the spent token is presented again; then the family dies.
* What stage 1 checked and stage 2 re-checks: an agent deactivated or an API key revoked in between (a writer
  changing the row while the grant signs) is ``invalid_grant`` and nothing is written - the refresh token stays
  usable, no token is minted, no assertion id is spent.

Through the real app over ASGI on a SQLite file, and on PostgreSQL when enabled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from api_support import JWT_BEARER, TOKEN, TOKEN_ENDPOINT_URL, Snapshot, assert_unchanged, snapshot
from sqlalchemy import text

from agentauth.bootstrap import Services
from agentauth.keys import KeyPair
from agentauth.vc import create_agent_assertion
from support import assert_error, bearer, quickstart

pytestmark = pytest.mark.anyio

RACERS = 16


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": token})


async def is_active(client: httpx.AsyncClient, access_token: str) -> bool:
    return (await client.get("/api/v1/agents", headers=bearer(access_token))).status_code == 200


async def rows(services: Services, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with services.engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(text(sql), params)]


async def family_of(services: Services, refresh_token: str) -> str:
    ((family,),) = await rows(
        services,
        "SELECT family_id FROM refresh_tokens WHERE token_hash = :h",
        h=services.core.hasher.hash(refresh_token),
    )
    return str(family)


async def family_state(services: Services, family: str) -> tuple[list[str], int, int, list[str]]:
    """(refresh token statuses, access tokens, live access tokens, audit actions on the family) of ``family``."""
    statuses = sorted(
        s for (s,) in await rows(services, "SELECT status FROM refresh_tokens WHERE family_id = :f", f=family)
    )
    access = await rows(services, "SELECT revoked_at FROM credentials WHERE refresh_family_id = :f", f=family)
    actions = await rows(services, "SELECT action FROM audit_events WHERE target_id = :f ORDER BY id", f=family)
    return statuses, len(access), sum(1 for (revoked,) in access if revoked is None), [a for (a,) in actions]


async def test_concurrent_refreshes_of_one_token_rotate_it_exactly_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    agent = await quickstart(client, "racer")
    family = await family_of(services, agent["refresh_token"])

    responses = await asyncio.gather(*(refresh(client, agent["refresh_token"]) for _ in range(RACERS)))

    assert sorted(r.status_code for r in responses) == [200] + [400] * (RACERS - 1), [r.text for r in responses]
    for response in responses:
        if response.status_code != 200:
            assert_error(response, 400, "invalid_grant", "race loser")
    winner = next(r.json() for r in responses if r.status_code == 200)
    assert await family_of(services, winner["refresh_token"]) == family, "the new token continues the family"
    statuses, access, live, actions = await family_state(services, family)
    # Exactly one rotation: the original and one new refresh token, the quickstart access token and one new one.
    assert (len(statuses), access, actions.count("token.refreshed")) == (2, 2, 1), (statuses, access, actions)
    # The losers presented a spent token (reuse, RFC 9700 4.14.2): the family is revoked, the winner's pair too.
    assert statuses == ["revoked", "revoked"] and live == 0, (statuses, live)
    assert "refresh_token.reuse_detected" in actions
    assert not await is_active(client, winner["access_token"])


async def test_a_rotation_keeps_the_family_until_the_spent_token_comes_back(
    client: httpx.AsyncClient, services: Services
) -> None:
    agent = await quickstart(client, "rotate")
    family = await family_of(services, agent["refresh_token"])

    first = await refresh(client, agent["refresh_token"])
    assert first.status_code == 200, first.text
    rotated = first.json()
    assert await family_state(services, family) == (["active", "used"], 2, 2, ["token.refreshed"])
    assert await is_active(client, rotated["access_token"]) and await is_active(client, agent["access_token"])

    reuse = await refresh(client, agent["refresh_token"])

    body = assert_error(reuse, 400, "invalid_grant", "reuse")
    assert body["error_description"] == "refresh token was already used"
    statuses, access, live, actions = await family_state(services, family)
    assert (statuses, access, live) == (["revoked", "revoked"], 2, 0)
    assert actions == ["token.refreshed", "refresh_token.reuse_detected"]
    assert_error(await refresh(client, rotated["refresh_token"]), 400, "invalid_grant", "successor after reuse")
    assert not await is_active(client, rotated["access_token"])


def change_before_the_plan(
    services: Services, monkeypatch: pytest.MonkeyPatch, statement: str, params: Mapping[str, Any]
) -> list[Snapshot]:
    """Make another writer commit ``statement`` once, after the grant's stage 1 checked and before its write plan
    runs (the grant takes its status slot in between), and snapshot the database right after that change."""
    allocate = services.core.status.allocate
    taken: list[Snapshot] = []

    async def allocate_after_the_change() -> Any:
        if not taken:
            async with services.engine.begin() as conn:
                await conn.execute(text(statement), dict(params))
            taken.append(await snapshot(services))
        return await allocate()

    monkeypatch.setattr(services.core.status, "allocate", allocate_after_the_change)
    return taken


DEACTIVATE = "UPDATE agents SET status = 'deactivated' WHERE id = :id"
REVOKE_KEY = "UPDATE api_keys SET status = 'revoked' WHERE id = :id"


async def child_with_assertion(client: httpx.AsyncClient, root: dict[str, Any]) -> tuple[str, str]:
    """(agent id, a jwt-bearer assertion of its own) of a new child agent of ``root``."""
    made = await client.post(
        "/api/v1/agents", json={"name": "child", "agent_type": "tool"}, headers=bearer(root["access_token"])
    )
    assert made.status_code == 201, made.text
    child = made.json()
    pair = KeyPair.from_jwk(child["private_key_jwk"])
    return child["agent"]["id"], create_agent_assertion(pair, audience=TOKEN_ENDPOINT_URL, now=datetime.now(UTC))


@pytest.mark.parametrize("change", ["agent deactivated", "key revoked"])
async def test_a_refresh_re_checks_agent_and_key_in_its_plan(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    agent = await quickstart(client, "recheck")
    statement, target = (
        (DEACTIVATE, agent["agent"]["id"]) if change == "agent deactivated" else (REVOKE_KEY, agent["api_key_id"])
    )
    taken = change_before_the_plan(services, monkeypatch, statement, {"id": target})

    response = await refresh(client, agent["refresh_token"])

    assert len(taken) == 1, "the change happened between the stages"
    body = assert_error(response, 400, "invalid_grant", change)
    assert body["error_description"] == "refresh token is no longer valid"
    await assert_unchanged(services, taken[0], f"by a refresh refused for {change}")


async def test_a_refresh_without_a_key_re_checks_its_agent(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A jwt-bearer token pair has no API key: the plan re-checks the agent alone."""
    child_id, assertion = await child_with_assertion(client, await quickstart(client, "parent"))
    issued = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion})
    assert issued.status_code == 200, issued.text
    taken = change_before_the_plan(services, monkeypatch, DEACTIVATE, {"id": child_id})

    response = await refresh(client, issued.json()["refresh_token"])

    assert len(taken) == 1
    body = assert_error(response, 400, "invalid_grant", "agent deactivated")
    assert body["error_description"] == "refresh token is no longer valid"
    await assert_unchanged(services, taken[0], "by a refresh refused for its deactivated agent")


async def test_a_jwt_bearer_grant_re_checks_its_agent_and_spends_no_assertion(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    child_id, assertion = await child_with_assertion(client, await quickstart(client, "parent"))
    taken = change_before_the_plan(services, monkeypatch, DEACTIVATE, {"id": child_id})

    response = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion})

    assert len(taken) == 1
    body = assert_error(response, 400, "invalid_grant", "agent deactivated")
    assert body["error_description"] == "the assertion is not valid"
    await assert_unchanged(services, taken[0], "by a jwt-bearer grant refused for its deactivated agent")


async def test_a_jwt_bearer_replay_is_refused_by_the_plan(client: httpx.AsyncClient, services: Services) -> None:
    """Concurrent uses of one assertion reach the write path together: the used-assertion key admits one."""
    child_id, assertion = await child_with_assertion(client, await quickstart(client, "parent"))
    before = await rows(services, "SELECT count(*) FROM credentials WHERE agent_id = :a", a=child_id)

    responses = await asyncio.gather(
        *(client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion}) for _ in range(RACERS))
    )

    assert sorted(r.status_code for r in responses) == [200] + [400] * (RACERS - 1), [r.text for r in responses]
    for response in responses:
        if response.status_code != 200:
            body = assert_error(response, 400, "invalid_grant", "replay")
            assert body["error_description"] == "the assertion was already used"
    after = await rows(services, "SELECT count(*) FROM credentials WHERE agent_id = :a", a=child_id)
    assert after[0][0] == before[0][0] + 1, "one access token minted"
