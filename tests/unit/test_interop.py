"""Interoperability: what ``vc/`` signs verifies with PyJWT and joserfc, and what they sign verifies with us.

DESIGN.md "Credential profile": VCDM 1.1 JWT encoding "because that is what third-party VC libraries verify
today". PyJWT checks ``exp``/``nbf``/``iat`` against the wall clock, so the PyJWT tests issue at the real time;
joserfc's claims registry takes ``now``, so those run at the fixed ``NOW``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from joserfc import jwk as jose_jwk
from joserfc import jwt as jose_jwt
from joserfc.errors import InvalidClaimError, SecurityWarning
from vc_support import AUDIENCE, ISSUER_DID, ISSUER_URL, NOW, Agent, Env, split

from agentauth.vc import DELEGATION_CREDENTIAL, IDENTITY_CREDENTIAL


@pytest.fixture
def live_env(make_env: Callable[[datetime], Env]) -> Env:
    return make_env(datetime.now(UTC).replace(microsecond=0))


def jwks_entry(env: Env, token: str) -> dict[str, Any]:
    kid = split(token)[0]["kid"]
    return next(key for key in env.ring.jwks()["keys"] if key["kid"] == kid)


@pytest.fixture
def no_eddsa_warning() -> Iterator[None]:
    # joserfc marks "EdDSA" deprecated (RFC 9864) with a SecurityWarning; pytest turns warnings into errors.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SecurityWarning)
        yield


# -- PyJWT verifies ours --------------------------------------------------------------------------------


def test_pyjwt_verifies_an_access_token(live_env: Env, agent: Agent) -> None:
    token, claims = live_env.access_token(agent, scopes=["read"])
    key = jwt.PyJWK(jwks_entry(live_env, token)).key

    decoded = jwt.decode(token, key=key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER_URL)

    assert decoded == claims
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"


def test_pyjwt_rejects_our_access_token_for_another_audience(live_env: Env, agent: Agent) -> None:
    token, _ = live_env.access_token(agent)
    key = jwt.PyJWK(jwks_entry(live_env, token)).key

    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, key=key, algorithms=["EdDSA"], audience="https://other.example", issuer=ISSUER_URL)


def test_pyjwt_verifies_an_identity_credential_with_the_jwks_set(live_env: Env, agent: Agent) -> None:
    credential, claims = live_env.identity(agent)
    key_set = jwt.PyJWKSet.from_dict(live_env.ring.jwks())

    decoded = jwt.decode(
        credential,
        key=key_set[split(credential)[0]["kid"]].key,
        algorithms=["EdDSA"],
        issuer=ISSUER_DID,
        options={"verify_aud": False, "require": ["iss", "sub", "exp", "nbf", "iat", "jti"]},
    )

    assert decoded == claims
    assert decoded["vc"]["type"] == ["VerifiableCredential", IDENTITY_CREDENTIAL]
    assert decoded["vc"]["@context"][0] == "https://www.w3.org/2018/credentials/v1"


def test_pyjwt_verifies_a_delegated_token_and_every_link(live_env: Env) -> None:
    chain = live_env.chain(2)
    token, _ = live_env.delegated_token(chain)
    key = jwt.PyJWK(jwks_entry(live_env, token)).key

    decoded = jwt.decode(token, key=key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER_URL)
    links = [
        jwt.decode(link, key=key, algorithms=["EdDSA"], issuer=ISSUER_DID, options={"verify_aud": False})
        for link in decoded["delegation_chain"]
    ]

    assert [link["sub"] for link in links] == [agent.did for agent in chain.agents[1:]]
    assert all(DELEGATION_CREDENTIAL in link["vc"]["type"] for link in links)


# -- joserfc verifies ours ------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_eddsa_warning")
def test_joserfc_verifies_an_access_token(env: Env, agent: Agent) -> None:
    token, claims = env.access_token(agent, scopes=["read", "write"])
    key = jose_jwk.OKPKey.import_key(jwks_entry(env, token))

    decoded = jose_jwt.decode(token, key, algorithms=["EdDSA"])
    registry = jose_jwt.JWTClaimsRegistry(
        now=int(NOW.timestamp()),
        iss={"essential": True, "value": ISSUER_URL},
        aud={"essential": True, "value": AUDIENCE},
        sub={"essential": True, "value": agent.did},
    )
    registry.validate(decoded.claims)

    assert decoded.claims == claims
    assert decoded.header == {"alg": "EdDSA", "typ": "at+jwt", "kid": env.ring.active.kid}


@pytest.mark.usefixtures("no_eddsa_warning")
def test_joserfc_claims_check_rejects_another_audience(env: Env, agent: Agent) -> None:
    token, _ = env.access_token(agent)
    decoded = jose_jwt.decode(token, jose_jwk.OKPKey.import_key(jwks_entry(env, token)), algorithms=["EdDSA"])
    registry = jose_jwt.JWTClaimsRegistry(now=int(NOW.timestamp()), aud={"essential": True, "value": "other"})

    with pytest.raises(InvalidClaimError):
        registry.validate(decoded.claims)


@pytest.mark.usefixtures("no_eddsa_warning")
def test_joserfc_verifies_an_identity_credential(env: Env, agent: Agent) -> None:
    credential, claims = env.identity(agent)
    key = jose_jwk.OKPKey.import_key(jwks_entry(env, credential))

    decoded = jose_jwt.decode(credential, key, algorithms=["EdDSA"])
    jose_jwt.JWTClaimsRegistry(now=int(NOW.timestamp()), iss={"essential": True, "value": ISSUER_DID}).validate(
        decoded.claims
    )

    assert decoded.claims == claims


def test_joserfc_warns_about_eddsa_deprecation(env: Env, agent: Agent) -> None:
    # Documents why the fixture above exists; if joserfc stops warning, drop the fixture.
    token, _ = env.access_token(agent)

    with pytest.warns(SecurityWarning, match="EdDSA"):
        jose_jwt.decode(token, jose_jwk.OKPKey.import_key(jwks_entry(env, token)), algorithms=["EdDSA"])


# -- we verify theirs -----------------------------------------------------------------------------------


def test_we_verify_an_access_token_signed_by_pyjwt(env: Env, agent: Agent) -> None:
    _, claims = env.access_token(agent, scopes=["read"])
    private = jwt.PyJWK(env.ring.active.pair.private_jwk(), algorithm="EdDSA").key
    token = jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": env.ring.active.kid, "typ": "at+jwt"})

    verified = env.verifier().verify_access_token(token, audience=AUDIENCE)

    assert verified.claims == claims
    assert verified.kid == env.ring.active.kid


def test_we_verify_an_identity_credential_signed_by_pyjwt(env: Env, agent: Agent) -> None:
    _, claims = env.identity(agent)
    private = jwt.PyJWK(env.ring.active.pair.private_jwk(), algorithm="EdDSA").key
    credential = jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": env.ring.active.kid})

    assert split(credential)[0]["typ"] == "JWT"  # PyJWT's default typ is the VCDM 1.1 one
    assert env.verifier().verify_credential(credential, expected_type=IDENTITY_CREDENTIAL) == claims


@pytest.mark.parametrize("alg", ["EdDSA", "Ed25519"])
def test_we_verify_a_token_signed_by_joserfc(env: Env, agent: Agent, alg: str) -> None:
    _, claims = env.access_token(agent)
    key = jose_jwk.OKPKey.import_key(env.ring.active.pair.private_jwk())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SecurityWarning)
        token = jose_jwt.encode(
            {"alg": alg, "typ": "at+jwt", "kid": env.ring.active.kid}, claims, key, algorithms=[alg]
        )

    assert split(token)[0]["alg"] == alg
    assert env.verifier().verify_access_token(token, audience=AUDIENCE).claims == claims
