"""Revocation registry over HTTP and RFC 7009 revocation (issue 4: status lists, revocation, forged tokens).

Status bits are read with the independent decoder in ``lifecycle_support``, never with ``agentauth.vc``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lifecycle_support import (
    INACTIVE,
    REVOKE,
    audit_targets,
    b64url_encode,
    bit,
    client_token,
    decode_bits,
    fetch_list,
    introspect,
    jwt_header,
    jwt_payload,
    revoke,
    set_bits,
    status_bits,
    status_slot,
)

from agentauth.api.app import create_app
from agentauth.bootstrap import Services, build_services
from agentauth.vc import StaticStatusLists, VerificationError, Verifier
from support import ISSUER_URL, bearer, quickstart, reset_postgres, status_entry

pytestmark = pytest.mark.anyio


# -- the status list over HTTP ----------------------------------------------------------------------------


async def test_revoked_bit_is_set_and_neighbours_are_not(client: httpx.AsyncClient) -> None:
    agent = await quickstart(client, "lister")
    tokens = [(await client_token(client, agent["api_key"]))["access_token"] for _ in range(5)]
    victim = tokens[2]
    path, index = status_slot(victim)
    assert all(status_slot(t)[0] == path for t in tokens), "fresh tokens of one process share a list"
    assert len({status_slot(t)[1] for t in tokens}) == 5

    assert await status_bits(client, *tokens) == [0, 0, 0, 0, 0]
    await revoke(client, agent["access_token"], victim)

    published = await fetch_list(client, path)
    bits = decode_bits(published.text)
    assert len(bits) * 8 >= 131_072
    assert bit(bits, index) == 1
    neighbours = [*tokens[:2], *tokens[3:], agent["access_token"], agent["identity_credential"]]
    assert [bit(bits, status_slot(t)[1]) for t in neighbours] == [0] * len(neighbours)
    # Nothing else is set: the list carries exactly the one revocation.
    assert set_bits(bits) == {index}


async def test_status_list_response_headers_and_conditional_get(client: httpx.AsyncClient) -> None:
    agent = await quickstart(client, "headers")
    path, _ = status_slot(agent["access_token"])
    first = await client.get(path)  # public: no Authorization header
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/vc+jwt"
    cache_control = [d.strip() for d in first.headers["cache-control"].split(",")]
    assert "max-age=300" in cache_control and "public" in cache_control
    assert jwt_payload(first.text)["vc"]["credentialSubject"]["ttl"] == 300_000  # section 2.2: milliseconds
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2

    not_modified = await client.get(path, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag

    await revoke(client, agent["access_token"], agent["access_token"])
    changed = await client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert (await client.get("/api/v1/status-lists/999999")).status_code == 404


async def test_cache_control_follows_configured_ttl(settings_factory: Any, backend: str) -> None:
    if backend == "postgres":
        await reset_postgres()
    services = await build_services(settings_factory(status_list_ttl_seconds=120))
    app = create_app(services=services)
    app.state.services = services
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER_URL) as http:
            agent = await quickstart(http, "ttl")
            response = await fetch_list(http, status_slot(agent["access_token"])[0])
    finally:
        await services.close()
    assert "max-age=120" in response.headers["cache-control"]
    assert jwt_payload(response.text)["vc"]["credentialSubject"]["ttl"] == 120_000


async def test_published_list_verifies_offline_with_the_jwks(client: httpx.AsyncClient) -> None:
    agent = await quickstart(client, "offline")
    keep = (await client_token(client, agent["api_key"]))["access_token"]
    await revoke(client, agent["access_token"], agent["access_token"])
    url = status_entry(jwt_payload(keep)["vc"])["statusListCredential"]
    published = await fetch_list(client, status_slot(keep)[0])
    jwks = (await client.get("/.well-known/jwks.json")).json()

    twin = (await fetch_list(client, status_slot(keep)[0] + "/suspension")).text
    lists = StaticStatusLists({url: published.text, url + "/suspension": twin})
    verifier = Verifier(issuer_url=ISSUER_URL, jwks=jwks, status_source=lists)
    assert verifier.verify_access_token(keep, audience=ISSUER_URL).claims["jti"] == jwt_payload(keep)["jti"]
    with pytest.raises(VerificationError) as revoked:
        verifier.verify_access_token(agent["access_token"], audience=ISSUER_URL)
    assert revoked.value.code == "revoked"
    # The same list, judged by a verifier that trusts a stranger's keys, does not verify.
    stranger = {"keys": [{**jwks["keys"][0], "x": b64url_encode(bytes(32))}]}
    with pytest.raises(VerificationError):
        Verifier(issuer_url=ISSUER_URL, jwks=stranger, check_status=False).verify_signature(published.text)


async def test_list_is_rebuilt_only_when_a_bit_changed(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await quickstart(client, "rebuild")
    spare = (await client_token(client, agent["api_key"]))["access_token"]
    path, _ = status_slot(spare)
    signed: list[str] = []
    sign = services.issuer.issue_status_list_credential

    def counting(**kwargs: Any) -> str:
        signed.append(kwargs["list_url"])
        return sign(**kwargs)

    monkeypatch.setattr(services.issuer, "issue_status_list_credential", counting)
    real_clock = services.status._clock
    first = (await fetch_list(client, path)).text
    # Time moves on (a rebuild would carry a later iat), but no bit changes: within half a ttl (300 s) the very
    # same JWT comes back. (After half a ttl it is re-signed: test_attack_stale_status.py.)
    monkeypatch.setattr(services.status, "_clock", lambda: real_clock() + timedelta(minutes=2))
    second = (await fetch_list(client, path)).text
    assert second == first and len(signed) <= 1

    before = len(signed)
    await revoke(client, agent["access_token"], spare)
    third = (await fetch_list(client, path)).text
    fourth = (await fetch_list(client, path)).text
    assert third != first and fourth == third and len(signed) == before + 1
    assert jwt_payload(third)["iat"] > jwt_payload(first)["iat"]


# -- forged revocation ------------------------------------------------------------------------------------


def hs256(claims: dict[str, Any], header: dict[str, Any], key: bytes) -> str:
    """An HS256 JWS built by hand (PyJWT refuses key material that looks like a public key, which is the point)."""
    segments = [b64url_encode(json.dumps(part).encode()) for part in ({**header, "alg": "HS256"}, claims)]
    signing_input = ".".join(segments).encode()
    return ".".join([*segments, b64url_encode(hmac.new(key, signing_input, hashlib.sha256).digest())])


def forgeries(victim: str, jwks: dict[str, Any]) -> dict[str, str]:
    """Tokens carrying the victim's claims (so its ``jti``) that this issuer never signed."""
    claims = jwt_payload(victim)
    header = {"typ": "at+jwt", "kid": jwt_header(victim)["kid"]}
    issuer_jwk = jwks["keys"][0]
    stranger = Ed25519PrivateKey.generate()
    return {
        "hs256-any-secret": pyjwt.encode(claims, "not-the-issuer-secret-0123456789abc", "HS256", headers=header),
        # Algorithm confusion: HMAC keyed with the issuer's *public* key material.
        "hs256-public-jwk-json": hs256(claims, header, json.dumps(issuer_jwk).encode()),
        "hs256-public-jwk-json-compact": hs256(claims, header, json.dumps(issuer_jwk, separators=(",", ":")).encode()),
        "hs256-public-key-x": hs256(claims, header, issuer_jwk["x"].encode()),
        "eddsa-stranger-same-kid": pyjwt.encode(claims, stranger, "EdDSA", headers=header),
        "eddsa-stranger-own-kid": pyjwt.encode(claims, stranger, "EdDSA", headers={"typ": "at+jwt", "kid": "x#y"}),
        "alg-none": pyjwt.encode(claims, None, "none", headers=header),
    }


async def test_forged_tokens_naming_a_victim_jti_revoke_nothing(client: httpx.AsyncClient) -> None:
    victim = await quickstart(client, "victim")
    attacker = await quickstart(client, "attacker")
    jwks = (await client.get("/.well-known/jwks.json")).json()
    forged = forgeries(victim["access_token"], jwks)
    assert all(jwt_payload(f)["jti"] == jwt_payload(victim["access_token"])["jti"] for f in forged.values())
    for name, token in forged.items():
        # From another tenant, and from the victim itself (which *could* revoke the real token): both answer
        # 200, neither revokes anything - the signature decides what a token is, not its claims.
        for caller in (attacker["access_token"], victim["api_key"]):
            await revoke(client, caller, token)
            await revoke(client, caller, token, token_type_hint="access_token")
        state = await introspect(client, victim["api_key"], victim["access_token"])
        assert state["active"] is True, name
    assert (await client.get("/api/v1/agents", headers=bearer(victim["access_token"]))).status_code == 200
    assert await status_bits(client, victim["access_token"]) == [0]
    assert await audit_targets(client, victim["access_token"], "access_credential.revoked") == []


# -- RFC 7009 semantics -----------------------------------------------------------------------------------


async def test_unknown_and_already_revoked_tokens_answer_200(client: httpx.AsyncClient) -> None:
    agent = await quickstart(client, "idempotent")
    caller = (await client_token(client, agent["api_key"]))["access_token"]
    for unknown in ("no-such-token", "a.b.c", "rt_" + "A" * 43, "x" * 5000):
        await revoke(client, caller, unknown)
    target = (await client_token(client, agent["api_key"]))["access_token"]
    for _ in range(3):
        await revoke(client, caller, target)
    assert await introspect(client, caller, target) == INACTIVE
    # Revoking again changes nothing: one audit event, not three.
    assert await audit_targets(client, caller, "access_credential.revoked") == [jwt_payload(target)["jti"]]
    response = await client.post(REVOKE, data={"token": target}, headers=bearer(caller))
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"


async def test_revoking_a_refresh_token_kills_its_family_and_its_access_tokens(client: httpx.AsyncClient) -> None:
    agent = await quickstart(client, "family")
    caller = (await client_token(client, agent["api_key"]))["access_token"]  # another family, must survive
    refreshed = await client.post(
        "/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": agent["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    family = [agent["access_token"], refreshed.json()["access_token"]]
    assert [(await introspect(client, caller, t))["active"] for t in family] == [True, True]

    await revoke(client, caller, refreshed.json()["refresh_token"], token_type_hint="refresh_token")

    for token in [*family, refreshed.json()["refresh_token"], agent["refresh_token"]]:
        assert await introspect(client, caller, token) == INACTIVE
    assert await status_bits(client, *family) == [1, 1]
    assert await status_bits(client, caller) == [0]
    again = await client.post(
        "/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"]}
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert (await client.get("/api/v1/agents", headers=bearer(family[1]))).status_code == 401
    assert (await client.get("/api/v1/agents", headers=bearer(caller))).status_code == 200
    revoked = await audit_targets(client, caller, "access_credential.revoked")
    assert sorted(revoked) == sorted(jwt_payload(t)["jti"] for t in family)


async def test_another_tenants_tokens_are_left_alone(client: httpx.AsyncClient) -> None:
    owner = await quickstart(client, "owner")
    other = await quickstart(client, "other")
    await revoke(client, other["access_token"], owner["access_token"])
    await revoke(client, other["api_key"], owner["access_token"])
    # (Not the refresh token: holding one is enough to revoke it, issue 12 item 18 - tests/api/test_token_pairs.py.)
    assert (await introspect(client, owner["api_key"], owner["access_token"]))["active"] is True
    assert (await introspect(client, owner["api_key"], owner["refresh_token"]))["active"] is True
    assert await status_bits(client, owner["access_token"]) == [0]


async def test_revocation_requires_an_authenticated_caller(client: httpx.AsyncClient) -> None:
    agent = await quickstart(client, "anon")
    for path in (REVOKE, "/api/v1/auth/token/revoke"):
        response = await client.post(path, data={"token": agent["access_token"]})
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"] in ("invalid_token", "invalid_client")
        bad_key = await client.post(path, data={"token": agent["access_token"], "client_secret": "ak_live_" + "x" * 43})
        assert bad_key.status_code == 401 and "www-authenticate" in bad_key.headers
    assert (await introspect(client, agent["api_key"], agent["access_token"]))["active"] is True


@pytest.mark.parametrize("path", [REVOKE, "/api/v1/auth/token/revoke"])
async def test_revoke_with_api_key_client_auth_and_compat_path(client: httpx.AsyncClient, path: str) -> None:
    agent = await quickstart(client, "compat")
    target = (await client_token(client, agent["api_key"]))["access_token"]
    response = await client.post(path, data={"token": target, "client_secret": agent["api_key"]})
    assert response.status_code == 200, response.text
    assert await introspect(client, agent["access_token"], target) == INACTIVE
    assert await status_bits(client, target) == [1]
    # JSON bodies are accepted too (DESIGN.md: form per RFC, JSON also accepted).
    second = (await client_token(client, agent["api_key"]))["access_token"]
    response = await client.post(path, json={"token": second}, headers=bearer(agent["access_token"]))
    assert response.status_code == 200
    assert await status_bits(client, second) == [1]
