"""JSON Web Keys for Ed25519: RFC 8037 section 2 (OKP keys) and RFC 7638 thumbprints."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any


class JwkError(ValueError):
    """A JWK is not a valid Ed25519 OKP key; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str) -> bytes:
    """Strict base64url without padding: rejects padding, whitespace and non-alphabet characters."""
    if not isinstance(value, str) or "=" in value or len(value) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not unpadded base64url") from exc
    # urlsafe_b64decode silently drops characters outside the alphabet; re-encoding catches that.
    if b64url_encode(raw) != value:
        raise ValueError("not canonical base64url")
    return raw


def _key_bytes(jwk: Mapping[str, Any], member: str) -> bytes:
    value = jwk.get(member)
    if not isinstance(value, str):
        raise JwkError("invalid_jwk", f"JWK member {member!r} is missing")
    try:
        raw = b64url_decode(value)
    except ValueError as exc:
        raise JwkError("invalid_jwk", f"JWK member {member!r} is not base64url") from exc
    if len(raw) != 32:
        raise JwkError("invalid_jwk", f"JWK member {member!r} must hold 32 bytes, got {len(raw)}")
    return raw


def parse_public_jwk(jwk: Mapping[str, Any]) -> bytes:
    """The raw public key of an RFC 8037 Ed25519 JWK (``kty: OKP``, ``crv: Ed25519``)."""
    if not isinstance(jwk, Mapping):
        raise JwkError("invalid_jwk", "JWK must be a JSON object")
    if jwk.get("kty") != "OKP":
        raise JwkError("unsupported_key_type", "JWK kty must be 'OKP'")
    if jwk.get("crv") != "Ed25519":
        raise JwkError("unsupported_key_type", "JWK crv must be 'Ed25519'")
    return _key_bytes(jwk, "x")


def parse_private_jwk(jwk: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(seed, public key) of a private Ed25519 JWK; the RFC 8037 ``d`` member is the 32-byte seed."""
    return _key_bytes(jwk, "d"), parse_public_jwk(jwk)


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 section 3 thumbprint (SHA-256) of an OKP key: the required members crv, kty, x in order."""
    # RFC 8037 section 2: "the required members ... are crv, kty, and x" in lexicographic order, no whitespace.
    canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())
