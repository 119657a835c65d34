"""End to end through a real ``agentauth serve`` process (issue 3, "Must show"), over real HTTP on 127.0.0.1:
quickstart -> client_credentials -> protected route -> refresh -> reuse -> the whole family is dead; 20 concurrent
refreshes of one refresh token (RFC 9700 section 4.14.2); offline verification with only the published JWKS; and
the RFC 7523 jwt-bearer grant with the did:key that quickstart generated. Runs on SQLite, and on PostgreSQL when
AGENTAUTH_TEST_POSTGRES=1 (see conftest.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agentauth.keys import KeyPair
from agentauth.vc import VerificationError, Verifier, create_agent_assertion

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TOKEN = "/api/v1/auth/token"
AGENTS = "/api/v1/agents"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CONCURRENT_REFRESHES = 20


class E2EServer(Protocol):
    """What the tests use of the ``server`` fixture (tests/e2e/conftest.py; test modules never import conftest)."""

    url: str
    database_url: str


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified (to find rows by jti; verification is tested separately)."""
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return claims


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def quickstart(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    response = await http.post(f"{AGENTS}/quickstart", json={"name": name, "agent_type": "assistant"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def client_credentials(http: httpx.AsyncClient, api_key: str) -> dict[str, Any]:
    response = await http.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": api_key})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def refresh(http: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await http.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": refresh_token})


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant", response.text


async def assert_rejected(http: httpx.AsyncClient, access_token: str) -> None:
    response = await http.get(AGENTS, headers=bearer(access_token))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"].lower().startswith("bearer")


async def query(server: E2EServer, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Read the server's own database directly (the SQLite file in its data directory, or PostgreSQL)."""
    engine = create_async_engine(server.database_url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]
    finally:
        await engine.dispose()


async def test_quickstart_to_dead_refresh_family(server: E2EServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        registered = await quickstart(http, "e2e-flow")
        agent = registered["agent"]

        issued = await client_credentials(http, registered["api_key"])
        assert issued["token_type"] == "Bearer"
        assert issued["expires_in"] > 0
        assert "agents.read" in issued["scope"].split()

        listed = await http.get(AGENTS, headers=bearer(issued["access_token"]))
        assert listed.status_code == 200, listed.text
        assert [item["id"] for item in listed.json()["items"]] == [agent["id"]]

        rotated = await refresh(http, issued["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        second = rotated.json()
        assert second["refresh_token"] != issued["refresh_token"]
        assert second["access_token"] != issued["access_token"]
        assert (await http.get(AGENTS, headers=bearer(second["access_token"]))).status_code == 200

        # RFC 9700 section 4.14.2: the spent refresh token comes back - theft or replay: the family dies.
        assert_invalid_grant(await refresh(http, issued["refresh_token"]))
        assert_invalid_grant(await refresh(http, second["refresh_token"]))
        await assert_rejected(http, issued["access_token"])
        await assert_rejected(http, second["access_token"])

        # Only that family: the quickstart's own token pair is another family and still works.
        assert (await http.get(AGENTS, headers=bearer(registered["access_token"]))).status_code == 200
        assert (await refresh(http, registered["refresh_token"])).status_code == 200


async def test_concurrent_refreshes_of_one_token_have_one_winner(server: E2EServer) -> None:
    """20 concurrent uses of one refresh token over real HTTP: exactly one 200, 19 ``invalid_grant``.

    Expected, not a side effect to avoid: each loser presents a refresh token that is already *used* (the
    winner's conditional UPDATE spent it), which is exactly what RFC 9700 section 4.14.2 reuse detection looks
    for - a concurrent duplicate use is indistinguishable from an attacker replaying a stolen token. So the
    losers revoke the whole family, including the token pair the winner just received: afterwards every
    refresh token of the family is revoked and its access tokens are refused. The database must show the
    rotation happened exactly once: the family holds the original refresh token plus one new one, and two
    access tokens (the original and the winner's).
    """
    limits = httpx.Limits(max_connections=CONCURRENT_REFRESHES, max_keepalive_connections=CONCURRENT_REFRESHES)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
        registered = await quickstart(http, "e2e-race")
        issued = await client_credentials(http, registered["api_key"])
        family_rows = await query(
            server,
            "SELECT refresh_family_id FROM credentials WHERE jti = :jti",
            jti=jwt_claims(issued["access_token"])["jti"],
        )
        assert len(family_rows) == 1 and family_rows[0][0], family_rows
        family = family_rows[0][0]
        before = await query(server, "SELECT status FROM refresh_tokens WHERE family_id = :f", f=family)
        assert before == [("active",)]
        # Open all connections first, so the 20 refreshes leave together instead of behind 20 TCP handshakes.
        warm = await asyncio.gather(*(http.get("/health") for _ in range(CONCURRENT_REFRESHES)))
        assert {r.status_code for r in warm} == {200}

        responses = await asyncio.gather(*(refresh(http, issued["refresh_token"]) for _ in range(CONCURRENT_REFRESHES)))

        outcomes = Counter((r.status_code, r.json().get("error")) for r in responses)
        assert outcomes == {(200, None): 1, (400, "invalid_grant"): CONCURRENT_REFRESHES - 1}, outcomes
        winner = next(r.json() for r in responses if r.status_code == 200)

        refresh_rows = await query(server, "SELECT status FROM refresh_tokens WHERE family_id = :f", f=family)
        assert len(refresh_rows) == 2, f"one use must create exactly one new refresh token: {refresh_rows}"
        assert {status for (status,) in refresh_rows} == {"revoked"}, refresh_rows
        access_rows = await query(
            server,
            "SELECT jti, revoked_at FROM credentials WHERE kind = 'access' AND refresh_family_id = :f",
            f=family,
        )
        assert {jti for jti, _ in access_rows} == {
            jwt_claims(issued["access_token"])["jti"],
            jwt_claims(winner["access_token"])["jti"],
        }
        assert all(revoked_at is not None for _, revoked_at in access_rows), access_rows

        # And over HTTP: the winner's fresh pair died with its family.
        assert_invalid_grant(await refresh(http, winner["refresh_token"]))
        await assert_rejected(http, winner["access_token"])
        await assert_rejected(http, issued["access_token"])


async def test_access_token_verifies_offline_with_published_jwks(server: E2EServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        registered = await quickstart(http, "e2e-offline")
        issued = await client_credentials(http, registered["api_key"])
        jwks_response = await http.get("/.well-known/jwks.json")
        assert jwks_response.status_code == 200
        jwks = jwks_response.json()

    # From here on nothing talks to the server: the JWKS is all a third-party verifier holds.
    verifier = Verifier(issuer_url=server.url, jwks=jwks, check_status=False)
    verified = verifier.verify_access_token(issued["access_token"], audience=server.url)
    assert verified.claims["iss"] == server.url
    assert verified.claims["sub"] == registered["agent"]["did"]
    assert verified.scopes == frozenset(issued["scope"].split())
    header, payload, signature = issued["access_token"].split(".")
    forged = f"{header}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    with pytest.raises(VerificationError):
        verifier.verify_access_token(forged, audience=server.url)
    with pytest.raises(VerificationError):
        verifier.verify_access_token(issued["access_token"], audience="https://elsewhere.example")


async def test_jwt_bearer_grant_with_quickstart_key(server: E2EServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        registered = await quickstart(http, "e2e-jwt-bearer")
        jwk = registered["private_key_jwk"]
        assert jwk is not None and jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and "d" in jwk
        assertion = create_agent_assertion(KeyPair.from_jwk(jwk), audience=server.url + TOKEN, now=datetime.now(UTC))

        response = await http.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion})
        assert response.status_code == 200, response.text
        issued = response.json()
        assert issued["token_type"] == "Bearer"
        jwks = (await http.get("/.well-known/jwks.json")).json()
        claims = (
            Verifier(issuer_url=server.url, jwks=jwks, check_status=False)
            .verify_access_token(issued["access_token"], audience=server.url)
            .claims
        )
        assert claims["sub"] == registered["agent"]["did"]
        assert (await http.get(AGENTS, headers=bearer(issued["access_token"]))).status_code == 200

        # RFC 7523 section 3: the jti is never accepted twice.
        assert_invalid_grant(await http.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion}))


async def test_an_idle_keep_alive_connection_outlives_the_client_pools_expiry(server: E2EServer) -> None:
    """A connection left idle as long as httpx's pool keeps one (5 s) still serves the next request on it: the
    server's keep-alive timeout is longer than the clients', so the client closes first and never sends a request
    on a connection the server is closing (at uvicorn's default of 5 s, one such request in 1,000 got a ReadError
    in CI)."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    try:
        for pause in (0.0, httpx.Limits().keepalive_expiry + 1.0):
            await asyncio.sleep(pause)
            writer.write(request)
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), timeout=10)
            assert status.startswith(b"HTTP/1.1 200"), status
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
    finally:
        writer.close()
