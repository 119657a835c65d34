"""Cascading revocation of delegations (issue 5, Build 1 "revoke (cascading)"; DESIGN.md "Storage"):
revoking a delegation revokes every delegation below it and every token resting on them, never the ones
above; deactivating an agent revokes every delegation it granted or received, and everything below those.
"""

from __future__ import annotations

import httpx
import pytest
from delegation_support import (
    THIRD_HOP,
    Chain,
    build_chain,
    child_with_key,
    claims,
    delegate,
    error_of,
    exchange,
    offline_verifier,
)
from sqlalchemy import text

from agentauth.bootstrap import Services
from agentauth.vc import VerificationError
from support import ISSUER_URL, bearer

pytestmark = pytest.mark.anyio


async def statuses(client: httpx.AsyncClient, chain: Chain) -> list[str]:
    out = []
    for d in chain.delegations:
        got = await client.get(f"/api/v1/delegations/{d['id']}", headers=bearer(chain.root["access_token"]))
        assert got.status_code == 200, got.text
        out.append(got.json()["status"])
    return out


async def works(client: httpx.AsyncClient, token: str) -> bool:
    response = await client.get("/api/v1/agents", headers=bearer(token))
    assert response.status_code in (200, 401), response.text
    if response.status_code == 401:
        assert response.json()["error"] == "invalid_token"
    return response.status_code == 200


async def unrevoked_credentials(services: Services, delegation_id: str) -> int:
    """Signed credentials (the delegation's own VC and exchanged tokens) resting on a delegation, still live."""
    sql = text("SELECT count(*) FROM credentials WHERE delegation_id = :d AND revoked_at IS NULL")
    async with services.engine.connect() as conn:
        return int((await conn.execute(sql, {"d": delegation_id})).scalar_one())


async def test_revoking_a_middle_delegation_cascades_down_not_up(client: httpx.AsyncClient, services: Services) -> None:
    chain = await build_chain(client)
    assert [await works(client, t) for t in chain.tokens] == [True, True, True]
    # B, acting under the root grant, revokes the hop it granted to C.
    revoked = await client.post(
        f"/api/v1/delegations/{chain.delegations[1]['id']}/revoke", headers=bearer(chain.tokens[0])
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_at"]

    assert await statuses(client, chain) == ["active", "revoked", "revoked"]
    assert [await works(client, t) for t in chain.tokens] == [True, False, False]
    assert [await unrevoked_credentials(services, d["id"]) for d in chain.delegations[1:]] == [0, 0]
    assert await unrevoked_credentials(services, chain.delegations[0]["id"]) == 2  # its VC and B's token

    # Nothing below can be exchanged again; the hop above can.
    for i in (1, 2):
        again = await exchange(client, chain.links[i], api_key=chain.agents[i]["key"])
        assert error_of(again) == (400, "invalid_grant"), i
    assert (await exchange(client, chain.links[0], api_key=chain.agents[0]["key"])).status_code == 200

    # Offline, with freshly fetched status lists, the same picture.
    verifier = await offline_verifier(client, *chain.tokens)
    assert verifier.verify_access_token(chain.tokens[0], audience=ISSUER_URL).scopes
    for token in chain.tokens[1:]:
        with pytest.raises(VerificationError) as caught:
            verifier.verify_access_token(token, audience=ISSUER_URL)
        assert caught.value.code == "revoked"

    # B still holds its authority and may delegate again.
    regrant = await delegate(client, chain.tokens[0], chain.agents[1]["agent"]["id"], THIRD_HOP)
    assert regrant.status_code == 201, regrant.text
    # Revoking twice is harmless and changes nothing.
    twice = await client.post(
        f"/api/v1/delegations/{chain.delegations[1]['id']}/revoke", headers=bearer(chain.tokens[0])
    )
    assert twice.status_code == 200 and twice.json()["revoked_at"] == revoked.json()["revoked_at"]


async def test_revoking_the_root_grant_kills_the_whole_chain(client: httpx.AsyncClient, services: Services) -> None:
    chain = await build_chain(client)
    revoked = await client.delete(
        f"/api/v1/delegations/{chain.delegations[0]['id']}", headers=bearer(chain.root["access_token"])
    )
    assert revoked.status_code == 200, revoked.text
    assert await statuses(client, chain) == ["revoked", "revoked", "revoked"]
    assert [await works(client, t) for t in chain.tokens] == [False, False, False]
    assert await works(client, chain.root["access_token"])  # the root's own authority is untouched


async def test_who_may_revoke(client: httpx.AsyncClient) -> None:
    chain = await build_chain(client)
    middle = chain.delegations[1]["id"]
    # C with its own (non-delegated) token is the delegate of B -> C: it may not revoke it.
    own = await client.post(f"/api/v1/delegations/{middle}/revoke", headers=bearer(chain.agents[1]["token"]))
    assert error_of(own) == (403, "access_denied")
    # D is not part of B -> C and not above it: the delegation is invisible to it.
    unrelated = await client.post(f"/api/v1/delegations/{middle}/revoke", headers=bearer(chain.agents[2]["token"]))
    assert error_of(unrelated) == (404, "not_found")
    # Another tenant sees nothing.
    other = await client.post("/api/v1/agents/quickstart", json={"name": "other", "agent_type": "assistant"})
    foreign = await client.post(f"/api/v1/delegations/{middle}/revoke", headers=bearer(other.json()["access_token"]))
    assert error_of(foreign) == (404, "not_found")
    assert await statuses(client, chain) == ["active", "active", "active"]


async def test_delegate_acting_under_the_chain_cannot_revoke_upstream(client: httpx.AsyncClient) -> None:
    # Regression (fixed in aa6590a): subtree rights were judged by principal.agent, which under a delegated
    # token is the chain's root, so C could revoke B -> C and the root grant above it.
    chain = await build_chain(client)
    # C acts under B -> C (whose scopes include delegations.write); C is that delegation's delegate.
    for target in (1, 0):
        response = await client.post(
            f"/api/v1/delegations/{chain.delegations[target]['id']}/revoke", headers=bearer(chain.tokens[1])
        )
        assert error_of(response) == (403, "access_denied"), target
    assert await statuses(client, chain) == ["active", "active", "active"]


@pytest.mark.parametrize("deactivated", [0, 1, 2], ids=["B", "C", "D"])
async def test_deactivating_an_agent_revokes_delegations_involving_it(
    client: httpx.AsyncClient, services: Services, deactivated: int
) -> None:
    chain = await build_chain(client)
    bystander = await child_with_key(client, chain.root["access_token"], "bystander")
    side = await delegate(client, chain.root["access_token"], bystander["agent"]["id"], ["agents.read"])
    side_token = (await exchange(client, side.json()["credential"], api_key=bystander["key"])).json()["access_token"]

    agent_id = chain.agents[deactivated]["agent"]["id"]
    gone = await client.delete(f"/api/v1/agents/{agent_id}", headers=bearer(chain.root["access_token"]))
    assert gone.status_code == 200 and gone.json()["is_active"] is False, gone.text

    # The delegation it received and every one below it; those above stay.
    expected = ["active"] * deactivated + ["revoked"] * (3 - deactivated)
    assert await statuses(client, chain) == expected
    assert [await works(client, t) for t in chain.tokens] == [s == "active" for s in expected]
    for d, status in zip(chain.delegations, expected, strict=True):
        assert (await unrevoked_credentials(services, d["id"]) == 0) == (status == "revoked")
    # An unrelated delegation of the same tenant is untouched.
    assert await works(client, side_token)
    # The deactivated agent's credential cannot be exchanged any more.
    again = await exchange(client, chain.links[deactivated], api_key=chain.agents[deactivated]["key"])
    assert error_of(again)[0] in (400, 401)
    assert claims(chain.tokens[-1])["sub"] == chain.root["agent"]["did"]
