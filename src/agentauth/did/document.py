"""DID documents (W3C DID Core 1.0 section 5) for did:key agents and the did:web issuer.

A did:key resolves to one verification method, referenced from authentication, assertionMethod,
capabilityDelegation and capabilityInvocation (did:key v0.7 section 3.1.3). Three representations:

* ``Multikey`` (Controlled Identifiers 1.0, ``publicKeyMultibase``) - the current default;
* ``JsonWebKey2020`` (``publicKeyJwk``, RFC 8037 OKP key) - what JOSE-based verifiers consume;
* ``Ed25519VerificationKey2018`` with the derived X25519 ``keyAgreement`` key - the form of the
  did:key method's published test vectors and of key-did-resolver.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import base58

from agentauth.did.key import (
    ED25519_PUB_MULTICODEC,
    X25519_PUB_MULTICODEC,
    decode_did_key,
    ed25519_to_x25519,
    encode_multibase_key,
)

DidDocument = dict[str, Any]
DocumentForm = Literal["Multikey", "JsonWebKey2020", "Ed25519VerificationKey2018"]

DID_CONTEXT = "https://www.w3.org/ns/did/v1"
MULTIKEY_CONTEXT = "https://w3id.org/security/multikey/v1"
JWS_2020_CONTEXT = "https://w3id.org/security/suites/jws-2020/v1"
ED25519_2018_CONTEXT = "https://w3id.org/security/suites/ed25519-2018/v1"
X25519_2019_CONTEXT = "https://w3id.org/security/suites/x25519-2019/v1"

VERIFICATION_RELATIONSHIPS = (
    "authentication",
    "assertionMethod",
    "capabilityDelegation",
    "capabilityInvocation",
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def did_key_document(did: str, form: DocumentForm = "Multikey", *, key_agreement: bool | None = None) -> DidDocument:
    """Resolve an Ed25519 did:key to its DID document; raises ``DidKeyError`` on an invalid DID.

    ``key_agreement`` adds the derived X25519 key (did:key v0.7 section 3.1.3, "enableEncryptionKeyDerivation");
    it defaults to on for the legacy 2018 form, as in the method's test vectors, and off otherwise.
    """
    public_key = decode_did_key(did)
    did = did.split("#", 1)[0]
    if key_agreement is None:
        key_agreement = form == "Ed25519VerificationKey2018"
    vm_id = f"{did}#{did[len('did:key:') :]}"
    methods = [_verification_method(did, vm_id, public_key, form, "Ed25519")]
    if form == "Multikey":
        context = [DID_CONTEXT, MULTIKEY_CONTEXT]
    elif form == "JsonWebKey2020":
        context = [DID_CONTEXT, JWS_2020_CONTEXT]
    elif form == "Ed25519VerificationKey2018":
        context = [DID_CONTEXT, ED25519_2018_CONTEXT, X25519_2019_CONTEXT]
    else:
        raise ValueError(f"unknown DID document form {form!r}")
    document: DidDocument = {"@context": context, "id": did, "verificationMethod": methods}
    document |= {rel: [vm_id] for rel in VERIFICATION_RELATIONSHIPS}
    if key_agreement:
        x25519 = ed25519_to_x25519(public_key)
        ka_id = f"{did}#z" + base58.b58encode(X25519_PUB_MULTICODEC + x25519).decode("ascii")
        methods.append(_verification_method(did, ka_id, x25519, form, "X25519"))
        document["keyAgreement"] = [ka_id]
    return document


def _verification_method(
    did: str, vm_id: str, key: bytes, form: DocumentForm, curve: Literal["Ed25519", "X25519"]
) -> dict[str, Any]:
    method: dict[str, Any] = {"id": vm_id}
    if form == "Multikey":
        codec = ED25519_PUB_MULTICODEC if curve == "Ed25519" else X25519_PUB_MULTICODEC
        method |= {"type": "Multikey", "controller": did, "publicKeyMultibase": encode_multibase_key(key, codec)}
    elif form == "JsonWebKey2020":
        jwk = {"kty": "OKP", "crv": curve, "x": _b64url(key)}
        method |= {"type": "JsonWebKey2020", "controller": did, "publicKeyJwk": jwk}
    else:
        kind = "Ed25519VerificationKey2018" if curve == "Ed25519" else "X25519KeyAgreementKey2019"
        method |= {"type": kind, "controller": did, "publicKeyBase58": base58.b58encode(key).decode("ascii")}
    return method


def ed25519_public_jwk(public_key: bytes) -> dict[str, str]:
    """RFC 8037 section 2 public JWK of a raw Ed25519 key."""
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(public_key)}


def issuer_did_document(did: str, public_jwks: Iterable[Mapping[str, Any]]) -> DidDocument:
    """The issuer's DID document: one ``JsonWebKey2020`` method per JWKS key, ``id`` = the key's ``kid``.

    Verification methods are exactly the JWKS keys (next, active, retired), so a VC verifier that resolves
    the issuer DID and a JOSE verifier that reads the JWKS find the same key under the same id.
    """
    methods = []
    for jwk in public_jwks:
        kid = str(jwk["kid"])
        if not kid.startswith(did + "#"):
            raise ValueError(f"kid {kid!r} is not a DID URL of {did!r}")
        public = {k: jwk[k] for k in ("kty", "crv", "x") if k in jwk}
        methods.append({"id": kid, "type": "JsonWebKey2020", "controller": did, "publicKeyJwk": public})
    ids = [m["id"] for m in methods]
    return {
        "@context": [DID_CONTEXT, JWS_2020_CONTEXT],
        "id": did,
        "verificationMethod": methods,
        "authentication": ids,
        "assertionMethod": ids,
        "capabilityDelegation": ids,
        "capabilityInvocation": ids,
    }


__all__ = ["DidDocument", "did_key_document", "ed25519_public_jwk", "encode_multibase_key", "issuer_did_document"]
