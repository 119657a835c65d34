"""Properties of the pure core: did:key encode/decode round trips (did:key v0.7 section 3.1.2), Ed25519
signatures (RFC 8032 section 5.1) that fail on any one-byte change, strict base64url (RFC 7515 section 2),
the Edwards -> Montgomery map (RFC 7748 section 4.1) and AES-GCM sealing."""

from __future__ import annotations

import hashlib
import string

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from agentauth.did import decode_did_key, did_key_document, ed25519_to_x25519, encode_did_key, is_did_key
from agentauth.keys import KeyEncryptionKey, KeyPair, PublicKey, b64url_decode, b64url_encode, parse_public_jwk
from agentauth.keys.weak import weak_key_reason

BYTES32 = st.binary(min_size=32, max_size=32)
# Public keys: any 32 bytes but the weak ones (small order, non-canonical), refused by design (test_weak_keys.py).
PUBLIC_KEYS = BYTES32.filter(lambda raw: weak_key_reason(raw) is None)
MESSAGES = st.binary(max_size=256)
B64URL_ALPHABET = set(string.ascii_letters + string.digits + "-_")


@given(PUBLIC_KEYS)
def test_did_key_round_trip(public_key: bytes) -> None:
    did = encode_did_key(public_key)
    assert did.startswith("did:key:z6Mk")
    assert decode_did_key(did) == public_key
    assert is_did_key(did)


@given(PUBLIC_KEYS)
def test_multikey_document_names_the_did_key(public_key: bytes) -> None:
    did = encode_did_key(public_key)
    [method] = did_key_document(did)["verificationMethod"]
    assert method["publicKeyMultibase"] == did.removeprefix("did:key:")
    assert method["id"] == f"{did}#{method['publicKeyMultibase']}"


@given(seed=BYTES32, message=MESSAGES)
def test_signature_verifies(seed: bytes, message: bytes) -> None:
    pair = KeyPair.from_seed(seed)
    signature = pair.sign(message)
    assert len(signature) == 64
    assert pair.sign(message) == signature  # RFC 8032: deterministic
    assert PublicKey.from_jwk(pair.public.jwk()).verify(signature, message)


@given(seed=BYTES32, message=MESSAGES, index=st.integers(0, 63), mask=st.integers(1, 255))
def test_flipping_a_signature_byte_fails(seed: bytes, message: bytes, index: int, mask: int) -> None:
    pair = KeyPair.from_seed(seed)
    tampered = bytearray(pair.sign(message))
    tampered[index] ^= mask
    assert not pair.public.verify(bytes(tampered), message)


@given(seed=BYTES32, message=st.binary(min_size=1, max_size=256), data=st.data())
def test_flipping_a_message_byte_fails(seed: bytes, message: bytes, data: st.DataObject) -> None:
    pair = KeyPair.from_seed(seed)
    signature = pair.sign(message)
    tampered = bytearray(message)
    tampered[data.draw(st.integers(0, len(message) - 1), label="index")] ^= data.draw(st.integers(1, 255), label="mask")
    assert not pair.public.verify(signature, bytes(tampered))


@given(seed=BYTES32, other=BYTES32, message=MESSAGES)
def test_another_key_does_not_verify(seed: bytes, other: bytes, message: bytes) -> None:
    pair, stranger = KeyPair.from_seed(seed), KeyPair.from_seed(other)
    if pair.public.raw != stranger.public.raw:
        assert not stranger.public.verify(pair.sign(message), message)


@given(st.binary(max_size=512))
def test_b64url_round_trip(data: bytes) -> None:
    text = b64url_encode(data)
    assert set(text) <= B64URL_ALPHABET  # no padding, no '+' or '/'
    assert b64url_decode(text) == data


@given(st.text(alphabet="AQgw-_+/= \n", max_size=12))
def test_b64url_decode_accepts_only_canonical_text(text: str) -> None:
    try:
        decoded = b64url_decode(text)
    except ValueError:
        return
    assert b64url_encode(decoded) == text


@given(PUBLIC_KEYS)
def test_public_jwk_round_trip(public_key: bytes) -> None:
    assert parse_public_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(public_key)}) == public_key


@given(BYTES32)
def test_ed25519_to_x25519_agrees_with_cryptography(seed: bytes) -> None:
    ed25519_public = KeyPair.from_seed(seed).public.raw
    # RFC 8032 section 5.1.5: the secret scalar is clamp(SHA-512(seed)[:32]); X25519 clamps the same way.
    x25519_private = X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])
    assert ed25519_to_x25519(ed25519_public) == x25519_private.public_key().public_bytes_raw()


@given(key=BYTES32, plaintext=st.binary(max_size=128), associated_data=st.binary(max_size=64))
def test_seal_open_round_trip(key: bytes, plaintext: bytes, associated_data: bytes) -> None:
    kek = KeyEncryptionKey(key)
    assert kek.open(kek.seal(plaintext, associated_data), associated_data) == plaintext
