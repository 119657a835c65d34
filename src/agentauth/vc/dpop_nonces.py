"""DPoP nonces (RFC 9449 sections 8 and 9): values a server hands its clients in the ``DPoP-Nonce`` header and
then requires in their proofs, which limits a proof's use to the nonce's short life (a proof signed ahead of
time, by whoever briefly held the key, becomes useless).

Section 8: "The nonce is opaque to the client"; the server decides how it makes and checks them. Here a nonce is
the keyed hash of a period number - ``HMAC-SHA256(secret, period)``, 128 bits in base64url -, so:

* it **rotates**: a new value each ``period`` seconds; the current and the previous value are accepted, so a
  nonce handed out at the end of a period still works for a while (at least one period, at most two);
* it **works across replicas** with no shared state: every replica holding the same secret gives and accepts the
  same values (the servers' clocks must agree to within a period);
* it cannot be guessed or made ahead of time without the secret.

Nothing here reads a clock: each call takes ``now``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, Protocol

from agentauth.keys import b64url_encode

DEFAULT_PERIOD_SECONDS: Final = 300.0
_LABEL: Final = b"agentauth dpop-nonce v1\n"


class NonceSource(Protocol):
    """What ``check_proof`` asks when a server requires nonces: which value to hand out now, and whether a
    proof's ``nonce`` claim is still one it accepts."""

    def current(self, now: float) -> str: ...

    def accepts(self, nonce: object, now: float) -> bool: ...


class DPoPNonces:
    """Rotating nonces from ``secret`` (at least 16 bytes; give every replica the same one)."""

    def __init__(self, secret: bytes, *, period: float = DEFAULT_PERIOD_SECONDS) -> None:
        if len(secret) < 16:
            raise ValueError("a DPoP nonce secret needs at least 16 bytes")
        if period <= 0:
            raise ValueError("period must be positive")
        self._secret = secret
        self.period = period

    def _value(self, number: int) -> str:
        digest = hmac.new(self._secret, _LABEL + str(number).encode("ascii"), hashlib.sha256).digest()
        return b64url_encode(digest[:16])

    def current(self, now: float) -> str:
        """The nonce to send in ``DPoP-Nonce`` at ``now``."""
        return self._value(int(now // self.period))

    def accepts(self, nonce: object, now: float) -> bool:
        """Whether ``nonce`` is this period's or the previous one's (constant time against both)."""
        if not isinstance(nonce, str) or len(nonce) > 64:
            return False
        number = int(now // self.period)
        given = nonce.encode("ascii", "replace")
        current = hmac.compare_digest(given, self._value(number).encode("ascii"))
        previous = hmac.compare_digest(given, self._value(number - 1).encode("ascii"))
        return current or previous
