"""Token-type confusion (RFC 8725 section 3.11 "Use explicit typing", RFC 9068 section 4): every artifact the
service hands out is accepted only where it belongs. A delegation, status list, identity credential,
presentation, assertion, refresh token or API key is no access token (401), and an access token is no
delegation (token exchange), no assertion (jwt-bearer), no refresh token and no API key (400/401) - and no
refused attempt changes the database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from security_support import (
    INTROSPECT,
    JWT_BEARER,
    TOKEN,
    World,
    assert_unchanged,
    assertion_for,
    decode,
    exchange_data,
    snapshot,
)

from agentauth.bootstrap import Services
from agentauth.keys import KeyPair
from agentauth.vc import create_presentation
from support import ISSUER_URL, assert_error, bearer, status_entry

pytestmark = pytest.mark.anyio


async def artifacts(client: httpx.AsyncClient, w: World, holder: dict[str, Any]) -> dict[str, str]:
    """Everything signed or minted for ``holder`` (an agent of tenant A), by kind, plus the delegation that
    names the child as delegate."""
    url = status_entry(decode(holder["access_token"])[1]["vc"])["statusListCredential"]
    status_list = await client.get(urlsplit(url).path)
    assert status_list.status_code == 200 and status_list.text.count(".") == 2
    key = KeyPair.from_jwk(holder["private_key_jwk"])
    presentation = create_presentation(
        key, [holder["identity_credential"]], audience=ISSUER_URL, nonce="n-1", now=datetime.now(UTC)
    )
    return {
        "access token": holder["access_token"],
        "delegation credential": w.delegation["credential"],
        "status list credential": status_list.text,
        "identity credential": holder["identity_credential"],
        "presentation": presentation,
        "jwt-bearer assertion": assertion_for(holder),
        "refresh token": holder["refresh_token"],
        "API key": holder["api_key"],
    }


def holder_for(use: str, w: World) -> dict[str, Any]:
    """Whose artifacts to try: the delegate's where the delegate authenticates (actor_token), the root's
    elsewhere - so the only thing wrong with the request is the artifact's type."""
    return w.child if use == "token-exchange actor_token" else w.a


Use = Callable[[httpx.AsyncClient, World, str], Awaitable[httpx.Response]]


async def use_as_bearer(client: httpx.AsyncClient, w: World, token: str) -> httpx.Response:
    return await client.get("/api/v1/agents", headers=bearer(token))


async def use_as_subject(client: httpx.AsyncClient, w: World, token: str) -> httpx.Response:
    return await client.post(TOKEN, data=exchange_data(token, w.child_token))


async def use_as_actor(client: httpx.AsyncClient, w: World, token: str) -> httpx.Response:
    return await client.post(TOKEN, data=exchange_data(w.delegation["credential"], token))


async def use_as_assertion(client: httpx.AsyncClient, w: World, token: str) -> httpx.Response:
    return await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": token})


async def use_as_refresh(client: httpx.AsyncClient, w: World, token: str) -> httpx.Response:
    return await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": token})


async def use_as_api_key(client: httpx.AsyncClient, w: World, token: str) -> httpx.Response:
    return await client.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": token})


# use -> (the one artifact kind it accepts, the status and error for every other kind)
USES: dict[str, tuple[Use, str, int, str]] = {
    "bearer access token": (use_as_bearer, "access token", 401, "invalid_token"),
    "token-exchange subject_token": (use_as_subject, "delegation credential", 400, "invalid_grant"),
    "token-exchange actor_token": (use_as_actor, "access token", 400, "invalid_grant"),
    "jwt-bearer assertion": (use_as_assertion, "jwt-bearer assertion", 400, "invalid_grant"),
    "refresh_token grant": (use_as_refresh, "refresh token", 400, "invalid_grant"),
    "client_credentials secret": (use_as_api_key, "API key", 401, "invalid_client"),
}
KINDS = [
    "access token",
    "delegation credential",
    "status list credential",
    "identity credential",
    "presentation",
    "jwt-bearer assertion",
    "refresh token",
    "API key",
]
CASES = [(use, kind) for use, (_, accepted, _, _) in USES.items() for kind in KINDS if kind != accepted]


@pytest.mark.parametrize("use", list(USES))
async def test_each_use_accepts_its_own_kind(client: httpx.AsyncClient, world: World, use: str) -> None:
    """The control: the right artifact works, so the refusals below are about the type."""
    call, kind, _, _ = USES[use]
    response = await call(client, world, (await artifacts(client, world, holder_for(use, world)))[kind])
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("use", "kind"), CASES, ids=[f"{k} as {u}" for u, k in CASES])
async def test_wrong_kind_is_refused(
    client: httpx.AsyncClient, services: Services, world: World, use: str, kind: str
) -> None:
    call, _, status, error = USES[use]
    token = (await artifacts(client, world, holder_for(use, world)))[kind]
    before = await snapshot(services)
    assert_error(await call(client, world, token), status, error, f"{kind} as {use}")
    await assert_unchanged(services, before, f"by {kind} as {use}")


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "access token"])
async def test_introspection_calls_only_access_and_refresh_tokens_active(
    client: httpx.AsyncClient, services: Services, world: World, kind: str
) -> None:
    token = (await artifacts(client, world, world.a))[kind]
    response = await client.post(INTROSPECT, data={"token": token}, headers=bearer(world.a_token))
    expected = kind == "refresh token"
    assert response.status_code == 200 and response.json()["active"] is expected, response.text
    if not expected:
        assert response.json() == {"active": False}
