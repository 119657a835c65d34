"""Trust anchors of the offline verifier: the issuer's signing keys, from its JWKS (RFC 7517) or its DID document
(only ``assertionMethod`` verification methods). A key that cannot be used is skipped with a warning, so one bad
entry does not lock a verifier out of the others."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from agentauth.did import DidKeyError, decode_did_key
from agentauth.keys import PublicKey
from agentauth.keys.jwk import JwkError

log = logging.getLogger("agentauth.verifier")


def keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, PublicKey]:
    keys: dict[str, PublicKey] = {}
    for jwk in jwks.get("keys", []):
        kid = jwk.get("kid") if isinstance(jwk, Mapping) else None
        if not isinstance(kid, str) or jwk.get("use", "sig") != "sig":
            continue
        try:
            keys[kid] = PublicKey.from_jwk(jwk)
        except JwkError:
            log.warning("ignoring unusable JWKS key %s", kid)
    return keys


def keys_from_did_document(document: Mapping[str, Any]) -> dict[str, PublicKey]:
    keys: dict[str, PublicKey] = {}
    allowed = set(document.get("assertionMethod", []))
    for method in document.get("verificationMethod", []):
        vm_id = method.get("id")
        if vm_id not in allowed:
            continue
        try:
            if "publicKeyJwk" in method:
                keys[vm_id] = PublicKey.from_jwk(method["publicKeyJwk"])
            elif "publicKeyMultibase" in method:
                keys[vm_id] = PublicKey.from_bytes(decode_did_key("did:key:" + method["publicKeyMultibase"]))
        except (JwkError, DidKeyError):
            log.warning("ignoring unusable verification method %s", vm_id)
    return keys
