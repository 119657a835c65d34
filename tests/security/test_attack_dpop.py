"""DPoP attacks (RFC 9449 sections 4.3, 7, 8, 11; issue 15), through the real app on SQLite and PostgreSQL: forged
and malformed proofs at the token endpoint, proofs that do not fit the request they come with, replays, clock
skew, and a bound token downgraded to a bearer token - on the token endpoint, AgentAuth's own API and the
refresh and token exchange grants. Every attack is refused with its RFC error and changes nothing stored; the
tally at the end of each test is "0 accepted". The replay across two server processes on one PostgreSQL is
``tests/scaleout/test_scaleout.py::test_a_dpop_proof_is_used_once_across_processes``."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey
from security_support import TOKEN, assert_unchanged, segment, sign_ed25519, snapshot

from agentauth import paths
from agentauth.bootstrap import Services
from agentauth.keys import KeyPair, b64url_encode
from agentauth.vc import NonceRegistry, create_proof
from agentauth.vc.dpop import access_token_hash
from support import ISSUER_URL, assert_error, ok, quickstart

pytestmark = pytest.mark.anyio
TOKEN_URL = f"{ISSUER_URL}{paths.TOKEN}"


def claims(htm: str = "POST", htu: str = TOKEN_URL, **extra: Any) -> dict[str, Any]:
    return {"jti": str(uuid.uuid4()), "htm": htm, "htu": htu, "iat": int(time.time())} | extra


def signed(key: OKPKey | ECKey | RSAKey, body: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """A proof signed by ``key`` with joserfc (alg from the key), header members overridable."""
    alg = {"OKP": "Ed25519", "EC": "ES256", "RSA": "RS256"}[key.key_type]
    protected = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)} | (header or {})
    return jws.serialize_compact(protected, json.dumps(body).encode(), key, algorithms=[alg])


def unsigned(header: dict[str, Any], body: dict[str, Any], secret: bytes | None = None) -> str:
    """A compact JWS by hand: no signature (``alg: none``), or an HMAC with ``secret`` (``alg: HS256``)."""
    signing_input = f"{segment(header)}.{segment(body)}"
    mac = b64url_encode(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()) if secret else ""
    return f"{signing_input}.{mac}"


def forged_proofs() -> dict[str, list[str]]:
    """Proofs for the token endpoint that must never pass, by attack; each a list of header values (one request)."""
    ed, ec = OKPKey.generate_key("Ed25519"), ECKey.generate_key("P-256")
    secret = b"s" * 32
    oct_jwk = {"kty": "oct", "k": b64url_encode(secret)}
    return {
        "private jwk (OKP)": [signed(ed, claims(), {"jwk": ed.as_dict(private=True)})],
        "private jwk (EC)": [signed(ec, claims(), {"jwk": ec.as_dict(private=True)})],
        "alg none": [unsigned({"typ": "dpop+jwt", "alg": "none", "jwk": ed.as_dict(private=False)}, claims())],
        "HS256 with an oct jwk": [unsigned({"typ": "dpop+jwt", "alg": "HS256", "jwk": oct_jwk}, claims(), secret)],
        "HS256 keyed with the public key": [
            unsigned(
                {"typ": "dpop+jwt", "alg": "HS256", "jwk": ed.as_dict(private=False)},
                claims(),
                str(ed.as_dict(private=False)["x"]).encode(),
            )
        ],
        "RS256 (not on the allow-list)": [signed(RSAKey.generate_key(2048), claims())],
        "typ JWT": [signed(ed, claims(), {"typ": "JWT"})],
        "jwk of another key": [signed(ed, claims(), {"jwk": OKPKey.generate_key("Ed25519").as_dict(private=False)})],
        "htm GET": [signed(ed, claims(htm="GET"))],
        "htu of another server": [signed(ed, claims(htu="https://evil.example/api/v1/auth/token"))],
        "htu with a query": [signed(ed, claims(htu=f"{TOKEN_URL}?grant_type=client_credentials"))],
        "htu with a fragment": [signed(ed, claims(htu=f"{TOKEN_URL}#x"))],
        "htu with an empty query": [signed(ed, claims(htu=f"{TOKEN_URL}?"))],
        "htu of another path": [signed(ed, claims(htu=f"{ISSUER_URL}{paths.INTROSPECT}"))],
        "iat 2 minutes old (clock skew)": [signed(ed, claims(iat=int(time.time()) - 120))],
        "iat 2 minutes ahead (clock skew)": [signed(ed, claims(iat=int(time.time()) + 120))],
        "iat as a string": [signed(ed, claims(iat=str(int(time.time()))))],
        "no jti": [signed(ed, {k: v for k, v in claims().items() if k != "jti"})],
        "two DPoP headers": [signed(ed, claims()), signed(ed, claims())],
        "not a JWS": ["not.a-proof"],
    }


async def test_forged_proofs_at_the_token_endpoint_issue_nothing(client: httpx.AsyncClient, services: Services) -> None:
    made = await quickstart(client, "victim")
    form = {"grant_type": "client_credentials", "client_secret": made["api_key"]}
    before = await snapshot(services)
    accepted = []
    for attack, proofs in forged_proofs().items():
        response = await client.post(TOKEN, data=form, headers=[("DPoP", p) for p in proofs])
        if response.status_code < 400:
            accepted.append(attack)
            continue
        assert_error(response, 400, "invalid_dpop_proof", attack)
    await assert_unchanged(services, before, "by a refused proof")
    assert accepted == [], f"accepted: {accepted}"


async def test_a_proof_is_used_once_even_by_a_replica_that_never_saw_it(
    client: httpx.AsyncClient, services: Services
) -> None:
    made = await quickstart(client, "replayed")
    key = KeyPair.from_jwk(made["private_key_jwk"])
    form = {"grant_type": "client_credentials", "client_secret": made["api_key"]}
    proof = create_proof(key, "POST", TOKEN_URL)
    assert ok(await client.post(TOKEN, data=form, headers={"DPoP": proof}))["token_type"] == "DPoP"
    before = await snapshot(services)
    accepted = 0
    for replica_forgot in (False, True):
        if replica_forgot:
            services.tokens.proofs._local = NonceRegistry()  # only the database remembers the proof now
        replay = await client.post(TOKEN, data=form, headers={"DPoP": proof})
        accepted += replay.status_code < 400
        assert_error(replay, 400, "invalid_dpop_proof")
    await assert_unchanged(services, before, "by a replayed proof")
    assert accepted == 0


async def test_a_bound_token_is_useless_without_its_key(client: httpx.AsyncClient, services: Services) -> None:
    """The token copied from a log: as a bearer token (downgrade), with the thief's own proof, with a proof that
    does not fit the request, replayed, skewed; on our own API, at refresh and at token exchange."""
    made = await quickstart(client, "holder")
    key = KeyPair.from_jwk(made["private_key_jwk"])
    form = {"grant_type": "client_credentials", "client_secret": made["api_key"]}
    tokens = ok(await client.post(TOKEN, data=form, headers={"DPoP": create_proof(key, "POST", TOKEN_URL)}))
    token = tokens["access_token"]
    me_path = f"{paths.API_V1}/agents/{made['agent']['id']}"
    me = f"{ISSUER_URL}{me_path}"
    thief = OKPKey.generate_key("Ed25519")
    good = create_proof(key, "GET", me, access_token=token)
    assert ok(await client.get(me_path, headers={"Authorization": f"DPoP {token}", "DPoP": good}))
    ath = access_token_hash(token)

    def ed(body: dict[str, Any]) -> str:
        """A proof by the agent's key with these claims (the right key, the wrong request)."""
        return sign_ed25519({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": key.public.jwk()}, body, key)

    # (attack, Authorization scheme, DPoP header values, expected error)
    attacks: list[tuple[str, str, list[str], str]] = [
        ("downgrade to Bearer", "Bearer", [], "invalid_token"),
        ("downgrade to Bearer, proof alongside", "Bearer", [create_proof(key, "GET", me, access_token=token)],
         "invalid_token"),
        ("DPoP scheme without a proof", "DPoP", [], "invalid_dpop_proof"),
        ("the thief's own proof", "DPoP", [signed(thief, claims("GET", me, ath=ath))], "invalid_token"),
        ("replayed proof", "DPoP", [good], "invalid_dpop_proof"),
        ("no ath", "DPoP", [ed(claims("GET", me))], "invalid_dpop_proof"),
        ("ath of another token", "DPoP", [ed(claims("GET", me, ath=access_token_hash(token + "x")))],
         "invalid_dpop_proof"),
        ("htm POST", "DPoP", [ed(claims("POST", me, ath=ath))], "invalid_dpop_proof"),
        ("htu of another route", "DPoP", [ed(claims("GET", f"{ISSUER_URL}{paths.API_V1}/agents", ath=ath))],
         "invalid_dpop_proof"),
        ("htu with a query", "DPoP", [ed(claims("GET", f"{me}?x=1", ath=ath))], "invalid_dpop_proof"),
        ("iat 2 minutes old", "DPoP", [ed(claims("GET", me, ath=ath, iat=int(time.time()) - 120))],
         "invalid_dpop_proof"),
        ("iat 2 minutes ahead", "DPoP", [ed(claims("GET", me, ath=ath, iat=int(time.time()) + 120))],
         "invalid_dpop_proof"),
    ]  # fmt: skip
    accepted = []
    for attack, scheme, proofs, error in attacks:
        headers = [("Authorization", f"{scheme} {token}"), *(("DPoP", p) for p in proofs)]
        response = await client.get(me_path, headers=headers)
        if response.status_code < 400:
            accepted.append(attack)
            continue
        assert_error(response, 401, error, attack)
        assert response.headers["WWW-Authenticate"].startswith(f"{scheme} "), attack

    before = await snapshot(services)
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    grants = [
        ("refresh without a proof", refresh, [], "invalid_dpop_proof"),
        ("refresh with the thief's proof", refresh, [signed(thief, claims())], "invalid_grant"),
        ("bound actor_token without a proof", {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": "x",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "actor_token": token,
            "actor_token_type": "urn:ietf:params:oauth:token-type:access_token"}, [], "invalid_grant"),
        ("bound actor_token with the thief's proof", {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": "x",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "actor_token": token,
            "actor_token_type": "urn:ietf:params:oauth:token-type:access_token"}, [signed(thief, claims())],
         "invalid_grant"),
    ]  # fmt: skip
    for attack, data, proofs, error in grants:
        response = await client.post(TOKEN, data=data, headers=[("DPoP", p) for p in proofs])
        if response.status_code < 400:
            accepted.append(attack)
            continue
        assert_error(response, 400, error, attack)
    await assert_unchanged(services, before, "by a refused grant")
    assert accepted == [], f"accepted: {accepted}"
