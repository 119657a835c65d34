"""JOSE forgery catalogue (RFC 8725 sections 2.1-2.8 and 3.1): every forged token is refused on every surface
that accepts a token, and nothing in the database changes.

Forgeries an attacker can make without our private keys: ``alg: none``; HS256/HS512 keyed with the public key
(raw bytes, the JWK JSON as published, its base64url ``x``); ``kid`` pointing elsewhere (paths, URLs, SQL, NUL,
overlong, wrong JSON types); a key we don't own offered in the header (``jwk``, ``jku``, ``x5u``, ``x5c``) or
named with our own ``kid``; a tampered payload under a genuine signature; a genuine signature spliced from
another token. Surfaces: the bearer header, introspection, revocation, the jwt-bearer assertion, and the
token-exchange ``subject_token`` and ``actor_token``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from security_support import (
    INTROSPECT,
    JWT_BEARER,
    REVOKE,
    TOKEN,
    World,
    assert_unchanged,
    assertion_for,
    decode,
    exchange_data,
    segment,
    sign_ed25519,
    snapshot,
)

from agentauth.bootstrap import Services
from agentauth.keys import KeyPair, PublicKey, b64url_decode, b64url_encode
from support import assert_error, bearer

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Genuine:
    """A genuine token of one surface and the public key that verifies it (issuer key, or the agent's did:key)."""

    token: str
    jwk: dict[str, str]  # as published: the JWKS entry, or the agent's public JWK
    other_signature: str  # a genuine signature by the same key over another message

    @property
    def parts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return decode(self.token)

    @property
    def raw_key(self) -> bytes:
        return b64url_decode(self.jwk["x"])


Forgery = Callable[[Genuine, KeyPair], str]


def unsigned(alg: str | None, keep_signature: bool = False) -> Forgery:
    def forge(g: Genuine, _: KeyPair) -> str:
        header, payload = g.parts
        header = {k: v for k, v in header.items() if k != "alg"} | ({"alg": alg} if alg is not None else {})
        return f"{segment(header)}.{segment(payload)}.{g.token.split('.')[2] if keep_signature else ''}"

    return forge


def hmac_signed(alg: str, secret: Callable[[Genuine], bytes]) -> Forgery:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]

    def forge(g: Genuine, _: KeyPair) -> str:
        header, payload = g.parts
        signing_input = f"{segment(header | {'alg': alg})}.{segment(payload)}"
        return f"{signing_input}.{b64url_encode(hmac.new(secret(g), signing_input.encode(), digest).digest())}"

    return forge


def stranger(**header: Any) -> Forgery:
    """Signed by a key we don't own, with header parameters (``None`` removes one; callables get the genuine
    token and the stranger's key)."""

    def forge(g: Genuine, key: KeyPair) -> str:
        base, payload = g.parts
        for name, value in header.items():
            base = {k: v for k, v in base.items() if k != name}
            if value is not None:
                base[name] = value(g, key) if callable(value) else value
        return sign_ed25519(base, payload, key)

    return forge


def tampered(g: Genuine, _: KeyPair) -> str:
    header, payload = g.parts
    payload = payload | {"jti": payload["jti"] + "0", "exp": payload["exp"] + 3600}
    return f"{segment(header)}.{segment(payload)}.{g.token.split('.')[2]}"


def spliced(g: Genuine, _: KeyPair) -> str:
    return g.token.rsplit(".", 1)[0] + "." + g.other_signature


def their_jwk(_: Genuine, key: KeyPair) -> dict[str, str]:
    return key.public.jwk()


KIDS: dict[str, Any] = {
    "path traversal": "../../../../../../etc/passwd",
    "absolute path": "/dev/null",
    "file URL": "file:///etc/passwd",
    "loopback URL": "http://127.0.0.1:9/.well-known/jwks.json",
    "remote URL": "https://attacker.invalid/jwks.json#key-1",
    "SQL tautology": "' OR 1=1 --",
    "SQL union": "x' UNION SELECT public_jwk FROM signing_keys --",
    "SQL drop": '"; DROP TABLE signing_keys; --',
    "empty": "",
    "NUL": "\u0000",
    "percent NUL": "%00",
    "our kid with traversal": lambda g, _: f"{g.jwk.get('kid', 'did:key:x#y')}/../../x",
    "overlong": "A" * 4000,
    "integer": 12345,
    "list": ["a", "b"],
    "object": {"kid": "x"},
    "null": None,
}

FORGERIES: dict[str, Forgery] = {
    "alg none, no signature": unsigned("none"),
    "alg None, genuine signature kept": unsigned("None", keep_signature=True),
    "alg NONE": unsigned("NONE"),
    "alg missing": unsigned(None, keep_signature=True),
    "HS256 keyed with the raw public key": hmac_signed("HS256", lambda g: g.raw_key),
    "HS256 keyed with the published JWK JSON": hmac_signed("HS256", lambda g: json.dumps(g.jwk).encode()),
    "HS256 keyed with the compact JWK JSON": hmac_signed(
        "HS256", lambda g: json.dumps(g.jwk, separators=(",", ":")).encode()
    ),
    "HS256 keyed with the sorted JWK JSON": hmac_signed(
        "HS256", lambda g: json.dumps(g.jwk, sort_keys=True, separators=(",", ":")).encode()
    ),
    "HS384 keyed with the base64url x": hmac_signed("HS384", lambda g: g.jwk["x"].encode()),
    "HS512 keyed with the raw public key": hmac_signed("HS512", lambda g: g.raw_key),
    **{f"kid {name}": stranger(kid=value) for name, value in KIDS.items()},
    "our kid, stranger's signature": stranger(),
    "kid under our DID naming the stranger's thumbprint": stranger(
        kid=lambda g, k: f"{str(g.jwk.get('kid', 'did:web:testserver')).split('#')[0]}#{k.public.thumbprint()}"
    ),
    "header jwk = stranger's key": stranger(jwk=their_jwk),
    "header jwk, kid = stranger's thumbprint": stranger(jwk=their_jwk, kid=lambda g, k: k.public.thumbprint()),
    "header jku": stranger(jku="http://127.0.0.1:9/jwks.json", kid="attacker-key"),
    "header x5u": stranger(x5u="http://127.0.0.1:9/cert.pem"),
    "header x5c": stranger(x5c=[b64url_encode(b"not a certificate")]),
    "crit extension": stranger(crit=["b64"], b64=False),
    "payload tampered under the genuine signature": tampered,
    "genuine signature spliced from another token": spliced,
}


# -- surfaces ----------------------------------------------------------------------------------------------------

Surface = Callable[[httpx.AsyncClient, World, str], Awaitable[None]]


async def as_bearer(client: httpx.AsyncClient, w: World, forged: str) -> None:
    response = await client.get("/api/v1/agents", headers=bearer(forged))
    assert_error(response, 401, "invalid_token", "bearer")


async def introspected(client: httpx.AsyncClient, w: World, forged: str) -> None:
    # The caller (root A, tokens.introspect) could see the genuine token: only the signature protects it.
    response = await client.post(INTROSPECT, data={"token": forged}, headers=bearer(w.a_token))
    assert response.status_code == 200 and response.json() == {"active": False}, response.text


async def revoked(client: httpx.AsyncClient, w: World, forged: str) -> None:
    # The caller (root A) may revoke the genuine token: only the signature check keeps it alive.
    response = await client.post(REVOKE, data={"token": forged}, headers=bearer(w.a_token))
    assert response.status_code == 200, response.text


async def as_assertion(client: httpx.AsyncClient, w: World, forged: str) -> None:
    response = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": forged})
    assert_error(response, 400, "invalid_grant", "assertion")


async def as_subject(client: httpx.AsyncClient, w: World, forged: str) -> None:
    response = await client.post(TOKEN, data=exchange_data(forged, w.child_token))
    assert_error(response, 400, "invalid_grant", "subject_token")


async def as_actor(client: httpx.AsyncClient, w: World, forged: str) -> None:
    response = await client.post(TOKEN, data=exchange_data(w.delegation["credential"], forged))
    assert_error(response, 400, "invalid_grant", "actor_token")


def issuer_jwk(services: Services, token: str) -> dict[str, str]:
    kid = decode(token)[0]["kid"]
    return next(k for k in services.jwks()["keys"] if k["kid"] == kid)


def genuine_tokens(services: Services, w: World) -> dict[str, tuple[Surface, Genuine]]:
    """Each surface with the genuine token an attacker would start from."""
    other = w.b_token.split(".")[2]  # a genuine issuer signature over another token
    agent_key = KeyPair.from_jwk(w.a["private_key_jwk"]).public

    def of_issuer(token: str) -> Genuine:
        return Genuine(token, issuer_jwk(services, token), other)

    assertion = assertion_for(w.a)
    return {
        "bearer": (as_bearer, of_issuer(w.a_token)),
        "introspect": (introspected, of_issuer(w.child_token)),
        "revoke": (revoked, of_issuer(w.child_token)),
        "jwt-bearer assertion": (as_assertion, Genuine(assertion, agent_key.jwk(), assertion_for(w.a).split(".")[2])),
        "subject_token": (as_subject, of_issuer(w.delegation["credential"])),
        "actor_token": (as_actor, of_issuer(w.child_token)),
    }


async def test_genuine_tokens_pass_every_surface(client: httpx.AsyncClient, services: Services, world: World) -> None:
    """The control: the unforged starting points are accepted, so each refusal below is about the forgery."""
    surfaces = genuine_tokens(services, world)
    assert (await client.get("/api/v1/agents", headers=bearer(surfaces["bearer"][1].token))).status_code == 200
    seen = await client.post(INTROSPECT, data={"token": world.child_token}, headers=bearer(world.a_token))
    assert seen.json()["active"] is True
    granted = await client.post(
        TOKEN, data={"grant_type": JWT_BEARER, "assertion": surfaces["jwt-bearer assertion"][1].token}
    )
    assert granted.status_code == 200, granted.text
    data = exchange_data(world.delegation["credential"], world.child_token)
    assert (await client.post(TOKEN, data=data)).status_code == 200
    assert (
        await client.post(REVOKE, data={"token": world.child_token}, headers=bearer(world.a_token))
    ).status_code == 200
    assert (await client.get("/api/v1/agents", headers=bearer(world.child_token))).status_code == 401
    for _, genuine in surfaces.values():
        assert PublicKey.from_jwk(genuine.jwk).raw == genuine.raw_key


@pytest.mark.parametrize("forgery", list(FORGERIES), ids=list(FORGERIES))
async def test_forged_token_is_refused_everywhere(
    client: httpx.AsyncClient, services: Services, world: World, forgery: str
) -> None:
    attacker = KeyPair.generate()
    surfaces = genuine_tokens(services, world)
    before = await snapshot(services)
    for name, (surface, genuine) in surfaces.items():
        forged = FORGERIES[forgery](genuine, attacker)
        assert forged != genuine.token
        try:
            await surface(client, world, forged)
        except AssertionError as exc:
            raise AssertionError(f"{forgery} on {name}: {exc}") from exc
    await assert_unchanged(services, before, f"by '{forgery}'")
    assert (await client.get("/api/v1/agents", headers=bearer(world.child_token))).status_code == 200


def test_catalogue_size() -> None:
    assert len(FORGERIES) >= 35
