"""Offline verification of access tokens and credentials (DESIGN.md "Verification (offline)").

Every negative test asserts the exact ``VerificationError.code``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from vc_support import AUDIENCE, ISSUER_URL, LIST_URL, NOW, TOKEN_LIFETIME, Agent, Env, forge, segment, split

from agentauth.did import issuer_did_document
from agentauth.keys import KeyPair, b64url_encode
from agentauth.vc import (
    DELEGATION_CREDENTIAL,
    IDENTITY_CREDENTIAL,
    STATUS_LIST_CREDENTIAL,
    CredentialIssuer,
    StatusList,
    VerificationError,
    Verifier,
)
from agentauth.vc import errors as e


def code_of(call: object, *args: object, **kwargs: object) -> str:
    assert callable(call)
    with pytest.raises(VerificationError) as info:
        call(*args, **kwargs)
    return info.value.code


# -- happy paths ----------------------------------------------------------------------------------------


def test_access_token_verifies_with_audience(env: Env, verifier: Verifier, agent: Agent) -> None:
    token, claims = env.access_token(agent, scopes=["read", "write"])

    verified = verifier.verify_access_token(token, audience=AUDIENCE)

    assert verified.claims == claims
    assert verified.subject == agent.did
    assert verified.scopes == {"read", "write"}
    assert verified.kid == env.ring.active.kid
    assert verified.chain == ()


def test_identity_credential_verifies(env: Env, verifier: Verifier, agent: Agent) -> None:
    credential, _ = env.identity(agent)

    claims = verifier.verify_credential(credential, expected_type=IDENTITY_CREDENTIAL)

    assert claims["iss"] == env.ring.issuer_did
    assert claims["sub"] == agent.did
    assert claims["vc"]["credentialSubject"]["agentId"] == "agent-1"
    assert claims["vc"]["credentialSubject"]["trustLevel"] == "verified"


def test_depth_3_delegated_token_verifies_with_its_chain(env: Env, verifier: Verifier) -> None:
    chain = env.chain(3)
    token, _ = env.delegated_token(chain, scopes=["read"])
    root, a1, a2, a3 = chain.agents

    verified = verifier.verify_access_token(token, audience=AUDIENCE)

    assert verified.subject == root.did
    # RFC 8693 section 4.1: the current actor outermost, prior actors nested inside.
    assert verified.claims["act"] == {"sub": a3.did, "act": {"sub": a2.did, "act": {"sub": a1.did}}}
    assert len(verified.chain) == 3
    assert [link.delegate for link in verified.chain] == [a1.did, a2.did, a3.did]
    assert [link.remaining_depth for link in verified.chain] == [2, 1, 0]
    assert verified.chain[0].parent_id is None
    assert verified.chain[2].parent_id == verified.chain[1].id


def test_verifies_with_the_issuer_did_document_as_trust_anchor(env: Env, agent: Agent) -> None:
    document = issuer_did_document(env.ring.issuer_did, env.ring.jwks()["keys"])
    verifier = Verifier(issuer_url=ISSUER_URL, did_document=document, status_source=env.source, clock=lambda: NOW)
    token, _ = env.access_token(agent)
    credential, _ = env.identity(agent)

    assert verifier.issuer_did == env.ring.issuer_did
    assert verifier.kids == {key.kid for key in env.ring.keys}
    assert verifier.verify_access_token(token, audience=AUDIENCE).subject == agent.did
    assert verifier.verify_credential(credential, expected_type=IDENTITY_CREDENTIAL)["sub"] == agent.did


def test_tokens_signed_after_a_rotation_verify_with_the_jwks_fetched_before(env: Env, agent: Agent) -> None:
    before = env.ring
    verifier = env.verifier()  # holds the JWKS published before the rotation: active + next
    env.issuer.use_ring(before.rotate(NOW, retain_for=TOKEN_LIFETIME))
    token, _ = env.access_token(agent)

    assert before.next is not None
    assert split(token)[0]["kid"] == before.next.kid
    assert verifier.verify_access_token(token).kid == before.next.kid


# -- algorithm and key confusion ------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "", None])
def test_unsigned_token_is_rejected_for_its_alg_before_anything_else(env: Env, verifier: Verifier, alg: object) -> None:
    _, claims = env.access_token(Agent.generate())
    header = {"typ": "at+jwt", "kid": env.ring.active.kid} | ({"alg": alg} if alg is not None else {})
    token = forge(header, claims, key=None)  # empty signature segment: "header.payload."

    assert token.endswith(".")
    assert code_of(verifier.verify_access_token, token) == e.UNSUPPORTED_ALG


@pytest.mark.parametrize("secret_kind", ["raw-public-key", "public-jwk-json"])
def test_hs256_signed_with_the_public_key_is_rejected(env: Env, verifier: Verifier, secret_kind: str) -> None:
    _, claims = env.access_token(Agent.generate())
    public = env.ring.active.pair.public
    secret = public.raw if secret_kind == "raw-public-key" else json.dumps(env.ring.jwks()["keys"][0]).encode()
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'at+jwt', 'kid': env.ring.active.kid})}.{segment(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()

    assert code_of(verifier.verify_access_token, f"{signing_input}.{b64url_encode(mac)}") == e.UNSUPPORTED_ALG


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "EdDSA ", "eddsa"])
def test_algorithms_outside_the_allow_list_are_rejected(env: Env, verifier: Verifier, alg: str) -> None:
    _, claims = env.access_token(Agent.generate())
    token = forge({"alg": alg, "typ": "at+jwt", "kid": env.ring.active.kid}, claims, env.ring.active.pair)

    assert code_of(verifier.verify_access_token, token) == e.UNSUPPORTED_ALG


@pytest.mark.parametrize("kid", ["did:web:localhost%3A8000#unknown", "", None])
def test_unknown_or_missing_kid(env: Env, verifier: Verifier, kid: str | None) -> None:
    _, claims = env.access_token(Agent.generate())
    header = {"alg": "EdDSA", "typ": "at+jwt"} | ({"kid": kid} if kid is not None else {})

    assert code_of(verifier.verify_access_token, forge(header, claims, KeyPair.generate())) == e.UNKNOWN_KID


def test_foreign_key_claiming_a_trusted_kid_fails_the_signature(env: Env, verifier: Verifier) -> None:
    _, claims = env.access_token(Agent.generate())
    token = forge({"alg": "EdDSA", "typ": "at+jwt", "kid": env.ring.active.kid}, claims, KeyPair.generate())

    assert code_of(verifier.verify_access_token, token) == e.INVALID_SIGNATURE


@pytest.mark.parametrize("param", ["jwk", "jku", "x5u", "x5c", "crit"])
def test_header_supplied_keys_are_not_trusted(env: Env, verifier: Verifier, param: str) -> None:
    attacker = KeyPair.generate()
    _, claims = env.access_token(Agent.generate())
    value = {"jwk": attacker.public.jwk(), "jku": "https://evil.example/jwks", "x5u": "https://evil.example/c"}
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": env.ring.active.kid, param: value.get(param, ["b64"])}

    assert code_of(verifier.verify_access_token, forge(header, claims, attacker)) == e.UNTRUSTED_KEY


def test_tampered_payload_fails_the_signature(env: Env, verifier: Verifier) -> None:
    token, claims = env.access_token(Agent.generate(), scopes=["read"])
    header, _, signature = token.split(".")
    tampered = f"{header}.{segment(claims | {'scope': 'read admin'})}.{signature}"

    assert code_of(verifier.verify_access_token, tampered) == e.INVALID_SIGNATURE


# -- time claims ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("after_exp", [timedelta(seconds=30), timedelta(hours=1)])
def test_expired_token(env: Env, verifier: Verifier, after_exp: timedelta) -> None:
    token, _ = env.access_token(Agent.generate())

    assert code_of(verifier.verify_access_token, token, now=NOW + TOKEN_LIFETIME + after_exp) == e.EXPIRED


def test_expiry_within_the_leeway_is_accepted(env: Env, verifier: Verifier) -> None:
    token, _ = env.access_token(Agent.generate())
    env.now = NOW + TOKEN_LIFETIME + timedelta(seconds=29)
    env.publish()  # the issuer keeps its status list fresh (a list older than its ttl is stale)

    assert verifier.verify_access_token(token, now=env.now).claims


def test_nbf_beyond_the_leeway_is_not_yet_valid(env: Env, verifier: Verifier) -> None:
    token, _ = env.access_token(Agent.generate(), issued_at=NOW + timedelta(seconds=31))

    assert code_of(verifier.verify_access_token, token) == e.NOT_YET_VALID


def test_nbf_within_the_leeway_is_accepted(env: Env, verifier: Verifier, agent: Agent) -> None:
    token, _ = env.access_token(agent, issued_at=NOW + timedelta(seconds=20))

    assert verifier.verify_access_token(token).subject == agent.did


# -- issuer, audience, type confusion -------------------------------------------------------------------


def test_wrong_audience(env: Env, verifier: Verifier) -> None:
    token, _ = env.access_token(Agent.generate())

    assert code_of(verifier.verify_access_token, token, audience="https://other.example") == e.INVALID_AUDIENCE


def test_wrong_issuer(env: Env, verifier: Verifier) -> None:
    impostor = CredentialIssuer("http://evil.example", env.ring)  # same keys, other issuer name
    token, _ = env.access_token(Agent.generate(), issuer=impostor)

    assert code_of(verifier.verify_access_token, token) == e.INVALID_ISSUER


def test_delegation_credential_is_not_an_access_token(env: Env, verifier: Verifier) -> None:
    delegation, _ = env.chain(1).links[0]

    assert code_of(verifier.verify_access_token, delegation) == e.INVALID_TYP


def test_identity_credential_is_not_an_access_token(env: Env, verifier: Verifier, agent: Agent) -> None:
    assert code_of(verifier.verify_access_token, env.identity(agent)[0]) == e.INVALID_TYP


@pytest.mark.parametrize("expected", [IDENTITY_CREDENTIAL, DELEGATION_CREDENTIAL])
def test_access_token_is_not_a_credential(env: Env, verifier: Verifier, expected: str) -> None:
    token, _ = env.access_token(Agent.generate())

    assert code_of(verifier.verify_credential, token, expected_type=expected) == e.INVALID_TYP


def test_identity_credential_is_not_a_delegation(env: Env, verifier: Verifier, agent: Agent) -> None:
    credential, _ = env.identity(agent)

    assert code_of(verifier.verify_credential, credential, expected_type=DELEGATION_CREDENTIAL) == (
        e.WRONG_CREDENTIAL_TYPE
    )


def test_delegation_is_not_a_status_list(env: Env, verifier: Verifier) -> None:
    delegation, _ = env.chain(1).links[0]

    assert code_of(verifier.verify_credential, delegation, expected_type=STATUS_LIST_CREDENTIAL) == (
        e.WRONG_CREDENTIAL_TYPE
    )


# -- status ---------------------------------------------------------------------------------------------


def test_revoked_access_token(env: Env, agent: Agent) -> None:
    token, claims = env.access_token(agent)
    cached = env.verifier()
    assert cached.verify_access_token(token).subject == agent.did  # caches the list with the bit clear

    env.revoke(claims)

    assert code_of(env.verifier().verify_access_token, token) == e.REVOKED
    assert cached.verify_access_token(token).subject == agent.did  # still within the cached list's ttl
    cached.forget_status_lists()
    assert code_of(cached.verify_access_token, token) == e.REVOKED


def test_revoking_one_token_leaves_the_others_valid(env: Env, agent: Agent) -> None:
    revoked, claims = env.access_token(agent)
    kept, _ = env.access_token(agent)
    env.revoke(claims)
    verifier = env.verifier()

    assert code_of(verifier.verify_access_token, revoked) == e.REVOKED
    assert verifier.verify_access_token(kept).subject == agent.did


def test_revoked_identity_credential(env: Env, agent: Agent) -> None:
    credential, claims = env.identity(agent)
    env.revoke(claims)

    assert code_of(env.verifier().verify_credential, credential, expected_type=IDENTITY_CREDENTIAL) == e.REVOKED


def test_no_status_source_means_status_unavailable(env: Env) -> None:
    token, _ = env.access_token(Agent.generate())

    assert code_of(env.verifier(status_source=None).verify_access_token, token) == e.STATUS_UNAVAILABLE


def test_a_source_without_the_list_means_status_unavailable(env: Env) -> None:
    token, _ = env.access_token(Agent.generate())
    env.source = type(env.source)()  # an empty source

    assert code_of(env.verifier().verify_access_token, token) == e.STATUS_UNAVAILABLE


def test_status_list_for_another_url_cannot_be_substituted(env: Env) -> None:
    token, claims = env.access_token(Agent.generate())
    env.revoke(claims)
    env.status_list = StatusList()  # an empty list, validly signed, but for another URL
    env.publish(list_url=f"{ISSUER_URL}/api/v1/status-lists/2", into=LIST_URL)

    assert code_of(env.verifier().verify_access_token, token) == e.MALFORMED


def test_status_list_signed_by_a_foreign_key_is_rejected(env: Env) -> None:
    token, claims = env.access_token(Agent.generate())
    env.revoke(claims)
    _, list_claims = split(env.source.fetch(LIST_URL))
    list_claims["vc"]["credentialSubject"]["encodedList"] = StatusList().encode()
    env.source.put(
        LIST_URL, forge({"alg": "EdDSA", "typ": "JWT", "kid": env.ring.active.kid}, list_claims, KeyPair.generate())
    )

    assert code_of(env.verifier().verify_access_token, token) == e.INVALID_SIGNATURE
