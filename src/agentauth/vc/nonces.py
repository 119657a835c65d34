"""Single-use presentation nonces: a verifier accepts each challenge once (replay protection).

In memory and per process; a verifier running several replicas plugs in a shared implementation with the
same ``consume`` signature.
"""

from __future__ import annotations

import heapq


class NonceRegistry:
    """Remembers consumed nonces until the presentation carrying them would have expired anyway."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self._max = max_entries

    def consume(self, nonce: str, *, until: float, now: float) -> bool:
        """Record ``nonce``; False when it was already consumed and is still remembered."""
        while self._expiry and self._expiry[0][0] <= now:
            _, old = heapq.heappop(self._expiry)
            if self._seen.get(old, now + 1) <= now:
                del self._seen[old]
        if nonce in self._seen:
            return False
        if len(self._seen) >= self._max:
            # Refuse rather than forget: forgetting a live nonce would re-open replay.
            return False
        self._seen[nonce] = until
        heapq.heappush(self._expiry, (until, nonce))
        return True
