"""did:key (W3C CCG "The did:key Method" v0.7, sections 3.1.2-3.1.3), did:web (did:web Method,
sections 3.2-3.3) and the issuer DID document (DID Core 1.0 section 5).

The did:key checks run the method's own published vectors (tests/vectors/did_key_ed25519_x25519.json)
in both directions.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from agentauth.did import (
    DidKeyError,
    decode_did_key,
    did_key_document,
    did_web_to_url,
    ed25519_to_x25519,
    encode_did_key,
    is_did_key,
    issuer_did_document,
    url_to_did_web,
)
from agentauth.did.web import DidWebError
from agentauth.keys import KeyPair, KeyRing, PublicKey

VECTOR_FILE = json.loads((Path(__file__).parents[1] / "vectors" / "did_key_ed25519_x25519.json").read_text())
VECTORS: dict[str, dict[str, Any]] = VECTOR_FILE["vectors"]
VECTOR_CASES = pytest.mark.parametrize(
    ("did", "vector"), VECTORS.items(), ids=[v["seed"][-2:] for v in VECTORS.values()]
)

DID0 = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"  # seed 00..00
DID0_X25519_MULTIBASE = "z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW"
KEY0 = base58.b58decode("4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS")
RELATIONSHIPS = ("authentication", "assertionMethod", "capabilityDelegation", "capabilityInvocation")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key_of(pair: dict[str, Any], member: str = "publicKeyBase58") -> bytes:
    # The 2018-suite vectors give base58; the JsonWebKey2020 vector (seed ..05) gives a JWK instead.
    if member in pair:
        return base58.b58decode(pair[member])
    return _b64url_decode(pair[member.replace("Base58", "Jwk")]["d" if "private" in member else "x"])


def _did_of(raw: bytes, codec: bytes = b"\xed\x01") -> str:
    return "did:key:z" + base58.b58encode(codec + raw).decode("ascii")


def test_vector_file_names_its_source() -> None:
    assert VECTOR_FILE["source"]["repository"] == "https://github.com/w3c-ccg/did-method-key"
    assert VECTOR_FILE["source"]["path"] == "test-vectors/ed25519-x25519.json"
    assert len(VECTORS) == 5


@VECTOR_CASES
def test_seed_encodes_to_the_vector_did(did: str, vector: dict[str, Any]) -> None:
    pair = KeyPair.from_seed(bytes.fromhex(vector["seed"]))
    assert pair.public.raw == _key_of(vector["verificationKeyPair"])
    assert encode_did_key(pair.public.raw) == did


@VECTOR_CASES
def test_vector_did_decodes_to_the_vector_public_key(did: str, vector: dict[str, Any]) -> None:
    key = _key_of(vector["verificationKeyPair"])
    assert decode_did_key(did) == key
    assert is_did_key(did)
    # A DID URL names the same key: the fragment is ignored.
    assert decode_did_key(f"{did}#{did.removeprefix('did:key:')}") == key


@VECTOR_CASES
def test_vector_did_document_is_reproduced_exactly(did: str, vector: dict[str, Any]) -> None:
    expected = vector["didDocument"]
    form = expected["verificationMethod"][0]["type"]
    assert did_key_document(did, form=form, key_agreement=True) == expected


@VECTOR_CASES
def test_x25519_key_agreement_key_matches_the_vector(did: str, vector: dict[str, Any]) -> None:
    x25519_public = ed25519_to_x25519(decode_did_key(did))
    assert x25519_public == _key_of(vector["keyAgreementKeyPair"])
    # Independent check: cryptography's X25519 gives the vector's private key the same public key.
    private = X25519PrivateKey.from_private_bytes(_key_of(vector["keyAgreementKeyPair"], "privateKeyBase58"))
    assert private.public_key().public_bytes_raw() == x25519_public


def test_legacy_2018_form_adds_key_agreement_by_default() -> None:
    expected = VECTORS[DID0]["didDocument"]
    assert did_key_document(DID0, "Ed25519VerificationKey2018") == expected
    assert did_key_document(DID0, "Ed25519VerificationKey2018", key_agreement=False)["verificationMethod"] == [
        expected["verificationMethod"][0]
    ]


def test_multikey_document() -> None:
    vm_id = f"{DID0}#{DID0.removeprefix('did:key:')}"
    document = did_key_document(DID0)
    assert document["@context"] == ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"]
    assert document["id"] == DID0
    assert document["verificationMethod"] == [
        {"id": vm_id, "type": "Multikey", "controller": DID0, "publicKeyMultibase": DID0.removeprefix("did:key:")}
    ]
    for relationship in RELATIONSHIPS:
        assert document[relationship] == [vm_id]
    assert "keyAgreement" not in document


def test_multikey_document_with_key_agreement() -> None:
    document = did_key_document(DID0, "Multikey", key_agreement=True)
    ka_id = f"{DID0}#{DID0_X25519_MULTIBASE}"
    assert document["keyAgreement"] == [ka_id]
    assert document["verificationMethod"][1] == {
        "id": ka_id,
        "type": "Multikey",
        "controller": DID0,
        "publicKeyMultibase": DID0_X25519_MULTIBASE,
    }


def test_json_web_key_2020_document() -> None:
    vm_id = f"{DID0}#{DID0.removeprefix('did:key:')}"
    document = did_key_document(f"{vm_id}", "JsonWebKey2020")  # a DID URL resolves to the DID's document
    assert document["@context"] == ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"]
    assert document["id"] == DID0
    [method] = document["verificationMethod"]
    assert method == {
        "id": vm_id,
        "type": "JsonWebKey2020",
        "controller": DID0,
        "publicKeyJwk": {"kty": "OKP", "crv": "Ed25519", "x": _b64url(KEY0)},
    }
    assert PublicKey.from_jwk(method["publicKeyJwk"]).raw == KEY0
    for relationship in RELATIONSHIPS:
        assert document[relationship] == [vm_id]
    assert "keyAgreement" not in document


def test_unknown_document_form_raises() -> None:
    with pytest.raises(ValueError, match="unknown DID document form"):
        did_key_document(DID0, "EcdsaSecp256k1VerificationKey2019")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        pytest.param("did:key:" + DID0_X25519_MULTIBASE, "unsupported_multicodec", id="x25519-z6LS"),
        pytest.param(_did_of(b"\x02" + KEY0, b"\xe7\x01"), "unsupported_multicodec", id="secp256k1-0xe701"),
        pytest.param("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", "unsupported_multicodec", id="zQ3s"),
        pytest.param(DID0[:-1] + "0", "invalid_base58", id="char-0"),
        pytest.param(DID0[:-1] + "O", "invalid_base58", id="char-O"),
        pytest.param(DID0[:-1] + "I", "invalid_base58", id="char-I"),
        pytest.param(DID0[:-1] + "l", "invalid_base58", id="char-l"),
        pytest.param(DID0 + "é", "invalid_base58", id="non-ascii"),
        pytest.param(_did_of(KEY0[:31]), "invalid_key_length", id="31-bytes"),
        pytest.param(_did_of(KEY0 + b"\x00"), "invalid_key_length", id="33-bytes"),
        pytest.param("did:key:f" + (b"\xed\x01" + KEY0).hex(), "unsupported_multibase", id="base16-f"),
        pytest.param("did:key:u" + _b64url(b"\xed\x01" + KEY0), "unsupported_multibase", id="base64url-u"),
        pytest.param("did:key:" + DID0.removeprefix("did:key:z"), "unsupported_multibase", id="no-prefix"),
        pytest.param("did:web:example.com", "invalid_did", id="did-web"),
        pytest.param(DID0.removeprefix("did:key:"), "invalid_did", id="bare-multibase"),
        pytest.param(DID0.replace("did:key:", "DID:KEY:"), "invalid_did", id="upper-case"),
        pytest.param("", "invalid_did", id="empty"),
        pytest.param("did:key:", "invalid_did", id="empty-id"),
    ],
)
def test_invalid_did_key_is_rejected_with_its_code(value: str, code: str) -> None:
    with pytest.raises(DidKeyError) as caught:
        decode_did_key(value)
    assert caught.value.code == code
    assert not is_did_key(value)


def test_non_string_is_not_a_did_key() -> None:
    with pytest.raises(DidKeyError) as caught:
        decode_did_key(None)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_did"


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_encoding_a_key_of_the_wrong_length_raises(size: int) -> None:
    for encode in (encode_did_key, ed25519_to_x25519):
        with pytest.raises(DidKeyError) as caught:
            encode(b"\x01" * size)
        assert caught.value.code == "invalid_key_length"


# did:web


def test_local_issuer_url_percent_encodes_the_port() -> None:
    assert url_to_did_web("http://localhost:8000") == "did:web:localhost%3A8000"


@pytest.mark.parametrize(
    ("url", "did"),
    [
        ("https://example.com", "did:web:example.com"),
        ("https://Example.COM/", "did:web:example.com"),
        ("https://example.com/issuers/acme", "did:web:example.com:issuers:acme"),
        ("https://example.com:8443/a/b/", "did:web:example.com%3A8443:a:b"),
        ("https://example.com/.well-known/did.json", "did:web:example.com"),
        ("https://example.com/issuers/acme/did.json", "did:web:example.com:issuers:acme"),
        ("https://example.com/a%20b", "did:web:example.com:a%20b"),
    ],
)
def test_url_to_did_web(url: str, did: str) -> None:
    assert url_to_did_web(url) == did


@pytest.mark.parametrize(
    ("did", "scheme", "url"),
    [
        ("did:web:localhost%3A8000", "http", "http://localhost:8000/.well-known/did.json"),
        ("did:web:example.com", "https", "https://example.com/.well-known/did.json"),
        ("did:web:example.com:issuers:acme", "https", "https://example.com/issuers/acme/did.json"),
        ("did:web:example.com%3A8443:a:b", "https", "https://example.com:8443/a/b/did.json"),
        ("did:web:example.com#key-1", "https", "https://example.com/.well-known/did.json"),
    ],
)
def test_did_web_to_url_and_back(did: str, scheme: str, url: str) -> None:
    assert did_web_to_url(did, scheme) == url
    assert url_to_did_web(url) == did.split("#", 1)[0]


def test_did_web_to_url_defaults_to_https() -> None:
    assert did_web_to_url("did:web:example.com") == "https://example.com/.well-known/did.json"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com",
        "example.com",
        "",
        "http://",
        "http://localhost:99999",
        "http://localhost:port",
        "http://[::1]:8000",
        "http://[::1",
    ],
)
def test_url_without_a_did_web_form_raises(url: str) -> None:
    with pytest.raises(DidWebError):
        url_to_did_web(url)


@pytest.mark.parametrize(
    "did",
    [
        DID0,
        "did:web:",
        "did:web::path",
        "did:web:evil.com%2Fexample.com",
        "did:web:user%40evil.com",
        "did:web:example.com%3Fq",
        "did:web:example.com%23frag",
        "did:web:evil.com%5Cexample.com",
        "did:web:example.com%20",
    ],
)
def test_invalid_did_web_raises(did: str) -> None:
    with pytest.raises(DidWebError):
        did_web_to_url(did)


# Issuer DID document

ISSUER = "did:web:localhost%3A8000"


def test_issuer_document_methods_are_the_jwks_keys() -> None:
    jwks = KeyRing.create(ISSUER, datetime(2025, 1, 1, tzinfo=UTC)).jwks()["keys"]
    document = issuer_did_document(ISSUER, jwks)
    kids = [jwk["kid"] for jwk in jwks]
    assert document["id"] == ISSUER
    assert [method["id"] for method in document["verificationMethod"]] == kids
    for relationship in RELATIONSHIPS:
        assert document[relationship] == kids
    for method, jwk in zip(document["verificationMethod"], jwks, strict=True):
        assert method["type"] == "JsonWebKey2020"
        assert method["controller"] == ISSUER
        assert method["publicKeyJwk"] == {"kty": "OKP", "crv": "Ed25519", "x": jwk["x"]}


def test_issuer_document_never_carries_a_private_member() -> None:
    pair = KeyPair.generate()
    jwk = pair.private_jwk() | {"kid": f"{ISSUER}#{pair.public.thumbprint()}"}
    document = issuer_did_document(ISSUER, [jwk])
    assert document["verificationMethod"][0]["publicKeyJwk"] == pair.public.jwk()
    assert jwk["d"] not in json.dumps(document)


@pytest.mark.parametrize(
    "kid", ["did:web:evil.example#key", f"{ISSUER}:evil#key", f"{ISSUER}key", "key-1", f"{DID0}#{DID0[8:]}"]
)
def test_issuer_document_rejects_a_kid_of_another_did(kid: str) -> None:
    jwk = KeyPair.generate().public.jwk() | {"kid": kid}
    with pytest.raises(ValueError, match="is not a DID URL of"):
        issuer_did_document(ISSUER, [jwk])
