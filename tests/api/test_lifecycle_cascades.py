"""Cascading revocation and key compromise (issue 4), each checked through introspection AND through the
status list as fetched over HTTP and decoded independently, with one audit event per revoked object."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from lifecycle_support import (
    INACTIVE,
    audit_targets,
    client_token,
    introspect,
    jtis,
    jwt_header,
    status_bits,
    status_slot,
)

from agentauth.bootstrap import Services, build_services
from agentauth.issuer.compromise import revoke_signing_key
from agentauth.issuer.context import RequestContext
from agentauth.vc import Verifier
from support import ISSUER_URL, bearer, quickstart

pytestmark = pytest.mark.anyio


async def new_key(client: httpx.AsyncClient, token: str, agent_id: str | None = None) -> dict[str, Any]:
    body = {"agent_id": agent_id} if agent_id else {}
    response = await client.post("/api/v1/credentials", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def assert_dead(client: httpx.AsyncClient, caller: str, *tokens: str) -> None:
    for token in tokens:
        assert await introspect(client, caller, token) == INACTIVE
    assert await status_bits(client, *tokens) == [1] * len(tokens)


async def assert_alive(client: httpx.AsyncClient, caller: str, *tokens: str) -> None:
    for token in tokens:
        assert (await introspect(client, caller, token))["active"] is True
    assert await status_bits(client, *tokens) == [0] * len(tokens)


async def test_revoking_an_api_key_revokes_the_tokens_issued_with_it(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "keys")
    doomed = await new_key(client, root["access_token"])
    spared = await new_key(client, root["access_token"])
    issued = [await client_token(client, doomed["raw_key"]) for _ in range(3)]
    tokens = [t["access_token"] for t in issued]
    survivor = (await client_token(client, spared["raw_key"]))["access_token"]
    await assert_alive(client, root["access_token"], *tokens)

    response = await client.post(f"/api/v1/credentials/{doomed['id']}/revoke", headers=bearer(root["access_token"]))
    assert response.status_code == 200 and response.json()["status"] == "revoked"

    await assert_dead(client, root["access_token"], *tokens)
    await assert_alive(client, root["access_token"], survivor, root["access_token"])
    for refresh in (t["refresh_token"] for t in issued):
        assert await introspect(client, root["access_token"], refresh) == INACTIVE
    refused = await client.post(
        "/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": doomed["raw_key"]}
    )
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert sorted(await audit_targets(client, root["access_token"], "access_credential.revoked")) == jtis(*tokens)
    assert await audit_targets(client, root["access_token"], "credential.revoked") == [doomed["id"]]


async def test_rotating_a_key_revokes_the_old_keys_tokens(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "rotate")
    old = await new_key(client, root["access_token"])
    tokens = [(await client_token(client, old["raw_key"]))["access_token"] for _ in range(2)]
    response = await client.post(f"/api/v1/credentials/{old['id']}/rotate", headers=bearer(root["access_token"]))
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["old_credential_id"] == old["id"] and rotated["raw_key"] != old["raw_key"]

    await assert_dead(client, root["access_token"], *tokens)
    fresh = (await client_token(client, rotated["raw_key"]))["access_token"]
    await assert_alive(client, root["access_token"], fresh, root["access_token"])
    stale = await client.post(
        "/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": old["raw_key"]}
    )
    assert stale.status_code == 401
    assert sorted(await audit_targets(client, root["access_token"], "access_credential.revoked")) == jtis(*tokens)
    assert await audit_targets(client, root["access_token"], "credential.rotated") == [old["id"]]


async def test_deactivating_an_agent_revokes_its_keys_tokens_identity_and_delegations(
    client: httpx.AsyncClient,
) -> None:
    root = await quickstart(client, "parent")
    created = await client.post(
        "/api/v1/agents", json={"name": "child", "agent_type": "tool"}, headers=bearer(root["access_token"])
    )
    assert created.status_code == 201, created.text
    child, identity = created.json()["agent"], created.json()["identity_credential"]
    keys = [await new_key(client, root["access_token"], child["id"]) for _ in range(2)]
    tokens = [(await client_token(client, k["raw_key"]))["access_token"] for k in keys for _ in range(2)]
    grant = await client.post(
        "/api/v1/delegations",
        json={"delegate_agent_id": child["id"], "scopes": ["agents.read"]},
        headers=bearer(root["access_token"]),
    )
    assert grant.status_code == 201, grant.text
    delegation = grant.json()["credential"]
    await assert_alive(client, root["access_token"], *tokens)
    assert await status_bits(client, identity, delegation) == [0, 0]

    response = await client.delete(f"/api/v1/agents/{child['id']}", headers=bearer(root["access_token"]))
    assert response.status_code == 200 and response.json()["is_active"] is False

    await assert_dead(client, root["access_token"], *tokens)
    assert await status_bits(client, identity, delegation) == [1, 1]
    await assert_alive(client, root["access_token"], root["access_token"])
    assert await status_bits(client, root["identity_credential"]) == [0]
    for key in keys:
        refused = await client.post(
            "/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": key["raw_key"]}
        )
        assert refused.status_code == 401
    audit = {
        action: sorted(await audit_targets(client, root["access_token"], action))
        for action in (
            "agent.deactivated",
            "credential.revoked",
            "access_credential.revoked",
            "identity_credential.revoked",
            "delegation_credential.revoked",
            "delegation.revoked",
        )
    }
    assert audit["agent.deactivated"] == [child["id"]]
    assert audit["credential.revoked"] == sorted(k["id"] for k in keys)
    assert audit["access_credential.revoked"] == jtis(*tokens)
    assert audit["identity_credential.revoked"] == jtis(identity)
    assert audit["delegation_credential.revoked"] == jtis(delegation)
    assert audit["delegation.revoked"] == [grant.json()["id"]]


async def test_key_compromise_drops_the_kid_and_revokes_what_it_signed(
    client: httpx.AsyncClient, services: Services
) -> None:
    agent = await quickstart(client, "compromised")
    tokens = [agent["access_token"], (await client_token(client, agent["api_key"]))["access_token"]]
    kid = jwt_header(agent["access_token"])["kid"]
    assert kid in [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]

    count = await revoke_signing_key(services.keys, services.core, kid, RequestContext())
    assert count >= 3  # two access tokens and the identity credential, at least

    jwks = (await client.get("/.well-known/jwks.json")).json()
    did = (await client.get("/.well-known/did.json")).json()
    alias = (await client.get("/api/v1/auth/jwks")).json()
    assert kid not in [k["kid"] for k in jwks["keys"]] and jwks == alias
    assert kid not in [m["id"] for m in did["verificationMethod"]]
    assert kid not in did.get("assertionMethod", []) and kid not in did.get("authentication", [])
    for token in tokens:
        assert await introspect(client, agent["api_key"], token) == INACTIVE
        assert (await client.get("/api/v1/agents", headers=bearer(token))).status_code == 401
    assert await status_bits(client, *tokens, agent["identity_credential"]) == [1, 1, 1]

    # The lists were re-signed: an offline verifier holding only the new JWKS still reads them.
    published = (await client.get(status_slot(tokens[0])[0])).text
    assert jwt_header(published)["kid"] != kid
    Verifier(issuer_url=ISSUER_URL, jwks=jwks, check_status=False).verify_signature(published)

    fresh = (await client_token(client, agent["api_key"]))["access_token"]
    assert jwt_header(fresh)["kid"] != kid
    assert jwt_header(fresh)["kid"] in [k["kid"] for k in jwks["keys"]]
    assert (await client.get("/api/v1/agents", headers=bearer(fresh))).status_code == 200
    assert (await introspect(client, fresh, fresh))["active"] is True
    assert await status_bits(client, fresh) == [0]


async def test_key_revoked_by_another_process_is_not_left_signing_the_status_list(
    client: httpx.AsyncClient, services: Services
) -> None:
    """``agentauth keys revoke`` runs in its own process; the server notices within KEY_RELOAD_SECONDS. A status
    list fetched in that window is signed with the still-loaded, dropped key - acceptable for seconds, but once
    the server has reloaded its keys the published list must verify with the published JWKS again."""
    agent = await quickstart(client, "cli")
    path = status_slot(agent["access_token"])[0]
    kid = jwt_header(agent["access_token"])["kid"]
    operator = await build_services(services.settings)  # same database and key-encryption key, like the CLI
    try:
        await revoke_signing_key(operator.keys, operator.core, kid, RequestContext())
    finally:
        await operator.close()
    in_window = (await client.get(path)).text  # the server has not reloaded its key ring yet
    assert jwt_header(in_window)["kid"] == kid
    await services.reload_keys()  # what the server's key-maintenance task does every few seconds

    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert kid not in [k["kid"] for k in jwks["keys"]]
    assert await introspect(client, agent["api_key"], agent["access_token"]) == INACTIVE
    published = (await client.get(path)).text
    Verifier(issuer_url=ISSUER_URL, jwks=jwks, check_status=False).verify_signature(published)
