"""Ed25519 keys: RFC 8037 Appendix A (JWK, thumbprint, the JWS signature byte for byte), RFC 8037 section 2
JWK parsing, RFC 7515 section 2 base64url, and AES-256-GCM sealing at rest (NIST SP 800-38D).

The issuer key ring is tested in test_key_ring.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from agentauth.keys import (
    KeyEncryptionKey,
    KeyPair,
    PublicKey,
    b64url_decode,
    b64url_encode,
    generate_kek,
    jwk_thumbprint,
    parse_public_jwk,
)
from agentauth.keys.jwk import JwkError
from agentauth.keys.sealing import SealingError

RFC8037 = json.loads((Path(__file__).parents[1] / "vectors" / "rfc8037_appendix_a.json").read_text())
A1_PRIVATE: dict[str, str] = RFC8037["A.1_private_key"]
A2_PUBLIC: dict[str, str] = RFC8037["A.2_public_key"]
A3_THUMBPRINT: str = RFC8037["A.3_thumbprint"]
A4: dict[str, Any] = RFC8037["A.4_ed25519_signing"]
A4_SIGNING_INPUT = f"{A4['protected_encoded']}.{A4['payload_encoded']}".encode("ascii")


# RFC 8037 Appendix A


def test_vector_file_names_its_source() -> None:
    assert RFC8037["source"].startswith("RFC 8037 Appendix A.1-A.4")


def test_a4_encodings_are_the_base64url_of_header_and_payload() -> None:
    header = json.dumps(A4["protected_header"], separators=(",", ":")).encode()
    assert b64url_encode(header) == A4["protected_encoded"]
    assert b64url_encode(A4["payload"].encode()) == A4["payload_encoded"]
    assert b64url_decode(A4["payload_encoded"]) == b"Example of Ed25519 signing"


def test_a4_signature_is_reproduced_byte_for_byte() -> None:
    signature = KeyPair.from_jwk(A1_PRIVATE).sign(A4_SIGNING_INPUT)
    assert signature == b64url_decode(A4["signature"])
    assert b64url_encode(signature) == A4["signature"]


def test_a4_signature_verifies_with_the_a2_public_key() -> None:
    public = PublicKey.from_jwk(A2_PUBLIC)
    signature = b64url_decode(A4["signature"])
    assert public.verify(signature, A4_SIGNING_INPUT)
    assert not public.verify(signature, A4_SIGNING_INPUT + b".")
    assert not public.verify(signature, A4_SIGNING_INPUT.replace(b"RXhh", b"RXhi"))


def test_a1_public_half_is_a2() -> None:
    assert KeyPair.from_jwk(A1_PRIVATE).public.jwk() == A2_PUBLIC


def test_a3_thumbprint() -> None:
    assert jwk_thumbprint(A2_PUBLIC) == A3_THUMBPRINT
    assert PublicKey.from_jwk(A2_PUBLIC).thumbprint() == A3_THUMBPRINT
    # RFC 7638 section 3.2: only the required members count, so d, kid, alg and use change nothing.
    assert jwk_thumbprint(A1_PRIVATE | {"kid": "k", "alg": "EdDSA", "use": "sig"}) == A3_THUMBPRINT
    assert jwk_thumbprint(A2_PUBLIC | {"x": b64url_encode(bytes(32))}) != A3_THUMBPRINT


# JWK import and export


def test_private_jwk_round_trip() -> None:
    pair = KeyPair.generate()
    jwk = pair.private_jwk()
    assert set(jwk) == {"kty", "crv", "x", "d"}
    restored = KeyPair.from_jwk(jwk)
    assert restored.seed() == pair.seed()
    assert restored.public == pair.public
    assert KeyPair.from_jwk(A1_PRIVATE).private_jwk() == A1_PRIVATE


def test_private_jwk_whose_x_does_not_match_d_is_rejected() -> None:
    other_x = KeyPair.generate().public.jwk()["x"]
    with pytest.raises(JwkError) as caught:
        KeyPair.from_jwk(A1_PRIVATE | {"x": other_x})
    assert caught.value.code == "invalid_jwk"


def test_key_repr_does_not_show_the_seed() -> None:
    pair = KeyPair.from_jwk(A1_PRIVATE)
    assert A1_PRIVATE["d"] not in repr(pair)
    assert pair.seed().hex() not in repr(pair)
    assert repr(pair.seed()) not in repr(pair)


A2_X = A2_PUBLIC["x"]


@pytest.mark.parametrize(
    ("jwk", "code"),
    [
        pytest.param({"kty": "RSA", "n": "sXch", "e": "AQAB"}, "unsupported_key_type", id="kty-RSA"),
        pytest.param({"kty": "EC", "crv": "P-256", "x": A2_X, "y": A2_X}, "unsupported_key_type", id="kty-EC"),
        pytest.param({"kty": "OKP", "crv": "X25519", "x": A2_X}, "unsupported_key_type", id="crv-X25519"),
        pytest.param({"kty": "OKP", "crv": "Ed448", "x": A2_X}, "unsupported_key_type", id="crv-Ed448"),
        pytest.param({"kty": "OKP", "x": A2_X}, "unsupported_key_type", id="no-crv"),
        pytest.param({"crv": "Ed25519", "x": A2_X}, "unsupported_key_type", id="no-kty"),
        pytest.param(A2_PUBLIC | {"x": A2_X.replace("_", "/")}, "invalid_jwk", id="x-standard-base64"),
        pytest.param(A2_PUBLIC | {"x": A2_X[:-1] + "!"}, "invalid_jwk", id="x-non-alphabet"),
        pytest.param(A2_PUBLIC | {"x": A2_X + "="}, "invalid_jwk", id="x-padded"),
        pytest.param(A2_PUBLIC | {"x": b64url_encode(bytes(31))}, "invalid_jwk", id="x-31-bytes"),
        pytest.param(A2_PUBLIC | {"x": b64url_encode(bytes(33))}, "invalid_jwk", id="x-33-bytes"),
        pytest.param(A2_PUBLIC | {"x": ""}, "invalid_jwk", id="x-empty"),
        pytest.param({"kty": "OKP", "crv": "Ed25519"}, "invalid_jwk", id="x-missing"),
        pytest.param(A2_PUBLIC | {"x": 7}, "invalid_jwk", id="x-not-a-string"),
        pytest.param(json.dumps(A2_PUBLIC), "invalid_jwk", id="not-an-object"),
    ],
)
def test_parse_public_jwk_rejects(jwk: Any, code: str) -> None:
    with pytest.raises(JwkError) as caught:
        parse_public_jwk(jwk)
    assert caught.value.code == code


def test_parse_public_jwk_accepts_a2() -> None:
    assert parse_public_jwk(A2_PUBLIC) == b64url_decode(A2_X)


@pytest.mark.parametrize("size", [0, 31, 33])
def test_raw_keys_of_the_wrong_length_are_rejected(size: int) -> None:
    for make in (PublicKey.from_bytes, KeyPair.from_seed):
        with pytest.raises(JwkError) as caught:
            make(bytes(size))
        assert caught.value.code == "invalid_key_length"


@pytest.mark.parametrize(
    "text",
    ["AA==", "AAA=", "AAAA====", "A", "AA+A", "AA/A", "AA A", "AAAA\n", "AA!A", "AAé", "AB"],
    ids=["pad2", "pad1", "pad4", "len1", "plus", "slash", "space", "newline", "bang", "non-ascii", "non-canonical"],
)
def test_b64url_decode_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(text)


def test_b64url_decode_rejects_bytes() -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(b"AAAA")  # type: ignore[arg-type]


def test_b64url_known_values() -> None:
    assert b64url_decode("") == b""
    assert b64url_decode("-_8") == b"\xfb\xff"
    assert b64url_encode(b"\xfb\xff") == "-_8"


# Sealing (AES-256-GCM)


def _flip(sealed: str, index: int) -> str:
    blob = bytearray(b64url_decode(sealed.removeprefix("v1.")))
    blob[index] ^= 0x01
    return "v1." + b64url_encode(bytes(blob))


def test_seal_open_round_trip() -> None:
    kek = KeyEncryptionKey(os.urandom(32))
    secret = os.urandom(32)
    sealed = kek.seal(secret, b"kid-1")
    assert sealed.startswith("v1.")
    assert b64url_encode(secret) not in sealed
    assert kek.open(sealed, b"kid-1") == secret
    # A fresh random nonce per seal: the same secret never seals to the same text twice.
    assert kek.seal(secret, b"kid-1") != sealed


def test_open_with_the_wrong_kek_fails() -> None:
    sealed = KeyEncryptionKey(os.urandom(32)).seal(b"secret", b"ad")
    with pytest.raises(SealingError):
        KeyEncryptionKey(os.urandom(32)).open(sealed, b"ad")


@pytest.mark.parametrize("index", [0, 11, 12, 13, -16, -1], ids=["nonce", "nonce-end", "ct", "ct+1", "tag", "tag-end"])
def test_tampered_sealed_value_fails(index: int) -> None:
    kek = KeyEncryptionKey(os.urandom(32))
    sealed = kek.seal(b"a 16-byte secret", b"ad")
    with pytest.raises(SealingError):
        kek.open(_flip(sealed, index), b"ad")


@pytest.mark.parametrize("mangle", [lambda s: s[:-4], lambda s: "v2." + s[3:], lambda s: s[3:], lambda s: "v1."])
def test_malformed_sealed_value_fails(mangle: Any) -> None:
    kek = KeyEncryptionKey(os.urandom(32))
    with pytest.raises(SealingError):
        kek.open(mangle(kek.seal(b"secret", b"ad")), b"ad")


def test_open_with_the_wrong_associated_data_fails() -> None:
    kek = KeyEncryptionKey(os.urandom(32))
    sealed = kek.seal(b"secret", b"did:web:a#k1")
    with pytest.raises(SealingError):
        kek.open(sealed, b"did:web:a#k2")
    with pytest.raises(SealingError):
        kek.open(sealed, b"")


@pytest.mark.parametrize(
    "encode", [b64url_encode, bytes.hex, lambda raw: raw.hex().upper(), lambda raw: f" {raw.hex()}\n"]
)
def test_kek_from_text(encode: Any) -> None:
    raw = os.urandom(32)
    sealed = KeyEncryptionKey(raw).seal(b"secret", b"ad")
    assert KeyEncryptionKey.from_text(encode(raw)).open(sealed, b"ad") == b"secret"


def test_generated_kek_is_base64url_43() -> None:
    text = generate_kek()
    assert len(text) == 43
    assert len(b64url_decode(text)) == 32
    kek = KeyEncryptionKey.from_text(text)
    assert kek.open(kek.seal(b"x", b""), b"") == b"x"


@pytest.mark.parametrize(
    "text",
    [
        b64url_encode(bytes(16)),
        bytes(16).hex(),
        "zz" * 32,
        "",
        b64url_encode(bytes(32)) + "=",
        b64url_encode(bytes(33)),
    ],
    ids=["b64url-16", "hex-16", "hex-not-hex", "empty", "b64url-padded", "b64url-33"],
)
def test_kek_from_text_rejects(text: str) -> None:
    with pytest.raises(SealingError):
        KeyEncryptionKey.from_text(text)


def test_kek_must_be_32_bytes() -> None:
    with pytest.raises(SealingError):
        KeyEncryptionKey(bytes(16))


def test_kek_repr_does_not_contain_the_key() -> None:
    text = generate_kek()
    kek = KeyEncryptionKey.from_text(text)
    raw = b64url_decode(text)
    for shown in (repr(kek), str(kek), f"{[kek]}"):
        assert text not in shown
        assert raw.hex() not in shown
        assert repr(raw) not in shown
    assert "redacted" in repr(kek)
