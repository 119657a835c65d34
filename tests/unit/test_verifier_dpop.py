"""The verifier and DPoP-bound access tokens (RFC 9449 sections 6 and 7): a token carrying ``cnf.jkt`` verifies
only with a proof by that key for the request it came with - as a bearer token it is refused (the token-type
downgrade DPoP -> Bearer), and so is a proof by another key, a proof without the token's ``ath``, a replayed
proof, a proof for another method or URI; an unbound token is refused with a proof. Proofs here are built by
an agent's did:key (``create_proof``) and, for ES256, by joserfc."""

from __future__ import annotations

import json
import uuid

import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from vc_support import AUDIENCE, Agent, Env, forge, split

from agentauth.vc import Verifier
from agentauth.vc import errors as e
from agentauth.vc.dpop import INVALID_DPOP_PROOF, DPoPRequest, access_token_hash, create_proof
from agentauth.vc.errors import VerificationError
from agentauth.vc.nonces import NonceRegistry

URI = "https://api.example.com/items"


def refused(verifier: Verifier, token: str, code: str, dpop: DPoPRequest | None = None) -> None:
    with pytest.raises(VerificationError) as failed:
        verifier.verify_access_token(token, dpop=dpop)
    assert failed.value.code == code, failed.value


def test_a_token_bound_to_the_agents_key_needs_its_proof(env: Env, verifier: Verifier, agent: Agent) -> None:
    token, _ = env.access_token(agent, dpop_jkt=agent.pair.public.thumbprint())
    at = env.now.timestamp()
    replay = NonceRegistry()

    def request(proof: str, method: str = "GET", uri: str = URI) -> DPoPRequest:
        return DPoPRequest(proof, method, uri, replay)

    good = create_proof(agent.pair, "GET", URI, access_token=token, now=at)
    verified = verifier.verify_access_token(token, dpop=request(good))
    assert verified.claims["cnf"] == {"jkt": agent.pair.public.thumbprint()}
    refused(verifier, token, e.DPOP_REQUIRED)  # as a bearer token
    refused(verifier, token, INVALID_DPOP_PROOF, request(good))  # the same proof again
    other = Agent.generate()
    refused(verifier, token, e.DPOP_KEY_MISMATCH, request(create_proof(other.pair, "GET", URI, access_token=token,
                                                                       now=at)))  # fmt: skip
    refused(verifier, token, INVALID_DPOP_PROOF, request(create_proof(agent.pair, "GET", URI, now=at)))  # no ath
    for method, uri in (("POST", URI), ("GET", "https://api.example.com/other")):
        proof = create_proof(agent.pair, "GET", URI, access_token=token, now=at)
        refused(verifier, token, INVALID_DPOP_PROOF, request(proof, method, uri))
    late = create_proof(agent.pair, "GET", URI, access_token=token, now=at - 300)
    refused(verifier, token, INVALID_DPOP_PROOF, request(late))
    unbound, _ = env.access_token(agent)
    proof = create_proof(agent.pair, "GET", URI, access_token=unbound, now=at)
    refused(verifier, unbound, e.NOT_DPOP_BOUND, request(proof))
    assert verifier.verify_access_token(unbound).claims["aud"] == AUDIENCE


def test_a_token_bound_to_a_p256_key_verifies_with_a_joserfc_proof(env: Env, verifier: Verifier, agent: Agent) -> None:
    key = ECKey.generate_key("P-256")
    token, _ = env.access_token(agent, dpop_jkt=key.thumbprint())
    claims = {"jti": str(uuid.uuid4()), "htm": "POST", "htu": URI, "iat": int(env.now.timestamp()),
              "ath": access_token_hash(token)}  # fmt: skip
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    proof = jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=["ES256"])
    verified = verifier.verify_access_token(token, dpop=DPoPRequest(proof, "POST", URI, NonceRegistry()))
    assert verified.claims["cnf"]["jkt"] == key.thumbprint()


def test_a_malformed_confirmation_is_refused(env: Env, verifier: Verifier, agent: Agent) -> None:
    token, claims = env.access_token(agent, dpop_jkt=None)
    assert "cnf" not in verifier.verify_access_token(token).claims
    header, _ = split(token)
    assert verifier.verify_access_token(forge(header, claims, env.ring.active.pair)).claims == claims
    for cnf in ("abc", {"x5t#S256": "abc"}, {"jkt": 7}):
        refused(verifier, forge(header, claims | {"cnf": cnf}, env.ring.active.pair), e.MALFORMED)
