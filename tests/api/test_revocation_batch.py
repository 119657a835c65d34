"""RFC 7009 revocations that arrive together are written together - and each is still exactly its own.

Concurrent revocations share one write transaction (``Revocations``); this checks that batching changes nothing
a client or an auditor can see: every revoked token is refused and introspects inactive, each tenant's audit log
holds one event per credential it revoked, in its own name and with its own request id, and nothing of the other
tenant; a token revoked twice in the same round is audited once; and a token the caller may not revoke, sent in
the same round, stays alive.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from api_support import client_credentials, ok

from support import bearer, quickstart

pytestmark = pytest.mark.anyio

REVOKE = "/api/v1/auth/revoke"
INTROSPECT = "/api/v1/auth/introspect"
TOKENS_EACH = 6


async def revoked_events(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    page = ok(await client.get("/api/v1/audit/events", params={"action": "access_credential.revoked", "limit": 100},
                               headers=bearer(token)))  # fmt: skip
    return list(page["items"])


def jti_of(jwt: str) -> str:
    payload = jwt.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


async def test_concurrent_revocations_are_each_audited_in_their_own_name(client: httpx.AsyncClient) -> None:
    alpha, beta = [await quickstart(client, name) for name in ("alpha", "beta")]
    tokens = {
        t["agent"]["id"]: [(await client_credentials(client, t["api_key"]))["access_token"] for _ in range(TOKENS_EACH)]
        for t in (alpha, beta)
    }
    asked: dict[str, set[str]] = {}  # jti -> the request ids that asked to revoke it

    async def revoke(tenant: dict[str, Any], token: str) -> None:
        response = await client.post(REVOKE, data={"token": token, "client_secret": tenant["api_key"]})
        assert response.status_code == 200, response.text
        asked.setdefault(jti_of(token), set()).add(response.headers["x-request-id"])

    jobs = [revoke(t, token) for t in (alpha, beta) for token in tokens[t["agent"]["id"]]]
    jobs.append(revoke(alpha, tokens[alpha["agent"]["id"]][0]))  # the same token twice, likely in one round
    jobs.append(revoke(beta, alpha["access_token"]))  # not beta's to revoke: a silent no-op
    await asyncio.gather(*jobs)

    for tenant in (alpha, beta):
        agent_id = tenant["agent"]["id"]
        for token in tokens[agent_id]:
            answer = ok(await client.post(INTROSPECT, data={"token": token}, headers=bearer(tenant["access_token"])))
            assert answer == {"active": False}
            refused = await client.get("/api/v1/agents", headers=bearer(token))
            assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
        events = await revoked_events(client, tenant["access_token"])
        # Exactly one event per credential this tenant revoked, none of the other's, each naming a request
        # that asked for it and the agent that asked.
        assert sorted(e["target_id"] for e in events) == sorted(jti_of(t) for t in tokens[agent_id]), events
        assert all(e["request_id"] in asked[e["target_id"]] for e in events), (events, asked)
        assert {e["actor"] for e in events} == {agent_id}
        assert all(e["outcome"] == "success" and e["details"]["cause"] == "revoked by request" for e in events)
    # beta's attempt on alpha's own bearer token changed nothing.
    assert ok(await client.get("/api/v1/agents", headers=bearer(alpha["access_token"])))["total"] >= 1
