"""Delegation and token exchange (RFC 8693) on the general write path (issue 13 item 7): stage 1 reads and signs
outside any transaction, stage 2 writes one plan that re-checks what stage 1 relied on. A change that lands between
the two - the delegation revoked, the delegate deactivated - must write nothing and answer exactly what the request
answers when the change came first; exchanges racing each other and a revocation must leave no live token resting
on a revoked delegation. Through REST on the real app, SQLite file and PostgreSQL.

The change is made "between the stages" by running it, through the REST API, when the use case hands its plan to
the write port - after stage 1 read and judged, before the plan runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from api_support import assert_unchanged, snapshot
from delegation_support import child_with_key, delegate, exchange
from sqlalchemy import text

from agentauth.bootstrap import Services
from agentauth.storage.ports import WritePlan
from support import bearer, quickstart

pytestmark = pytest.mark.anyio


@dataclasses.dataclass
class BeforeNextPlan:
    """The write port, with ``change`` run (once) just before the next plan is written."""

    writes: Any
    change: Callable[[], Awaitable[None]] | None = None

    async def run(self, plan: WritePlan) -> None:
        change, self.change = self.change, None
        if change is not None:
            await change()
        await self.writes.run(plan)


def interpose(services: Services) -> BeforeNextPlan:
    port = BeforeNextPlan(services.core.ports.writes)
    services.core.ports = dataclasses.replace(services.core.ports, writes=port)
    return port


async def audited(services: Services, action: str) -> int:
    async with services.engine.connect() as conn:
        query = text("SELECT count(*) FROM audit_events WHERE action = :action")
        return int((await conn.execute(query, {"action": action})).scalar_one())


async def granted(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(root, its child with a key and token, a delegation from the root to the child)."""
    root = await quickstart(client, "root")
    child = await child_with_key(client, root["access_token"], "delegate")
    made = await delegate(client, root["access_token"], child["agent"]["id"], ["agents.read", "delegations.write"])
    assert made.status_code == 201, made.text
    return root, child, made.json()


def answer(response: httpx.Response) -> tuple[int, dict[str, Any]]:
    return response.status_code, response.json()


async def revoke(client: httpx.AsyncClient, token: str, delegation_id: str) -> None:
    response = await client.post(f"/api/v1/delegations/{delegation_id}/revoke", headers=bearer(token))
    assert response.status_code == 200, response.text


async def deactivate(client: httpx.AsyncClient, token: str, agent_id: str) -> None:
    response = await client.delete(f"/api/v1/agents/{agent_id}", headers=bearer(token))
    assert response.status_code == 200, response.text


async def test_exchange_of_a_delegation_revoked_between_the_stages(
    client: httpx.AsyncClient, services: Services
) -> None:
    root, child, grant = await granted(client)
    port = interpose(services)
    before: list[Any] = []

    async def revoked_now() -> None:
        await revoke(client, root["access_token"], grant["id"])
        before.append(await snapshot(services))

    port.change = revoked_now
    raced = await exchange(client, grant["credential"], actor_token=child["token"])

    await assert_unchanged(services, before[0], "by the refused exchange")
    assert await audited(services, "token.exchanged") == 0
    dead = "the delegation (or one above it) is revoked or expired"
    assert answer(raced) == (400, {"error": "invalid_grant", "error_description": dead})
    # The same answer as an exchange after the revocation.
    assert answer(await exchange(client, grant["credential"], actor_token=child["token"])) == answer(raced)


async def test_exchange_whose_delegate_is_deactivated_between_the_stages(
    client: httpx.AsyncClient, services: Services
) -> None:
    root, child, grant = await granted(client)
    port = interpose(services)
    before: list[Any] = []

    async def deactivated_now() -> None:
        await deactivate(client, root["access_token"], child["agent"]["id"])
        before.append(await snapshot(services))

    port.change = deactivated_now
    raced = await exchange(client, grant["credential"], api_key=child["key"])

    await assert_unchanged(services, before[0], "by the refused exchange")
    assert await audited(services, "token.exchanged") == 0
    # Deactivating the delegate revoked the delegations it holds: stage 1 would have refused it for that.
    assert raced.status_code == 400 and raced.json()["error"] == "invalid_grant", raced.text
    assert raced.json()["error_description"] == "the delegation (or one above it) is revoked or expired"


async def test_redelegation_under_a_delegation_revoked_between_the_stages(
    client: httpx.AsyncClient, services: Services
) -> None:
    root, child, grant = await granted(client)
    acting = await exchange(client, grant["credential"], actor_token=child["token"])
    assert acting.status_code == 200, acting.text
    acting_token = acting.json()["access_token"]
    # The child re-delegates, acting for the root, to an agent of its own subtree.
    grandchild = await child_with_key(client, child["token"], "grandchild")
    port = interpose(services)
    before: list[Any] = []

    async def revoked_now() -> None:
        await revoke(client, root["access_token"], grant["id"])
        before.append(await snapshot(services))

    port.change = revoked_now
    raced = await delegate(client, acting_token, grandchild["agent"]["id"], ["agents.read"])

    await assert_unchanged(services, before[0], "by the refused delegation")
    assert await audited(services, "delegation.created") == 1  # the root's grant only
    inactive = "the delegation you act under is no longer active"
    assert answer(raced) == (403, {"error": "access_denied", "error_description": inactive})


async def test_delegation_to_an_agent_deactivated_between_the_stages(
    client: httpx.AsyncClient, services: Services
) -> None:
    root = await quickstart(client, "root")
    child = await child_with_key(client, root["access_token"], "delegate")
    port = interpose(services)
    before: list[Any] = []

    async def deactivated_now() -> None:
        await deactivate(client, root["access_token"], child["agent"]["id"])
        before.append(await snapshot(services))

    port.change = deactivated_now
    raced = await delegate(client, root["access_token"], child["agent"]["id"], ["agents.read"])

    await assert_unchanged(services, before[0], "by the refused delegation")
    assert await audited(services, "delegation.created") == 0
    assert answer(raced) == (409, {"error": "conflict", "error_description": "the delegate agent is deactivated"})
    # The same answer as a delegation after the deactivation.
    again = await delegate(client, root["access_token"], child["agent"]["id"], ["agents.read"])
    assert answer(again) == answer(raced)


async def test_concurrent_exchanges_each_record_their_token(client: httpx.AsyncClient, services: Services) -> None:
    _, child, grant = await granted(client)

    answers = await asyncio.gather(
        *(exchange(client, grant["credential"], actor_token=child["token"]) for _ in range(12))
    )

    assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers]
    tokens = {a.json()["access_token"] for a in answers}
    assert len(tokens) == 12
    assert await audited(services, "token.exchanged") == 12
    async with services.engine.connect() as conn:
        query = text("SELECT count(*) FROM credentials WHERE delegation_id = :d AND kind = 'access'")
        assert (await conn.execute(query, {"d": grant["id"]})).scalar_one() == 12
    for token in tokens:
        assert (await client.get("/api/v1/agents", headers=bearer(token))).status_code == 200


async def test_exchanges_racing_a_revocation_leave_no_live_token(client: httpx.AsyncClient, services: Services) -> None:
    root, child, grant = await granted(client)

    async def one() -> httpx.Response:
        return await exchange(client, grant["credential"], actor_token=child["token"])

    answers = await asyncio.gather(
        *(one() for _ in range(8)), revoke(client, root["access_token"], grant["id"]), *(one() for _ in range(8))
    )

    exchanged = [a for a in answers if isinstance(a, httpx.Response)]
    assert {a.status_code for a in exchanged} <= {200, 400}
    for refused in (a for a in exchanged if a.status_code == 400):
        assert refused.json()["error_description"] == "the delegation (or one above it) is revoked or expired"
    # Whichever came first, no token minted from the revoked delegation still works.
    for token in (a.json()["access_token"] for a in exchanged if a.status_code == 200):
        assert (await client.get("/api/v1/agents", headers=bearer(token))).status_code == 401
    async with services.engine.connect() as conn:
        query = text("SELECT count(*) FROM credentials WHERE delegation_id = :d AND revoked_at IS NULL")
        assert (await conn.execute(query, {"d": grant["id"]})).scalar_one() == 0
