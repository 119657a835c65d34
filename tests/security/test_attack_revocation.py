"""Forged and foreign revocation (RFC 7009 section 2.1: the server "first validates the client credentials ...
and then verifies whether the token was issued to the client making the revocation request"): a token the
attacker made up to carry a victim's ``jti`` - signed by a stranger, HMAC'd with our public key, unsigned - and
genuine tokens of another tenant are answered 200 (section 2.2: no oracle) and revoke nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from security_support import (
    INTROSPECT,
    REVOKE,
    World,
    assert_unchanged,
    decode,
    is_active,
    segment,
    sign_ed25519,
    snapshot,
)

from agentauth.bootstrap import Services
from agentauth.keys import KeyPair, b64url_decode, b64url_encode
from support import bearer, ok

pytestmark = pytest.mark.anyio


def public_jwk(services: Services, token: str) -> dict[str, str]:
    kid = decode(token)[0]["kid"]
    return next(k for k in services.jwks()["keys"] if k["kid"] == kid)


def hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{segment(header | {'alg': 'HS256'})}.{segment(payload)}"
    return f"{signing_input}.{b64url_encode(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def stranger_with_jwk(header: dict[str, Any], payload: dict[str, Any]) -> str:
    key = KeyPair.generate()
    return sign_ed25519(header | {"jwk": key.public.jwk()}, payload, key)


Forge = Callable[[Services, World, str], str]
FORGERIES: dict[str, Forge] = {
    "stranger-signed, our kid": lambda s, w, t: sign_ed25519(*decode(t), KeyPair.generate()),
    "stranger-signed, header jwk": lambda s, w, t: stranger_with_jwk(*decode(t)),
    "HS256 keyed with our raw public key": lambda s, w, t: hs256(*decode(t), b64url_decode(public_jwk(s, t)["x"])),
    "HS256 keyed with our JWK JSON": lambda s, w, t: hs256(*decode(t), json.dumps(public_jwk(s, t)).encode()),
    "alg none": lambda s, w, t: f"{segment(decode(t)[0] | {'alg': 'none'})}.{segment(decode(t)[1])}.",
    "victim payload, attacker's genuine signature": lambda s, w, t: f"{t.rsplit('.', 1)[0]}.{w.b_token.split('.')[2]}",
}


def victims(w: World) -> dict[str, str]:
    """The victim's genuine artifacts whose ``jti`` a forgery carries."""
    return {
        "root access token": w.a_token,
        "child access token": w.child_token,
        "delegation credential": w.delegation["credential"],
        "identity credential": w.a["identity_credential"],
    }


@pytest.mark.parametrize("forgery", list(FORGERIES))
@pytest.mark.parametrize("caller", ["attacker tenant (bearer)", "attacker tenant (API key)", "victim's own root"])
async def test_forged_token_with_a_victims_jti_revokes_nothing(
    client: httpx.AsyncClient, services: Services, world: World, forgery: str, caller: str
) -> None:
    """The victim's own root is the sharpest caller: it may revoke all of these when they are genuine, so only
    the signature check stands between a forgery and the revocation (and, for the delegation, its cascade)."""
    auth: dict[str, Any] = {
        "attacker tenant (bearer)": {"headers": bearer(world.b_token)},
        "attacker tenant (API key)": {"data": {"client_secret": world.b["api_key"]}},
        "victim's own root": {"headers": bearer(world.a_token)},
    }[caller]
    before = await snapshot(services)
    for kind, victim in victims(world).items():
        forged = FORGERIES[forgery](services, world, victim)
        assert decode(forged)[1]["jti"] == decode(victim)[1]["jti"]
        data = {"token": forged, **auth.get("data", {})}
        response = await client.post(REVOKE, data=data, headers=auth.get("headers"))
        assert response.status_code == 200, f"{kind}: {response.text}"
    await assert_unchanged(services, before, f"by {forgery} from {caller}")
    assert await is_active(client, world.a_token) and await is_active(client, world.child_token)
    delegation = ok(await client.get(f"/api/v1/delegations/{world.delegation['id']}", headers=bearer(world.a_token)))
    assert delegation["status"] == "active"


async def test_genuine_tokens_of_another_tenant_are_not_revoked(
    client: httpx.AsyncClient, services: Services, world: World
) -> None:
    before = await snapshot(services)
    # (Not A's refresh token: holding one is enough to revoke it, issue 12 item 18 - test_token_pairs.py.)
    for token in (world.a_token, world.child_token, world.delegation["credential"]):
        assert (await client.post(REVOKE, data={"token": token}, headers=bearer(world.b_token))).status_code == 200
        by_key = await client.post(REVOKE, data={"token": token, "client_secret": world.b["api_key"]})
        assert by_key.status_code == 200
    await assert_unchanged(services, before, "by another tenant's revocation requests")
    assert await is_active(client, world.a_token)
    seen = await client.post(INTROSPECT, data={"token": world.a["refresh_token"]}, headers=bearer(world.a_token))
    assert seen.json()["active"] is True


async def test_a_child_cannot_revoke_its_parents_tokens(
    client: httpx.AsyncClient, services: Services, world: World
) -> None:
    """Inside one tenant: revocation follows the subtree, a child is below its root."""
    before = await snapshot(services)
    for token in (world.a_token, world.a["identity_credential"]):  # a refresh token: possession suffices (item 18)
        response = await client.post(REVOKE, data={"token": token}, headers=bearer(world.child_token))
        assert response.status_code == 200
    await assert_unchanged(services, before, "by the child")
    assert await is_active(client, world.a_token)


async def test_the_control_the_owner_revokes(client: httpx.AsyncClient, world: World) -> None:
    assert (
        await client.post(REVOKE, data={"token": world.child_token}, headers=bearer(world.a_token))
    ).status_code == 200
    assert not await is_active(client, world.child_token)


async def test_the_delegate_cannot_revoke_its_delegation_at_the_revocation_endpoint(
    client: httpx.AsyncClient, services: Services, world: World
) -> None:
    rest = await client.post(f"/api/v1/delegations/{world.delegation['id']}/revoke", headers=bearer(world.child_token))
    assert rest.status_code == 403, rest.text
    before = await snapshot(services)
    response = await client.post(
        REVOKE, data={"token": world.delegation["credential"]}, headers=bearer(world.child_token)
    )
    assert response.status_code == 200
    await assert_unchanged(services, before, "by the delegate revoking the delegation it received")
