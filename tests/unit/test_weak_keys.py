"""Weak Ed25519 public keys are refused wherever a key enters (issue 12 item 2; RFC 8032 section 5.1.3).

The 8 points of small order and their non-canonical encodings (tests/weak_keys.py derives them from the curve)
are refused by ``agentauth.keys.weak`` and by every door built on it: did:key decoding, JWK import, the public
key constructor, jwt-bearer assertions and presentations. Under each of them ``cryptography`` itself accepts
the forged signature R = identity, S = 0 - which is why the check must sit in front of it.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st
from vc_support import NOW

from agentauth.did import DidKeyError, decode_did_key, did_key_document, encode_did_key, is_did_key
from agentauth.keys import KeyPair, PublicKey, parse_public_jwk
from agentauth.keys.jwk import JwkError
from agentauth.keys.weak import SMALL_ORDER_ENCODINGS, WEAK_KEY, weak_key_reason
from agentauth.vc import VerificationError, Verifier, verify_agent_assertion
from agentauth.vc import errors as e
from weak_keys import (
    CANONICAL_SMALL_ORDER,
    FORGED_SIGNATURE,
    NON_CANONICAL_ANY,
    WEAK_ENCODINGS,
    WEAK_IDS,
    did_of,
    forge,
    forged_assertion,
    forged_presentation,
    jwk_of,
)

WEAK = pytest.mark.parametrize("raw", [raw for _, raw in WEAK_ENCODINGS], ids=WEAK_IDS)
TOKEN_ENDPOINT = "http://localhost:8000/api/v1/auth/token"


def test_the_list_in_keys_is_exactly_the_curves_small_order_points() -> None:
    assert set(CANONICAL_SMALL_ORDER) == SMALL_ORDER_ENCODINGS
    assert len(WEAK_ENCODINGS) == 14  # 8 canonical + 6 non-canonical ("Taming the many EdDSAs", table 1)


@WEAK
def test_cryptography_alone_accepts_the_forgery_under_every_weak_key(raw: bytes) -> None:
    """The attack the check exists for: OpenSSL's verify takes R = identity, S = 0 under these keys."""
    signing_input = forge(raw, lambda n: f"header.payload-{n}").rsplit(".", 1)[0]
    Ed25519PublicKey.from_public_bytes(raw).verify(FORGED_SIGNATURE, signing_input.encode())  # raises if not


@WEAK
def test_every_entry_point_refuses_a_weak_key_with_code_weak_key(raw: bytes) -> None:
    assert weak_key_reason(raw) is not None
    with pytest.raises(JwkError) as from_bytes:
        PublicKey.from_bytes(raw)
    with pytest.raises(JwkError) as jwk_import:
        parse_public_jwk(jwk_of(raw))
    with pytest.raises(JwkError) as from_jwk:
        PublicKey.from_jwk(jwk_of(raw))
    with pytest.raises(DidKeyError) as did_decode:
        decode_did_key(did_of(raw))
    with pytest.raises(DidKeyError) as did_document:
        did_key_document(did_of(raw))
    codes = {exc.value.code for exc in (from_bytes, jwk_import, from_jwk, did_decode, did_document)}
    assert codes == {WEAK_KEY}
    assert "weak key" in str(did_decode.value) and "weak key" in str(jwk_import.value)
    assert not is_did_key(did_of(raw))


@pytest.mark.parametrize("raw", NON_CANONICAL_ANY, ids=lambda raw: raw.hex()[:2] + ".." + raw.hex()[-2:])
def test_every_encoding_with_y_at_least_p_is_refused(raw: bytes) -> None:
    """Canonical only, whatever point the bytes name: one key, one did:key."""
    assert "non-canonical" in (weak_key_reason(raw) or "")
    with pytest.raises(DidKeyError, match="non-canonical"):
        decode_did_key(did_of(raw))


@given(st.binary(min_size=32, max_size=32))
def test_generated_keys_are_never_refused(seed: bytes) -> None:
    public = KeyPair.from_seed(seed).public.raw
    assert weak_key_reason(public) is None
    assert decode_did_key(encode_did_key(public)) == public
    assert PublicKey.from_jwk(jwk_of(public)).raw == public


def test_a_private_jwk_with_a_weak_x_is_refused() -> None:
    private = KeyPair.generate().private_jwk() | {"x": jwk_of(CANONICAL_SMALL_ORDER[0])["x"]}
    with pytest.raises(JwkError) as info:
        KeyPair.from_jwk(private)
    assert info.value.code == WEAK_KEY


@WEAK
def test_a_forged_jwt_bearer_assertion_under_a_weak_key_is_refused_as_weak_key(raw: bytes) -> None:
    with pytest.raises(VerificationError) as info:
        verify_agent_assertion(forged_assertion(raw, TOKEN_ENDPOINT, NOW), audiences={TOKEN_ENDPOINT}, now=NOW)
    assert info.value.code == e.WEAK_KEY


@WEAK
def test_a_forged_presentation_by_a_weak_holder_key_is_refused_as_weak_key(raw: bytes, verifier: Verifier) -> None:
    with pytest.raises(VerificationError) as info:
        verifier.verify_presentation(
            forged_presentation(raw, "https://v.example", "n-1", NOW), audience="https://v.example", nonce="n-1"
        )
    assert info.value.code == e.WEAK_KEY
