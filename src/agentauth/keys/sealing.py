"""Encryption of private keys at rest: AES-256-GCM (NIST SP 800-38D) under a key-encryption key (KEK).

Sealed form: ``v1.`` + base64url(12-byte random nonce || ciphertext || 16-byte tag). The associated data
binds a ciphertext to what it protects (for issuer keys, the ``kid``), so a sealed key cannot be swapped
onto another row.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agentauth.keys.jwk import b64url_decode, b64url_encode

_VERSION = "v1."


class SealingError(ValueError):
    """A KEK or a sealed value is malformed, or decryption failed (wrong KEK or tampered data)."""


def generate_kek() -> str:
    """A new random 256-bit KEK in its textual form (base64url)."""
    return b64url_encode(os.urandom(32))


class KeyEncryptionKey:
    """A 256-bit AES-GCM key that seals and opens secrets."""

    __slots__ = ("_aead", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SealingError("the key-encryption key must be 32 bytes (256 bits)")
        self._aead = AESGCM(key)
        self._key = key

    def derive(self, purpose: str) -> bytes:
        """A separate 256-bit key for ``purpose`` (HKDF-SHA256, RFC 5869), e.g. the API-key hashing key."""
        return HKDF(hashes.SHA256(), 32, salt=None, info=f"agentauth/{purpose}".encode()).derive(self._key)

    @classmethod
    def from_text(cls, text: str) -> KeyEncryptionKey:
        """From base64url (43 characters) or hex (64 characters) text, as found in the environment or a file."""
        text = text.strip()
        try:
            raw = bytes.fromhex(text) if len(text) == 64 else b64url_decode(text)
        except ValueError as exc:
            raise SealingError("the key-encryption key must be 32 bytes as base64url or hex") from exc
        return cls(raw)

    def __repr__(self) -> str:
        return "KeyEncryptionKey(<redacted>)"

    def seal(self, plaintext: bytes, associated_data: bytes) -> str:
        nonce = os.urandom(12)
        return _VERSION + b64url_encode(nonce + self._aead.encrypt(nonce, plaintext, associated_data))

    def open(self, sealed: str, associated_data: bytes) -> bytes:
        if not sealed.startswith(_VERSION):
            raise SealingError("unknown sealed-value version")
        try:
            blob = b64url_decode(sealed[len(_VERSION) :])
            return self._aead.decrypt(blob[:12], blob[12:], associated_data)
        except (ValueError, InvalidTag) as exc:
            raise SealingError("cannot decrypt: wrong key-encryption key or tampered data") from exc
