"""P-256 public keys for ES256 signatures (RFC 7518 section 3.4), for what others sign with them: DPoP proofs of
clients whose platform keys are P-256 (WebCrypto, secure enclaves; RFC 9449 names ES256 first). AgentAuth itself
signs with Ed25519 only."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from agentauth.keys.jwk import JwkError, b64url_encode, key_bytes

COORDINATE_BYTES = 32


@dataclass(frozen=True, slots=True)
class P256PublicKey:
    x: bytes
    y: bytes
    _key: ec.EllipticCurvePublicKey = field(repr=False, compare=False)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> P256PublicKey:
        """An RFC 7518 section 6.2 public EC key on P-256; a point not on the curve is refused."""
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            raise JwkError("unsupported_key_type", "JWK must be kty 'EC' with crv 'P-256'")
        x, y = key_bytes(jwk, "x"), key_bytes(jwk, "y")  # RFC 7518 section 6.2.1.2: full length, zeros kept
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
        except ValueError as exc:
            raise JwkError("invalid_jwk", "not a point on P-256") from exc
        return cls(x, y, key)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` (JWS form: R || S, 32 bytes each) is a valid ES256 signature of ``message``."""
        if len(signature) != 2 * COORDINATE_BYTES:
            return False
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        try:
            self._key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def jwk(self) -> dict[str, str]:
        return {"kty": "EC", "crv": "P-256", "x": b64url_encode(self.x), "y": b64url_encode(self.y)}

    def thumbprint(self) -> str:
        """RFC 7638 section 3.2: SHA-256 of the required members crv, kty, x, y in lexicographic order."""
        canonical = json.dumps(self.jwk(), separators=(",", ":"), sort_keys=True)
        return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())
