"""Key rotation end to end, against the real service (real database, real key ring) over an ASGI transport.

A verifier that cached the JWKS before a rotation:
* accepts tokens of the newly active key with no refetch at all when that key was already published as *next*;
* after a second rotation (a key it has never seen), accepts after exactly one JWKS refetch;
* keeps accepting tokens of the retired keys until those tokens expire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from agentauth.api.app import create_app
from agentauth.bootstrap import Services, utcnow
from agentauth.sdk import AsyncOnlineVerifier
from agentauth.vc import VerificationError
from agentauth.vc import errors as e

pytestmark = pytest.mark.anyio
ISSUER = "http://testserver"


class Clock:
    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
async def http(services: Services) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    app = create_app(services=services)
    app.state.services = services
    seen: list[str] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.url.path)

    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER, event_hooks={"request": [record]}) as client:
        yield client, seen


async def token_for(client: httpx.AsyncClient, api_key: str) -> str:
    response = await client.post(
        "/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": api_key, "scope": "api.read"}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def rotate(services: Services) -> None:
    await services.keys.rotate(utcnow(), services.key_retention())
    await services.reload_keys()  # what the server's key-maintenance loop does within seconds


async def test_rotation_seen_by_a_verifier_with_a_cached_jwks(
    services: Services, http: tuple[httpx.AsyncClient, list[str]]
) -> None:
    client, seen = http
    registered = (
        await client.post("/api/v1/agents/quickstart", json={"name": "rotating", "agent_type": "assistant"})
    ).json()
    api_key: str = registered["api_key"]
    clock = Clock()
    verifier = AsyncOnlineVerifier(ISSUER, resource=ISSUER, http=client, monotonic=clock, min_refresh_interval=30)

    first = await token_for(client, api_key)
    first_kid = (await verifier.verify_access_token(first)).kid
    assert seen.count("/.well-known/jwks.json") == 1

    # Rotation 1: the new active key was published as "next" all along - no refetch needed.
    await rotate(services)
    second = await token_for(client, api_key)
    second_kid = (await verifier.verify_access_token(second)).kid
    assert second_kid != first_kid
    assert seen.count("/.well-known/jwks.json") == 1

    # Rotation 2: the active key is one this verifier never saw - one refetch, then accepted.
    await rotate(services)
    clock.value += 31  # past the refetch rate limit
    third = await token_for(client, api_key)
    third_kid = (await verifier.verify_access_token(third)).kid
    assert len({first_kid, second_kid, third_kid}) == 3
    assert seen.count("/.well-known/jwks.json") == 2
    states = {k.kid: k.state.value for k in services.keys.ring.keys}
    assert states[first_kid] == states[second_kid] == "retired" and states[third_kid] == "active"

    # The retired keys' tokens keep verifying - from the cache, no further fetches - until they expire.
    for token in (first, second):
        assert (await verifier.verify_access_token(token)).kid in (first_kid, second_kid)
    assert seen.count("/.well-known/jwks.json") == 2
    after_expiry = utcnow() + timedelta(seconds=services.settings.access_token_ttl_seconds + 60)
    with pytest.raises(VerificationError) as caught:
        await verifier.verify_access_token(first, now=after_expiry)
    assert caught.value.code == e.EXPIRED


async def test_a_dropped_key_disappears_once_the_cached_jwks_is_refreshed(
    services: Services, http: tuple[httpx.AsyncClient, list[str]]
) -> None:
    client, seen = http
    registered: dict[str, Any] = (
        await client.post("/api/v1/agents/quickstart", json={"name": "compromised", "agent_type": "assistant"})
    ).json()
    clock = Clock()
    verifier = AsyncOnlineVerifier(ISSUER, resource=ISSUER, http=client, monotonic=clock)
    token = await token_for(client, registered["api_key"])
    kid = (await verifier.verify_access_token(token)).kid

    await services.keys.drop(kid, utcnow())
    await services.reload_keys()
    clock.value += 301  # the JWKS max-age (Cache-Control: max-age=300) ran out
    with pytest.raises(VerificationError) as caught:
        await verifier.verify_access_token(token)
    assert caught.value.code == e.UNKNOWN_KID
    assert seen.count("/.well-known/jwks.json") == 2
