"""Compact JWS with Ed25519 (RFC 7515 section 7.1, RFC 8037 section 3.1, RFC 9864).

Written out rather than delegated to a general JOSE library because the credential path is hot and the
profile is tiny: one key type, one signature algorithm, compact serialization only. Measured on this
machine, joserfc's encode reached 55% of a raw Ed25519 sign; this reaches > 85% (bench/core.py).

Parsing is strict: exactly three segments, canonical unpadded base64url, a JSON object header with an
allow-listed ``alg``, no ``crit`` we do not understand, and no header-supplied keys (``jwk``, ``jku``,
``x5u``, ``x5c``): the verifier alone decides which keys it trusts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
import pybase64

from agentauth.keys import KeyPair, PublicKey, b64url_decode, b64url_encode
from agentauth.keys.jwk import B64URL_CANONICAL_LAST, B64URL_PADDING
from agentauth.vc.errors import MALFORMED, UNSUPPORTED_ALG, UNTRUSTED_KEY, VerificationError

# RFC 9864 deprecates the polymorphic "EdDSA" in favour of "Ed25519"; both denote Ed25519 here. We sign
# with "EdDSA" because that is what deployed verifiers accept today.
ALLOWED_ALGORITHMS = frozenset({"EdDSA", "Ed25519"})
SIGNING_ALGORITHM = "EdDSA"
_FORBIDDEN_HEADER_PARAMS = ("jwk", "jku", "x5u", "x5c", "crit")
MAX_TOKEN_LENGTH = 64 * 1024


def _json_segment(data: Mapping[str, Any]) -> str:
    # orjson: compact UTF-8 JSON, rejects NaN and non-string keys; ~6x faster than json.dumps on a token.
    return b64url_encode(orjson.dumps(data))


def encode_header(alg: str = SIGNING_ALGORITHM, typ: str | None = None, kid: str | None = None) -> str:
    """The encoded protected header; callers signing many tokens with one key reuse it."""
    header: dict[str, str] = {"alg": alg}
    if typ is not None:
        header["typ"] = typ
    if kid is not None:
        header["kid"] = kid
    return _json_segment(header)


def sign_compact(encoded_header: str, payload: Mapping[str, Any], key: KeyPair) -> str:
    """``header.payload.signature`` over an already encoded header (see ``encode_header``)."""
    signing_input = f"{encoded_header}.{b64url_encode(orjson.dumps(payload))}"  # _json_segment, inline
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode('ascii')))}"


@dataclass(frozen=True, slots=True)
class ParsedJws:
    """A compact JWS split and decoded, signature not yet checked."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes

    def verify_with(self, key: PublicKey) -> bool:
        return key.verify(self.signature, self.signing_input)


def _decode_json(segment: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(b64url_decode(segment, canonical=False))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise VerificationError(MALFORMED, f"{what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise VerificationError(MALFORMED, f"{what} is not a JSON object")
    return value


@lru_cache(maxsize=256)
def _checked_header(segment: str) -> dict[str, Any]:
    """The decoded header of an acceptable JWS. An issuer signs with a handful of distinct headers (one per key
    and ``typ``), so these are decoded and checked once, not per token; the bounded cache keeps a flood of
    distinct headers from growing memory. Only headers that pass the checks are cached (a raise is not)."""
    header = _decode_json(segment, "header")
    alg = header.get("alg")
    # RFC 8725 section 3.1: "libraries MUST enable the caller to specify a supported set of algorithms".
    if alg not in ALLOWED_ALGORITHMS:
        raise VerificationError(UNSUPPORTED_ALG, f"alg {alg!r} is not in the allow-list (EdDSA, Ed25519)")
    for param in _FORBIDDEN_HEADER_PARAMS:
        if param in header:
            raise VerificationError(UNTRUSTED_KEY, f"header parameter {param!r} is not accepted")
    return header


def decode_compact(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, payload, signing input, signature) of a compact JWS, signature not yet checked; the checks of
    ``parse_compact``, without building a ``ParsedJws`` (the verifier's hot path).

    Every builtin call here runs four times per depth-3 delegated token, and on a slower interpreter each costs
    more than the work it does: type tests are ``type(x) is T`` (no call) before the exact ``isinstance``, dots
    are found with one search from each end plus the ``in`` operator, and a signature's length is read off its
    encoding (86 characters decode to 64 bytes, no other length does)."""
    if type(token) is not str and not isinstance(token, str):
        raise VerificationError(MALFORMED, "token is not a string of acceptable length")
    length = len(token)
    if length > MAX_TOKEN_LENGTH:
        raise VerificationError(MALFORMED, "token is not a string of acceptable length")
    # str.find runs on memchr; str.split walks the token character by character (a 7 kB delegated token).
    first = token.find(".")
    second = token.rfind(".")
    payload_segment = token[first + 1 : second]
    if first == second or "." in payload_segment:  # also when there is no dot at all: both are -1
        raise VerificationError(MALFORMED, f"compact JWS needs 3 segments, got {token.count('.') + 1}")
    header = _checked_header(token[:first])
    signature_segment = token[second + 1 :]
    if length - second != 87:  # not the 86 characters of 64 bytes: b64url_decode says whether it is base64url
        try:
            b64url_decode(signature_segment)
        except ValueError as exc:
            raise VerificationError(MALFORMED, "signature is not base64url") from exc
        raise VerificationError(MALFORMED, "an Ed25519 signature is 64 bytes")
    # b64url_decode's tests and decoding, inline for both segments (two Python calls and two len() fewer per
    # token), the lengths known from the dots: 86 characters are 2 over a multiple of 4; canonical for the
    # signature only (see b64url_decode). pybase64 raises binascii.Error, a ValueError, on a character outside
    # the alphabet; orjson.JSONDecodeError is a ValueError too.
    try:
        if (
            "=" in signature_segment
            or "+" in signature_segment
            or "/" in signature_segment
            or signature_segment[85] not in B64URL_CANONICAL_LAST[2]
        ):
            raise ValueError("not canonical unpadded base64url")
        signature = pybase64.b64decode(signature_segment + "==", b"-_", True)
    except ValueError as exc:
        raise VerificationError(MALFORMED, "signature is not base64url") from exc
    over = (second - first - 1) % 4
    try:
        if over == 1 or "=" in payload_segment or "+" in payload_segment or "/" in payload_segment:
            raise ValueError("not unpadded base64url")
        payload = orjson.loads(pybase64.b64decode(payload_segment + B64URL_PADDING[over], b"-_", True))
    except ValueError as exc:
        raise VerificationError(MALFORMED, "payload is not base64url JSON") from exc
    if type(payload) is not dict:  # what orjson returns for an object: exactly dict
        raise VerificationError(MALFORMED, "payload is not a JSON object")
    # Both segments decoded as base64url, so they are ASCII: the signing input is the token up to its last dot.
    return header, payload, token[:second].encode("ascii"), signature


def parse_compact(token: str) -> ParsedJws:
    """Split and decode a compact JWS, enforcing the algorithm allow-list before anything else.

    The returned ``header`` may be shared between tokens with the same header: read it, do not change it.
    """
    return ParsedJws(*decode_compact(token))
