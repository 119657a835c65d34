"""Token grants through the real app: client_credentials (scope narrowing, HTTP Basic, JSON), refresh rotation
with reuse detection (RFC 9700 section 4.14.2), and jwt-bearer assertions (RFC 7523) with replay protection."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from api_support import (
    JWT_BEARER,
    TOKEN,
    TOKEN_ENDPOINT_URL,
    assertion_for,
    basic,
    client_credentials,
    row_counts,
    works,
)

from agentauth.bootstrap import Services
from agentauth.did import encode_did_key
from agentauth.issuer.scopes import SCOPES
from agentauth.keys import KeyPair
from agentauth.vc import create_agent_assertion
from support import ISSUER_URL, assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio


def claims(jwt: str) -> dict[str, Any]:
    segment = jwt.split(".")[1]
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return payload


async def refresh(client: httpx.AsyncClient, refresh_token: str, **extra: str) -> httpx.Response:
    return await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": refresh_token, **extra})


# -- client_credentials -------------------------------------------------------------------------------------


async def test_client_credentials_narrows_scope_and_the_token_obeys_it(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "narrow")
    token = await client_credentials(client, root["api_key"], "agents.read audit.read")
    assert token["token_type"] == "Bearer" and token["scope"] == "agents.read audit.read"
    assert 0 < token["expires_in"] <= 900 and token["refresh_token"].startswith("rt_")
    assert datetime.fromisoformat(token["refresh_before"]) < datetime.fromisoformat(token["expires_at"])
    body = claims(token["access_token"])
    assert body["scope"] == "agents.read audit.read" and body["client_id"] == root["agent"]["id"]
    assert body["iss"] == ISSUER_URL and body["sub"] == root["agent"]["did"]
    assert await works(client, token["access_token"])
    refused = await client.post(
        "/api/v1/agents", json={"name": "x", "agent_type": "tool"}, headers=bearer(token["access_token"])
    )
    assert_error(refused, 403, "insufficient_scope")
    full = await client_credentials(client, root["api_key"])
    assert set(full["scope"].split()) == set(root["scope"].split()) and len(full["scope"].split()) == len(SCOPES)


async def test_client_credentials_with_http_basic_and_with_json(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "basic")
    agent = root["agent"]
    for user in (agent["id"], agent["did"]):
        response = await client.post(
            TOKEN, data={"grant_type": "client_credentials"}, headers={"Authorization": basic(user, root["api_key"])}
        )
        assert response.status_code == 200, response.text
        assert await works(client, response.json()["access_token"])
    as_json = await client.post(
        TOKEN, json={"grant_type": "client_credentials", "client_secret": root["api_key"], "scope": "agents.read"}
    )
    assert as_json.status_code == 200 and as_json.json()["scope"] == "agents.read"
    assert as_json.headers["cache-control"] == "no-store"
    # HTTP Basic with the right secret but another agent's id: the key is not that client's.
    other = await quickstart(client, "other")
    wrong_owner = await client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic(other["agent"]["id"], root["api_key"])},
    )
    assert_error(wrong_owner, 401, "invalid_client")


# -- refresh_token -----------------------------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_kills_the_whole_family(client: httpx.AsyncClient, services: Services) -> None:
    root = await quickstart(client, "family")
    other_family = await client_credentials(client, root["api_key"])
    first = ok(await refresh(client, root["refresh_token"]))
    assert first["refresh_token"] != root["refresh_token"] and first["access_token"] != root["access_token"]
    assert first["scope"] == root["scope"]
    second = ok(await refresh(client, first["refresh_token"], scope="agents.read"))
    assert second["scope"] == "agents.read" and second["refresh_token"] not in (
        root["refresh_token"],
        first["refresh_token"],
    )
    family_access = [root["access_token"], first["access_token"], second["access_token"]]
    assert [await works(client, t) for t in family_access] == [True, True, True]

    before = await row_counts(services)
    reused = await refresh(client, root["refresh_token"])
    assert_error(reused, 400, "invalid_grant")
    assert await row_counts(services) == before, "a refused refresh mints nothing"
    # The newest refresh token of the family is dead too, and every access token minted in it.
    assert_error(await refresh(client, second["refresh_token"]), 400, "invalid_grant")
    assert [await works(client, t) for t in family_access] == [False, False, False]
    # Another family of the same agent is untouched.
    assert await works(client, other_family["access_token"])
    assert (await refresh(client, other_family["refresh_token"])).status_code == 200


async def test_refresh_cannot_widen_scope(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "widen")
    narrow = await client_credentials(client, root["api_key"], "agents.read")
    assert_error(await refresh(client, narrow["refresh_token"], scope="agents.read agents.write"), 400, "invalid_scope")
    again = ok(await refresh(client, narrow["refresh_token"]))
    assert again["scope"] == "agents.read"


# -- jwt-bearer (RFC 7523) ---------------------------------------------------------------------------------


def forged_assertion(signer: KeyPair, did: str, **overrides: Any) -> str:
    """An assertion naming ``did`` but signed by ``signer``."""
    now = int(datetime.now(UTC).timestamp())
    payload = {"iss": did, "sub": did, "aud": TOKEN_ENDPOINT_URL, "jti": "urn:uuid:forged", "iat": now, "exp": now + 60}
    header = {"alg": "EdDSA", "typ": "JWT", "kid": f"{did}#{did.removeprefix('did:key:')}"}

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload | overrides).encode())}"
    return f"{signing_input}.{b64(signer.sign(signing_input.encode()))}"


async def test_jwt_bearer_grant_and_replay(client: httpx.AsyncClient, services: Services) -> None:
    root = await quickstart(client, "self-signed")
    signed = assertion_for(root)
    granted = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": signed, "scope": "agents.read"})
    assert granted.status_code == 200, granted.text
    assert granted.json()["scope"] == "agents.read" and await works(client, granted.json()["access_token"])
    assert claims(granted.json()["access_token"])["sub"] == root["agent"]["did"]
    before = await row_counts(services)
    assert_error(await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": signed}), 400, "invalid_grant")
    assert await row_counts(services) == before


async def test_jwt_bearer_refuses_bad_assertions(client: httpx.AsyncClient, services: Services) -> None:
    root = await quickstart(client, "assertions")
    pair = KeyPair.from_jwk(root["private_key_jwk"])
    did = root["agent"]["did"]
    now = datetime.now(UTC)
    stranger = KeyPair.generate()
    bad = {
        "wrong audience": create_agent_assertion(pair, audience="https://elsewhere.example/token", now=now),
        "expired": create_agent_assertion(pair, audience=TOKEN_ENDPOINT_URL, now=now - timedelta(minutes=10)),
        "issued in the future": create_agent_assertion(
            pair, audience=TOKEN_ENDPOINT_URL, now=now + timedelta(minutes=10)
        ),
        "lifetime too long": create_agent_assertion(
            pair, audience=TOKEN_ENDPOINT_URL, now=now, lifetime=timedelta(hours=1)
        ),
        "signed by another key": forged_assertion(stranger, did),
        "unregistered agent": create_agent_assertion(stranger, audience=TOKEN_ENDPOINT_URL, now=now),
        "iss differs from sub": forged_assertion(pair, did, sub=encode_did_key(stranger.public.raw)),
        "no jti": forged_assertion(pair, did, jti=None),
    }
    for label, assertion in bad.items():
        before = await row_counts(services)
        response = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion})
        assert response.status_code == 400, f"{label}: {response.text}"
        assert_error(response, 400, "invalid_grant")
        assert await row_counts(services) == before, label
    # The control: the same key, right audience, now.
    assert (
        await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion_for(root)})
    ).status_code == 200


async def test_jwt_bearer_of_a_deactivated_agent_is_refused(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "parent")
    pair = KeyPair.generate()
    child = ok(
        await client.post(
            "/api/v1/agents",
            json={"name": "own-key", "agent_type": "tool", "public_key": encode_did_key(pair.public.raw)},
            headers=bearer(root["access_token"]),
        ),
        201,
    )
    assert child["private_key_jwk"] is None  # the service never had it
    make = lambda: create_agent_assertion(pair, audience=TOKEN_ENDPOINT_URL, now=datetime.now(UTC))  # noqa: E731
    granted = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": make()})
    assert granted.status_code == 200 and set(granted.json()["scope"].split()) == set(child["agent"]["scopes"])
    ok(await client.delete(f"/api/v1/agents/{child['agent']['id']}", headers=bearer(root["access_token"])))
    assert_error(await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": make()}), 400, "invalid_grant")
    assert not await works(client, granted.json()["access_token"])
