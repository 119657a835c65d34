"""JSON Web Keys for Ed25519: RFC 8037 section 2 (OKP keys) and RFC 7638 thumbprints."""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pybase64

from agentauth.keys.weak import WEAK_KEY, weak_key_reason


class JwkError(ValueError):
    """A JWK is not a valid Ed25519 OKP key; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    # Positional arguments: keywords cost a C function ~0.3 us per call, more than encoding a signature.
    return pybase64.b64encode(data, b"-_").rstrip(b"=").decode("ascii")


# The last character of a canonical encoding carries no stray low bits: with 2 characters over (1 byte) its
# 4 unused bits are 0, with 3 over (2 bytes) its 2 unused bits are 0.
# Public for the one caller that inlines b64url_decode (vc/jws.py decode_compact, four times per delegated token).
B64URL_CANONICAL_LAST = ("", "", "AQgw", "AEIMQUYcgkosw048")
B64URL_PADDING = ("", "", "==", "=")  # by len % 4; a remainder of 1 is never valid


def b64url_decode(value: str, *, canonical: bool = True) -> bytes:
    """Strict unpadded base64url: rejects padding, whitespace and characters outside the URL-safe alphabet.

    ``canonical`` also rejects non-zero trailing bits (two strings decoding to the same bytes). Signatures need
    it (no malleable encodings); a signed JWS segment does not, since the signature covers the encoded text.
    """
    # type() and the ``in`` operator, not isinstance: no builtin call (each one counts, see vc/jws.py).
    if (type(value) is not str and not isinstance(value, str)) or "=" in value or "+" in value or "/" in value:
        raise ValueError("not unpadded base64url")
    over = len(value) % 4
    if over == 1:
        raise ValueError("not unpadded base64url")
    try:
        # validate (the third argument) refuses any character outside the alphabet (and non-ASCII text) instead
        # of skipping it; with altchars both alphabets would decode, so '+' and '/' were refused above.
        # Positional arguments and our own padding: keywords cost ~0.3 us per call, more than a signature's decoding.
        raw = pybase64.b64decode(value + B64URL_PADDING[over], b"-_", True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError("not unpadded base64url") from exc
    if canonical and over and value[-1] not in B64URL_CANONICAL_LAST[over]:
        raise ValueError("not canonical base64url")
    return raw


def key_bytes(jwk: Mapping[str, Any], member: str) -> bytes:
    """The 32 bytes of base64url member ``member`` (an Ed25519 ``x``/``d``, a P-256 coordinate)."""
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
    public = key_bytes(jwk, "x")
    if (reason := weak_key_reason(public)) is not None:
        raise JwkError(WEAK_KEY, f"JWK member 'x': {reason}")
    return public


def parse_private_jwk(jwk: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(seed, public key) of a private Ed25519 JWK; the RFC 8037 ``d`` member is the 32-byte seed."""
    return key_bytes(jwk, "d"), parse_public_jwk(jwk)


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 section 3 thumbprint (SHA-256) of an OKP key: the required members crv, kty, x in order."""
    # RFC 8037 section 2: "the required members ... are crv, kty, and x" in lexicographic order, no whitespace.
    canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())
