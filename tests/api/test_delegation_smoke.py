"""A two-hop delegation through the real app: delegate, exchange, re-delegate, exchange, verify offline,
revoke the root grant and watch the whole chain's tokens die."""

from __future__ import annotations

import httpx
import pytest
from delegation_support import ACCESS_TYPE, child_with_key, exchange

from agentauth.vc import Verifier
from support import ISSUER_URL, bearer, quickstart

pytestmark = pytest.mark.anyio


async def test_two_hop_delegation(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "root")
    b = await child_with_key(client, root["access_token"], "b")
    c = await child_with_key(client, root["access_token"], "c")

    grant = await client.post(
        "/api/v1/delegations",
        json={
            "delegate_agent_id": b["agent"]["id"],
            "scopes": ["agents.read", "delegations.write", "delegations.read"],
        },
        headers=bearer(root["access_token"]),
    )
    assert grant.status_code == 201, grant.text
    assert grant.json()["max_chain_depth"] == 3

    b_acting = await exchange(client, grant.json()["credential"], actor_token=b["token"])
    assert b_acting.status_code == 200, b_acting.text
    assert b_acting.json()["issued_token_type"] == ACCESS_TYPE

    hop = await client.post(
        "/api/v1/delegations",
        json={"delegate_agent_id": c["agent"]["id"], "scopes": ["agents.read"]},
        headers=bearer(b_acting.json()["access_token"]),
    )
    assert hop.status_code == 201, hop.text
    assert hop.json()["max_chain_depth"] == 2 and hop.json()["parent_delegation_id"] == grant.json()["id"]

    # A third agent (root itself is not the delegate) cannot use C's delegation.
    stolen = await exchange(client, hop.json()["credential"], actor_token=b["token"])
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"

    c_acting = await exchange(
        client, hop.json()["credential"], actor_token=c["token"], scope="agents.read agents.write"
    )
    assert c_acting.status_code == 200, c_acting.text
    token = c_acting.json()["access_token"]
    assert c_acting.json()["scope"] == "agents.read"

    jwks = (await client.get("/.well-known/jwks.json")).json()
    verified = Verifier(issuer_url=ISSUER_URL, jwks=jwks, check_status=False).verify_access_token(token)
    assert verified.subject == root["agent"]["did"]
    assert [link.delegate for link in verified.chain] == [b["agent"]["did"], c["agent"]["did"]]
    assert verified.claims["act"] == {"sub": c["agent"]["did"], "act": {"sub": b["agent"]["did"]}}

    listing = await client.get("/api/v1/agents", headers=bearer(token))
    assert listing.status_code == 200 and listing.json()["total"] == 3

    revoked = await client.post(
        f"/api/v1/delegations/{grant.json()['id']}/revoke", headers=bearer(root["access_token"])
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert (await client.get("/api/v1/agents", headers=bearer(token))).status_code == 401
    chain = await client.get(f"/api/v1/delegations/{hop.json()['id']}", headers=bearer(root["access_token"]))
    assert chain.json()["status"] == "revoked"
