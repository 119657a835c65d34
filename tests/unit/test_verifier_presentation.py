"""Verifiable Presentations signed by the holder's did:key (DESIGN.md "Credential profile", Presentation)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from vc_support import NOW, Agent, Env, forge, split

from agentauth.keys import KeyPair
from agentauth.vc import DELEGATION_CREDENTIAL, IDENTITY_CREDENTIAL, VerificationError, Verifier, create_presentation
from agentauth.vc import errors as e
from agentauth.vc.presentation import holder_kid

VERIFIER_AUD = "https://verifier.example"
NONCE = "n-0S6_WzA2Mj"


def rejected(verifier: Verifier, vp: str, *, audience: str = VERIFIER_AUD, nonce: str = NONCE) -> str:
    with pytest.raises(VerificationError) as info:
        verifier.verify_presentation(vp, audience=audience, nonce=nonce)
    return info.value.code


def present(holder: Agent, credentials: list[str], *, audience: str = VERIFIER_AUD, nonce: str = NONCE) -> str:
    return create_presentation(holder.pair, credentials, audience=audience, nonce=nonce, now=NOW)


def test_valid_presentation_verifies(env: Env, verifier: Verifier) -> None:
    chain = env.chain(1)
    holder = chain.agents[1]
    identity, _ = env.identity(holder)
    vp = present(holder, [identity, chain.jwts[0]])

    verified = verifier.verify_presentation(vp, audience=VERIFIER_AUD, nonce=NONCE)

    assert verified.holder == holder.did
    assert verified.claims["vp"]["holder"] == holder.did
    assert [c["vc"]["type"][-1] for c in verified.credentials] == [IDENTITY_CREDENTIAL, DELEGATION_CREDENTIAL]
    assert all(c["sub"] == holder.did for c in verified.credentials)


def test_presentation_header_names_the_holders_verification_method(agent: Agent) -> None:
    header, payload = split(present(agent, []))

    assert header == {"alg": "EdDSA", "typ": "JWT", "kid": holder_kid(agent.did)}
    assert header["kid"] == f"{agent.did}#{agent.did.removeprefix('did:key:')}"
    assert (payload["iss"], payload["aud"], payload["nonce"]) == (agent.did, VERIFIER_AUD, NONCE)


def test_presented_by_someone_other_than_the_subject(env: Env, verifier: Verifier, agent: Agent) -> None:
    identity, _ = env.identity(agent)

    assert rejected(verifier, present(Agent.generate(), [identity])) == e.HOLDER_MISMATCH


def test_wrong_nonce(env: Env, verifier: Verifier, agent: Agent) -> None:
    vp = present(agent, [env.identity(agent)[0]], nonce="another-challenge")

    assert rejected(verifier, vp) == e.NONCE_MISMATCH


def test_replayed_nonce(env: Env, verifier: Verifier, agent: Agent) -> None:
    vp = present(agent, [env.identity(agent)[0]])
    assert verifier.verify_presentation(vp, audience=VERIFIER_AUD, nonce=NONCE).holder == agent.did

    assert rejected(verifier, vp) == e.NONCE_REPLAYED
    assert rejected(verifier, present(agent, [])) == e.NONCE_REPLAYED  # a fresh VP answering the same challenge


def test_a_rejected_presentation_does_not_burn_the_nonce(env: Env, verifier: Verifier, agent: Agent) -> None:
    identity, _ = env.identity(agent)
    assert rejected(verifier, present(agent, [identity], audience="https://other.example")) == e.INVALID_AUDIENCE

    assert verifier.verify_presentation(present(agent, [identity]), audience=VERIFIER_AUD, nonce=NONCE).credentials


def test_wrong_audience(env: Env, verifier: Verifier, agent: Agent) -> None:
    vp = present(agent, [env.identity(agent)[0]], audience="https://other.example")

    assert rejected(verifier, vp) == e.INVALID_AUDIENCE


@pytest.mark.parametrize("kid_of", ["other-did", "bare-other-did", "missing"])
def test_kid_not_matching_iss(env: Env, verifier: Verifier, agent: Agent, kid_of: str) -> None:
    other = Agent.generate()
    header, payload = split(present(agent, [env.identity(agent)[0]]))
    kids = {"other-did": holder_kid(other.did), "bare-other-did": other.did}
    header.pop("kid")
    if kid_of in kids:
        header["kid"] = kids[kid_of]
    # Signed by the other key: the verifier must not pick the key from the kid while trusting iss.
    vp = forge(header, payload, other.pair)

    assert rejected(verifier, vp) == e.HOLDER_MISMATCH


def test_signed_by_a_key_other_than_the_holders(env: Env, verifier: Verifier, agent: Agent) -> None:
    header, payload = split(present(agent, [env.identity(agent)[0]]))

    assert rejected(verifier, forge(header, payload, KeyPair.generate())) == e.INVALID_SIGNATURE


def test_holder_that_is_not_a_did_key(env: Env, verifier: Verifier, agent: Agent) -> None:
    header, payload = split(present(agent, []))
    payload["iss"] = "did:web:evil.example"
    header["kid"] = "did:web:evil.example#key-1"

    assert rejected(verifier, forge(header, payload, agent.pair)) == e.INVALID_DID


def test_expired_presentation(env: Env, agent: Agent) -> None:
    vp = present(agent, [env.identity(agent)[0]])
    verifier = env.verifier(clock=lambda: NOW + timedelta(minutes=10))

    assert rejected(verifier, vp) == e.EXPIRED


def test_revoked_credential_inside_a_presentation(env: Env, agent: Agent) -> None:
    identity, claims = env.identity(agent)
    env.revoke(claims)

    assert rejected(env.verifier(), present(agent, [identity])) == e.REVOKED


def test_access_token_inside_a_presentation_is_rejected(env: Env, verifier: Verifier, agent: Agent) -> None:
    token, _ = env.access_token(agent)

    assert rejected(verifier, present(agent, [token])) == e.INVALID_TYP


def test_presentation_is_not_a_credential(env: Env, verifier: Verifier, agent: Agent) -> None:
    vp = present(agent, [env.identity(agent)[0]])

    with pytest.raises(VerificationError) as info:
        verifier.verify_credential(vp, expected_type=IDENTITY_CREDENTIAL)
    assert info.value.code == e.UNKNOWN_KID  # the holder's did:key is no issuer key
