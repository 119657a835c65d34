"""One tenant cannot freeze the server with a resource pattern (issue 12, item 1): through the real app, a policy
with several in-segment wildcards is evaluated promptly by ``POST /api/v1/policies/evaluate`` and by route
authorization, while other requests go on; a pattern beyond the write-time bounds is refused with a 400 that
changes nothing."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest
from api_support import assert_unchanged, snapshot

from agentauth.bootstrap import Services
from agentauth.issuer.policy_engine import MAX_FLOATING_SEGMENTS
from support import assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio
EVIL = "api/v1/agents/*a*a*a*a*b"


def deny(resources: list[str]) -> dict[str, Any]:
    return {
        "name": "evil",
        "effect": "deny",
        "subjects": {"all": True},
        "actions": ["*"],
        "resources": resources,
        "priority": 0,
    }


async def test_evaluate_with_a_wildcard_heavy_pattern_answers_promptly(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "root")
    auth = bearer(root["access_token"])
    ok(await client.post("/api/v1/policies", json=deny([EVIL]), headers=auth), 201)
    # 214 characters without the final 'b': a backtracking matcher needs seconds (n^5 steps) for this one.
    resource = "api/v1/agents/" + "a" * 200
    question = {"agent_id": root["agent"]["id"], "action": "read", "resource": resource}
    health_seconds: list[float] = []

    async def health_meanwhile() -> None:
        await anyio.sleep(0.01)
        started = time.perf_counter()
        ok(await client.get("/health"))
        health_seconds.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        group.start_soon(health_meanwhile)
        answer = ok(await client.post("/api/v1/policies/evaluate", json=question, headers=auth))
    elapsed = time.perf_counter() - started
    assert answer["allowed"] is True and answer["basis"] == "scope", answer
    assert elapsed < 0.5, f"evaluate took {elapsed:.2f} s"
    assert health_seconds and health_seconds[0] < 0.5, health_seconds
    # The same pattern still denies what it names, and route authorization (a long agent id) stays prompt.
    question["resource"] = resource + "b"
    denied = ok(await client.post("/api/v1/policies/evaluate", json=question, headers=auth))
    assert denied["allowed"] is False and denied["matched_policy"]["name"] == "evil"
    started = time.perf_counter()
    assert_error(await client.get("/api/v1/agents/" + "a" * 60, headers=auth), 404, "not_found")
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "pattern",
    ["**/" + "/".join(["*a*"] * (MAX_FLOATING_SEGMENTS + 1)) + "/**", "files/*" + "a" * 40 + "*b"],
)
async def test_a_pattern_beyond_the_bounds_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, services: Services, pattern: str
) -> None:
    root = await quickstart(client, "root")
    auth = bearer(root["access_token"])
    created = ok(await client.post("/api/v1/policies", json=deny(["docs/**"]), headers=auth), 201)
    before = await snapshot(services)
    body = assert_error(
        await client.post("/api/v1/policies", json=deny([pattern]), headers=auth), 400, "invalid_request"
    )
    assert pattern in body["error_description"]
    replaced = await client.put(f"/api/v1/policies/{created['id']}", json=deny([pattern]), headers=auth)
    assert_error(replaced, 400, "invalid_request")
    await assert_unchanged(services, before, "after a refused pattern")
