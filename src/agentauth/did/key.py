"""The did:key method, Ed25519 only (W3C CCG "The did:key Method" v0.7, sections 3.1.2 and 3.1.3).

``did:key:`` + multibase base58btc (``z``) of multicodec ``ed25519-pub`` (varint 0xed 0x01) followed by the
32-byte public key. Every Ed25519 did:key therefore starts with ``did:key:z6Mk``.
"""

from __future__ import annotations

import base58

from agentauth.keys.weak import WEAK_KEY, weak_key_reason

DID_KEY_PREFIX = "did:key:"
ED25519_PUB_MULTICODEC = b"\xed\x01"
X25519_PUB_MULTICODEC = b"\xec\x01"
ED25519_PUBLIC_KEY_SIZE = 32

# Curve25519 field prime, for the Edwards -> Montgomery map (RFC 7748 section 4.1).
_P = 2**255 - 19


class DidKeyError(ValueError):
    """A string is not a valid Ed25519 did:key; ``code`` says precisely why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode_multibase_key(public_key: bytes, codec: bytes = ED25519_PUB_MULTICODEC) -> str:
    """Multibase base58btc of ``codec || key``: the method-specific id of a did:key."""
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise DidKeyError("invalid_key_length", f"public key must be 32 bytes, got {len(public_key)}")
    return "z" + base58.b58encode(codec + public_key).decode("ascii")


def encode_did_key(public_key: bytes) -> str:
    """The did:key of a raw 32-byte Ed25519 public key."""
    return DID_KEY_PREFIX + encode_multibase_key(public_key)


def decode_multibase_key(value: str) -> bytes:
    """The raw Ed25519 public key inside a ``z6Mk...`` multibase value."""
    if not value:
        raise DidKeyError("invalid_did", "empty method-specific identifier")
    # did:key v0.7 section 3.1.2: "the multibase base58-btc ... encoding MUST be used" (prefix 'z').
    if value[0] != "z":
        raise DidKeyError("unsupported_multibase", f"multibase prefix {value[0]!r} is not 'z' (base58btc)")
    try:
        raw = base58.b58decode(value[1:].encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise DidKeyError("invalid_base58", "method-specific identifier is not valid base58btc") from exc
    if raw[:2] != ED25519_PUB_MULTICODEC:
        raise DidKeyError("unsupported_multicodec", f"multicodec 0x{raw[:2].hex()} is not ed25519-pub (0xed01)")
    key = raw[2:]
    if len(key) != ED25519_PUBLIC_KEY_SIZE:
        raise DidKeyError("invalid_key_length", f"Ed25519 public key must be 32 bytes, got {len(key)}")
    if (reason := weak_key_reason(key)) is not None:
        raise DidKeyError(WEAK_KEY, reason)
    return key


def decode_did_key(did: str) -> bytes:
    """The raw 32-byte Ed25519 public key of ``did:key:z6Mk...``; a DID URL fragment is ignored."""
    if not isinstance(did, str) or not did.startswith(DID_KEY_PREFIX):
        raise DidKeyError("invalid_did", "not a did:key identifier")
    method_specific = did[len(DID_KEY_PREFIX) :].split("#", 1)[0]
    return decode_multibase_key(method_specific)


def is_did_key(value: str) -> bool:
    """True when ``value`` decodes as an Ed25519 did:key."""
    try:
        decode_did_key(value)
    except DidKeyError:
        return False
    return True


def ed25519_to_x25519(public_key: bytes) -> bytes:
    """The X25519 public key birationally equivalent to an Ed25519 one (RFC 7748 section 4.1: u = (1+y)/(1-y)).

    did:key v0.7 section 3.1.3 derives the ``keyAgreement`` key of an Ed25519 did:key this way.
    """
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise DidKeyError("invalid_key_length", "Ed25519 public key must be 32 bytes")
    y = int.from_bytes(public_key, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return u.to_bytes(32, "little")
