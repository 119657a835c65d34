"""Secrets we hand out: API keys and refresh tokens. High-entropy, so a keyed SHA-256 is the right hash
(argon2/bcrypt protect low-entropy passwords and would cap the token endpoint at a few requests per second)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

API_KEY_PREFIX = "ak_live_"
API_KEY_LOOKUP_CHARS = 12  # of the random part: 72 bits, enough to index, useless to guess the rest
REFRESH_TOKEN_PREFIX = "rt_"
# Every answer that hands out one of these secrets (or a token), through every adapter: RFC 6749 section 5.1,
# token responses "MUST include ... Cache-Control: no-store" (Pragma for HTTP/1.0 caches).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def new_api_key() -> tuple[str, str]:
    """(raw key, lookup prefix). ``ak_live_`` + base64url of 32 random bytes."""
    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return raw, api_key_lookup_prefix(raw)


def api_key_lookup_prefix(raw: str) -> str:
    return raw[: len(API_KEY_PREFIX) + API_KEY_LOOKUP_CHARS]


_API_KEY_SHAPE = re.compile(r"ak_live_[A-Za-z0-9_-]{32,92}")


def looks_like_api_key(raw: str) -> bool:
    """Shape check before any lookup: a malformed secret must never reach (and fail) a shared batch query."""
    return isinstance(raw, str) and _API_KEY_SHAPE.fullmatch(raw) is not None


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


class SecretHasher:
    """HMAC-SHA256 under a server-side key derived from the KEK: a stolen database alone cannot test guesses."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def hash(self, secret: str) -> str:
        return hmac.new(self._key, secret.encode("utf-8"), hashlib.sha256).hexdigest()

    def matches(self, secret: str, stored_hash: str) -> bool:
        # Constant-time comparison: the time taken does not reveal how many leading characters matched.
        return hmac.compare_digest(self.hash(secret), stored_hash)
