"""Issuance signs before it takes the writer (``issuer/hotpath.py``): a revocation that lands between the two
stages must refuse the request, never let out a token that the revocation's cascade did not see."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from api_support import make_child
from lifecycle_support import INACTIVE, TOKEN, introspect, jwt_payload

from agentauth.bootstrap import Services
from agentauth.errors import InvalidClient
from agentauth.issuer.context import RequestContext
from agentauth.issuer.hotpath import ClientCredentialsRequest
from agentauth.storage.sqlalchemy_ports import live_api_keys
from support import bearer, quickstart

pytestmark = pytest.mark.anyio


async def new_key(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await client.post("/api/v1/credentials", json={}, headers=bearer(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def revoke_key(client: httpx.AsyncClient, token: str, key_id: str) -> None:
    response = await client.post(f"/api/v1/credentials/{key_id}/revoke", headers=bearer(token))
    assert response.status_code == 200, response.text


async def test_a_key_revoked_between_signing_and_recording_gets_no_token(
    client: httpx.AsyncClient, services: Services
) -> None:
    root = await quickstart(client, "race")
    key = await new_key(client, root["access_token"])
    issuer = services.tokens.client_credentials
    request = ClientCredentialsRequest(
        api_key=key["raw_key"], client_id=None, scope=None, resources=(), slot=await services.status.allocate(),
        ctx=RequestContext(request_id="race-1", ip="203.0.113.9"),
    )  # fmt: skip
    signed = await issuer._prepare.submit(request)  # stage 1: key valid, token signed
    assert signed.refusal is None and signed.tokens is not None

    await revoke_key(client, root["access_token"], key["id"])

    with pytest.raises(InvalidClient) as refused:
        await issuer._commit.submit(signed)  # stage 2 re-reads the key inside the write transaction
    assert refused.value.error == "invalid_client"
    signed_jti = jwt_payload(signed.tokens.access_token)["jti"]
    assert await introspect(client, root["access_token"], signed.tokens.access_token) == INACTIVE
    async with services.core.reads() as session:
        assert await live_api_keys(session, [key["id"]], lock=False) == {}
    events = await client.get("/api/v1/audit/events", headers=bearer(root["access_token"]))
    assert events.status_code == 200, events.text
    denied = [e for e in events.json()["items"] if e["request_id"] == "race-1"]
    assert [(e["action"], e["outcome"]) for e in denied] == [("token.denied", "failure")], denied
    assert "revoked during issuance" in (denied[0]["reason"] or "")
    assert signed_jti not in {e.get("target_id") for e in events.json()["items"]}


async def test_no_token_outlives_a_revocation_racing_with_issuance(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "race")
    key = await new_key(client, root["access_token"])

    async def issue() -> httpx.Response:
        return await client.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": key["raw_key"]})

    early = [asyncio.create_task(issue()) for _ in range(40)]
    await asyncio.sleep(0)
    revocation = asyncio.create_task(revoke_key(client, root["access_token"], key["id"]))
    late = [asyncio.create_task(issue()) for _ in range(40)]
    responses = await asyncio.gather(*early, *late)
    await revocation

    statuses = {r.status_code for r in responses}
    assert statuses <= {200, 401}, statuses
    for response in responses:
        if response.status_code == 200:
            token = response.json()["access_token"]
            assert await introspect(client, root["access_token"], token) == INACTIVE
        else:
            assert response.json()["error"] == "invalid_client"
    after = await issue()
    assert after.status_code == 401 and after.json()["error"] == "invalid_client"


async def test_a_change_to_the_agent_shows_in_the_very_next_token(client: httpx.AsyncClient) -> None:
    """Stage 1 may sign from a recent snapshot of the key's agent; stage 2 notices the agent changed since and
    the request is signed again from fresh data - never a token with the old claims after the change."""
    root = await quickstart(client, "snapshot")
    admin = root["access_token"]
    agent, key, first = await make_child(client, admin, "child", trust_level="untrusted")
    assert jwt_payload(first)["vc"]["credentialSubject"]["trustLevel"] == "untrusted"
    url = f"/api/v1/agents/{agent['id']}"
    for level in ("basic", "untrusted", "basic"):
        changed = await client.patch(url, json={"trust_level": level}, headers=bearer(admin))
        assert changed.status_code == 200, changed.text
        issued = await client.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": key["raw_key"]})
        assert issued.status_code == 200, issued.text
        assert jwt_payload(issued.json()["access_token"])["vc"]["credentialSubject"]["trustLevel"] == level
