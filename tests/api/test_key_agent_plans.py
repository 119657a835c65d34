"""API keys and agents on the general write path (issue 13 item 7): what a plan re-checks in its transaction holds
against a change committed between its stages - over REST, on the real app and database (SQLite file, and
PostgreSQL when enabled)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from api_support import make_child, row_counts
from lifecycle_support import client_token, introspect, jtis
from sqlalchemy import text

from agentauth.bootstrap import Services
from support import assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio

NOT_ACTIVE = "credential is not active (already revoked or rotated)"
DELEGATION = {"cause": "delegation revoked"}


async def audit_rows(services: Services, action: str) -> list[tuple[Any, ...]]:
    """(target_id, tenant_id, actor, details) of every event with ``action``, in the order written."""
    async with services.engine.connect() as conn:
        result = await conn.execute(
            text("SELECT target_id, tenant_id, actor, details FROM audit_events WHERE action = :a ORDER BY id"),
            {"a": action},
        )
        # details: JSON text on SQLite, decoded by the driver on PostgreSQL.
        return [(*row[:3], json.loads(row[3]) if isinstance(row[3], str) else row[3]) for row in result]


async def test_of_concurrent_rotations_of_one_key_exactly_one_wins(
    client: httpx.AsyncClient, services: Services
) -> None:
    root = await quickstart(client, "rotations")
    admin = root["access_token"]
    key = ok(await client.post("/api/v1/credentials", json={"name": "ci"}, headers=bearer(admin)), 201)
    issued = [await client_token(client, key["raw_key"]) for _ in range(2)]
    before = await row_counts(services)

    answers = await asyncio.gather(
        *(client.post(f"/api/v1/credentials/{key['id']}/rotate", headers=bearer(admin)) for _ in range(4))
    )

    won = [a for a in answers if a.status_code == 200]
    assert len(won) == 1, [a.text for a in answers]
    for lost in (a for a in answers if a.status_code != 200):
        assert assert_error(lost, 409, "conflict")["error_description"] == NOT_ACTIVE
    winner = won[0].json()
    assert winner["old_credential_id"] == key["id"] and winner["name"] == "ci"
    # One new key stored, the old one replaced by exactly it; the losers' keys were rolled back with their plans.
    assert (await row_counts(services))["api_keys"] == before["api_keys"] + 1
    async with services.engine.connect() as conn:
        status, replaced_by = (
            await conn.execute(text("SELECT status, replaced_by FROM api_keys WHERE id = :k"), {"k": key["id"]})
        ).one()
    assert (status, replaced_by) == ("revoked", winner["id"])
    assert [row[0] for row in await audit_rows(services, "credential.rotated")] == [key["id"]]
    # The old key's tokens died once, each with one event; the new key works, the old one does not.
    tokens = [t["access_token"] for t in issued]
    revoked = await audit_rows(services, "access_credential.revoked")
    assert sorted(row[0] for row in revoked) == jtis(*tokens)
    assert all(row[3] == {"cause": "api key rotated"} for row in revoked)
    for token in tokens:
        assert await introspect(client, admin, token) == {"active": False}
    await client_token(client, winner["raw_key"])
    refused = await client.post(
        "/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": key["raw_key"]}
    )
    assert_error(refused, 401, "invalid_client")


async def test_revoking_a_key_twice_at_once_revokes_it_once(client: httpx.AsyncClient, services: Services) -> None:
    root = await quickstart(client, "revocations")
    admin = root["access_token"]
    key = ok(await client.post("/api/v1/credentials", json={}, headers=bearer(admin)), 201)
    token = (await client_token(client, key["raw_key"]))["access_token"]

    answers = await asyncio.gather(
        *(client.post(f"/api/v1/credentials/{key['id']}/revoke", headers=bearer(admin)) for _ in range(3))
    )

    # Every caller is told the key is revoked (as before: revoking a revoked key is no error) ...
    assert {(a.status_code, a.json()["status"]) for a in answers} == {(200, "revoked")}
    assert len({a.json()["revoked_at"] for a in answers}) == 1
    # ... and it was revoked once: one event for the key, one for its token.
    assert [row[0] for row in await audit_rows(services, "credential.revoked")] == [key["id"]]
    assert [row[0] for row in await audit_rows(services, "access_credential.revoked")] == jtis(token)


async def test_a_child_under_a_parent_deactivated_between_the_stages_is_not_created(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = await quickstart(client, "stages")
    parent, _, parent_token = await make_child(client, root["access_token"], "parent")
    status = services.core.status
    allocate = status.allocate

    async def deactivate_first() -> Any:
        # Stage 1 of create_child, after the caller was authenticated as the (then active) parent.
        monkeypatch.setattr(status, "allocate", allocate)
        ok(await client.delete(f"/api/v1/agents/{parent['id']}", headers=bearer(root["access_token"])))
        return await allocate()

    monkeypatch.setattr(status, "allocate", deactivate_first)
    before = await row_counts(services)

    refused = await client.post(
        "/api/v1/agents", json={"name": "orphan", "agent_type": "tool"}, headers=bearer(parent_token)
    )

    assert assert_error(refused, 409, "conflict")["error_description"] == "agent is deactivated"
    assert status.allocate == allocate  # the deactivation did run in between
    assert await row_counts(services) == before  # no agent, no identity credential
    assert await audit_rows(services, "agent.created") == [
        (parent["id"], root["agent"]["tenant_id"], root["agent"]["id"], None)
    ]


async def test_a_taken_did_key_is_refused_for_a_child_and_nothing_is_written(
    client: httpx.AsyncClient, services: Services
) -> None:
    root = await quickstart(client, "dids")
    body = {"name": "twin", "agent_type": "tool", "public_key": root["agent"]["did"]}
    before = await row_counts(services)

    refused = await client.post("/api/v1/agents", json=body, headers=bearer(root["access_token"]))

    assert_error(refused, 409, "conflict")
    assert refused.json()["error_description"] == "an agent with this did:key is already registered"
    assert await row_counts(services) == before


async def test_deactivating_a_subtree_deactivates_and_revokes_each_object_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    root = await quickstart(client, "subtree")
    admin = root["access_token"]
    child, child_key, child_token = await make_child(client, admin, "child")
    grandchild, grand_key, grand_token = await make_child(client, child_token, "grandchild")
    spared, _, spared_token = await make_child(client, admin, "sibling")
    # The sibling (outside the subtree) delegates to the grandchild: that delegation goes too.
    grant = ok(
        await client.post(
            "/api/v1/delegations",
            json={"delegate_agent_id": grandchild["id"], "scopes": ["agents.read"]},
            headers=bearer(spared_token),
        ),
        201,
    )

    first = ok(await client.delete(f"/api/v1/agents/{child['id']}", headers=bearer(admin)))
    again = ok(await client.delete(f"/api/v1/agents/{child['id']}", headers=bearer(admin)))

    assert first["is_active"] is False and first["status"] == "deactivated"
    assert again == first  # the second changes nothing, and writes no event
    tenant = root["agent"]["tenant_id"]
    deactivated = await audit_rows(services, "agent.deactivated")
    assert sorted(deactivated) == sorted((a["id"], tenant, root["agent"]["id"], None) for a in (child, grandchild))
    keys = await audit_rows(services, "credential.revoked")
    assert sorted(row[0] for row in keys) == sorted([child_key["id"], grand_key["id"]])
    assert all(row[3] == {"cause": "agent deactivated"} for row in keys)
    assert [row[0] for row in await audit_rows(services, "delegation.revoked")] == [grant["id"]]
    delegation_credentials = await audit_rows(services, "delegation_credential.revoked")
    assert [(row[0], row[3]) for row in delegation_credentials] == [(*jtis(grant["credential"]), DELEGATION)]
    identities = await audit_rows(services, "identity_credential.revoked")
    async with services.engine.connect() as conn:
        ids = {a["id"] for a in (child, grandchild)}
        rows = await conn.execute(text("SELECT id, identity_credential_id FROM agents"))
        identity_ids = sorted(jti for agent_id, jti in rows if agent_id in ids)
    assert sorted(row[0] for row in identities) == identity_ids and len(identity_ids) == 2
    revoked = sorted(row[0] for row in await audit_rows(services, "access_credential.revoked"))
    assert revoked == jtis(child_token, grand_token)
    for token in (child_token, grand_token):
        assert await introspect(client, admin, token) == {"active": False}
    assert (await introspect(client, admin, spared_token))["active"] is True
    sibling = ok(await client.get(f"/api/v1/agents/{spared['id']}", headers=bearer(admin)))
    assert sibling["is_active"] is True
