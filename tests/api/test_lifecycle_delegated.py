"""Lifecycle of delegated tokens (issue 4): the delegation cascade, and online answers that agree with what an
offline verifier concludes from the JWKS and the published status lists."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from lifecycle_support import (
    INACTIVE,
    audit_targets,
    child_with_key,
    delegate,
    exchange,
    fetch_list,
    introspect,
    jtis,
    jwt_payload,
    revoke,
    status_bits,
)

from agentauth.vc import StaticStatusLists, VerificationError, Verifier
from support import ISSUER_URL, bearer, quickstart, status_urls

pytestmark = pytest.mark.anyio


async def offline_accepts(client: httpx.AsyncClient, token: str) -> bool:
    """What a third party holding only the JWKS and freshly fetched status lists concludes."""
    claims = jwt_payload(token)
    credentials = [token, *claims.get("delegation_chain", [])]
    lists = StaticStatusLists()
    for credential in credentials:
        for url in status_urls(jwt_payload(credential)["vc"]):
            lists.put(url, (await fetch_list(client, urlsplit(url).path)).text)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    try:
        Verifier(issuer_url=ISSUER_URL, jwks=jwks, status_source=lists).verify_access_token(token)
    except VerificationError:
        return False
    return True


async def online_accepts(client: httpx.AsyncClient, token: str) -> bool:
    return (await client.get("/api/v1/agents", headers=bearer(token))).status_code == 200


async def test_revoking_a_delegation_revokes_everything_below_it(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "grantor")
    b, _, b_token = await child_with_key(client, root["access_token"], "b")
    c, _, c_token = await child_with_key(client, root["access_token"], "c")
    grant = await delegate(client, root["access_token"], b["id"], ["agents.read", "delegations.write"])
    b_acting = (await exchange(client, grant["credential"], b_token)).json()["access_token"]
    hop = await delegate(client, b_acting, c["id"], ["agents.read"])
    c_acting = (await exchange(client, hop["credential"], c_token)).json()["access_token"]
    credentials = [grant["credential"], hop["credential"]]
    caller = root["access_token"]
    for token in (b_acting, c_acting):
        assert (await introspect(client, caller, token))["active"] is True
        assert await offline_accepts(client, token) and await online_accepts(client, token)
    assert await status_bits(client, b_acting, c_acting, *credentials) == [0, 0, 0, 0]

    revoked = await client.post(f"/api/v1/delegations/{grant['id']}/revoke", headers=bearer(caller))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"

    for token in (b_acting, c_acting):
        assert await introspect(client, caller, token) == INACTIVE
        assert not await offline_accepts(client, token) and not await online_accepts(client, token)
    assert await status_bits(client, b_acting, c_acting, *credentials) == [1, 1, 1, 1]
    for token in (b_token, c_token, caller):
        assert (await introspect(client, caller, token))["active"] is True
    assert await status_bits(client, b_token, c_token, caller) == [0, 0, 0]
    refused = await exchange(client, hop["credential"], c_token)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert sorted(await audit_targets(client, caller, "delegation.revoked")) == sorted([grant["id"], hop["id"]])
    assert sorted(await audit_targets(client, caller, "access_credential.revoked")) == jtis(b_acting, c_acting)
    assert sorted(await audit_targets(client, caller, "delegation_credential.revoked")) == jtis(*credentials)


async def test_revoking_a_delegation_credential_at_the_revocation_endpoint_is_consistent(
    client: httpx.AsyncClient,
) -> None:
    root = await quickstart(client, "split-brain")
    helper, _, helper_token = await child_with_key(client, root["access_token"], "helper")
    grant = await delegate(client, root["access_token"], helper["id"], ["agents.read"])
    before = (await exchange(client, grant["credential"], helper_token)).json()["access_token"]

    await revoke(client, root["access_token"], grant["credential"])

    # Revoking the delegation credential revokes the delegation, with its cascade - not only its status bit.
    stored = await client.get(f"/api/v1/delegations/{grant['id']}", headers=bearer(root["access_token"]))
    assert stored.status_code == 200 and stored.json()["status"] == "revoked"
    after = await exchange(client, grant["credential"], helper_token)
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
    # Online and offline agree: the token resting on it is dead for both.
    assert not await online_accepts(client, before) and not await offline_accepts(client, before)
    assert await introspect(client, root["access_token"], before) == INACTIVE
    assert await status_bits(client, before, grant["credential"]) == [1, 1]


async def test_the_client_a_delegated_token_was_issued_to_may_revoke_it(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "delegator")
    helper, helper_key, helper_token = await child_with_key(client, root["access_token"], "helper")
    grant = await delegate(client, root["access_token"], helper["id"], ["agents.read"])
    token = (await exchange(client, grant["credential"], helper_token)).json()["access_token"]
    assert jwt_payload(token)["client_id"] == helper["id"]

    assert (await introspect(client, helper_key, token))["active"] is True
    await revoke(client, helper_key, token)
    assert await introspect(client, root["access_token"], token) == INACTIVE
    assert await status_bits(client, token) == [1]
