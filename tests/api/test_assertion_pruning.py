"""Used jwt-bearer assertion ids (RFC 7523 section 3 replay protection) are forgotten by the maintenance pass
once the assertion can no longer be accepted (its ``exp`` plus the verifier's leeway), so ``used_assertions``
stays bounded by the grant rate times the assertion lifetime instead of growing by one row per grant forever;
a replay of an assertion that could still be accepted is still refused (issue 12, item 12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from api_support import JWT_BEARER, TOKEN, assertion_for
from sqlalchemy import text

from agentauth.bootstrap import Services
from agentauth.vc.assertions import ASSERTION_LEEWAY_SECONDS
from support import assert_error, ok, quickstart

pytestmark = pytest.mark.anyio


async def used_rows(services: Services) -> int:
    async with services.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM used_assertions"))).scalar_one())


async def grant(client: httpx.AsyncClient, assertion: str) -> httpx.Response:
    return await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion})


async def test_maintenance_forgets_spent_assertions_and_keeps_replay_protection(
    services: Services, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services.settings, "assertion_prune_batch", 3)  # several batches for the rows below
    agent = await quickstart(client, "jwt")
    now = datetime.now(UTC)
    # Expired 20 s ago, still accepted within the leeway: its id must outlive its exp.
    late = assertion_for(agent, now=now - timedelta(seconds=80), lifetime=timedelta(seconds=60))
    fresh = [assertion_for(agent, now=now, lifetime=timedelta(seconds=60)) for _ in range(7)]
    for assertion in [late, *fresh]:
        ok(await grant(client, assertion))
    assert await used_rows(services) == 8

    await services.housekeeping(datetime.now(UTC))
    assert await used_rows(services) == 8, "an id was forgotten while its assertion could still be accepted"
    for assertion in (late, fresh[0]):
        assert_error(await grant(client, assertion), 400, "invalid_grant", "replay")

    # Once exp + leeway has passed for all of them, one pass empties the table.
    after_all = now + timedelta(seconds=60 + ASSERTION_LEEWAY_SECONDS + 1)
    await services.housekeeping(after_all)
    assert await used_rows(services) == 0


async def test_used_assertions_stay_bounded_over_rounds(services: Services, client: httpx.AsyncClient) -> None:
    """Rounds of grants, each followed by the pass that runs after their assertions ran out: the table never
    holds more than one round's ids, however many rounds there are."""
    agent = await quickstart(client, "steady")
    for _ in range(5):
        now = datetime.now(UTC)
        for _ in range(4):
            ok(await grant(client, assertion_for(agent, now=now, lifetime=timedelta(seconds=60))))
        assert await used_rows(services) == 4
        await services.housekeeping(now + timedelta(seconds=60 + ASSERTION_LEEWAY_SECONDS + 1))
        assert await used_rows(services) == 0
