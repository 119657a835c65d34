"""Request rate limits for the token and quickstart endpoints: GCRA, in memory or shared through Redis.

GCRA (generic cell rate algorithm, ITU-T I.371; the algorithm behind redis-cell and the examples of the IETF
"RateLimit header fields for HTTP" drafts) keeps one number per key, the theoretical arrival time (TAT) of the next
request. A limit of ``requests`` per ``period_seconds`` spaces requests ``T = period / requests`` apart and tolerates a
burst of ``requests`` at once: a hit is allowed when ``max(TAT, now) + T - now <= requests * T``, and then advances TAT
to ``max(TAT, now) + T``. A denied hit changes nothing and returns the wait until it would be allowed, which is ``T``
right after a full burst. Both backends compute in integer microseconds, so they agree to the microsecond.

Keys are the caller's namespace: one key is one bucket, so use a distinct key per endpoint and client
(``"token:" + client_id``) and always the same ``Limit`` with it.

``RedisRateLimiter`` raises ``RateLimiterUnavailable`` when Redis cannot be reached instead of allowing or denying on
its own; the caller chooses between failing open (log and serve) and failing closed (answer 503).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

__all__ = [
    "Limit",
    "MemoryRateLimiter",
    "RateLimiter",
    "RateLimiterUnavailable",
    "RedisRateLimiter",
    "build_rate_limiter",
]

_US = 1_000_000


@dataclass(frozen=True)
class Limit:
    requests: int  # allowed per period, and the largest burst
    period_seconds: float

    def __post_init__(self) -> None:
        if self.requests < 1 or not self.period_seconds > 0:
            raise ValueError(f"a limit needs requests >= 1 and period_seconds > 0, got {self}")

    @property
    def interval_us(self) -> int:
        """The emission interval T in whole microseconds, rounded up so a limit is never looser than asked."""
        return max(1, math.ceil(self.period_seconds * _US / self.requests))


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: Limit) -> float | None:
        """Count one request for key; None if allowed, else seconds until a retry can succeed (> 0)."""
        ...

    async def close(self) -> None: ...


class RateLimiterUnavailable(RuntimeError):
    """The shared limiter's store could not be reached; the request was neither counted nor judged."""


def _gcra(tat: int | None, now: int, interval: int, burst: int) -> tuple[int, int]:
    """One GCRA step in microseconds: ``(new_tat, 0)`` if allowed; ``(_, wait > 0)`` if denied (store nothing)."""
    new_tat = max(tat if tat is not None else now, now) + interval
    allow_at = new_tat - interval * burst
    return new_tat, max(0, allow_at - now)


class MemoryRateLimiter:
    """GCRA state in this process: right for one replica, tests and the embedded default.

    Entries sit in order of their last update. Each hit drops up to two expired entries from the front (a TAT in the
    past carries no state: a fresh key behaves the same). When more than ``max_keys`` remain, one pass drops every
    expired entry and then, if still needed, the entries whose TAT lies furthest in the past, down to 90 % of the cap;
    that pass runs at most once per ``max_keys // 10`` new keys, so a hit costs O(1) amortised.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._clock = clock
        self._max_keys = max_keys
        self._tats: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tats)

    async def hit(self, key: str, limit: Limit) -> float | None:
        # No await between read and write: the event loop cannot interleave two hits on one key.
        now = round(self._clock() * _US)
        new_tat, wait = _gcra(self._tats.get(key), now, limit.interval_us, limit.requests)
        if wait:
            return wait / _US
        self._tats[key] = new_tat
        self._tats.move_to_end(key)
        self._drop_expired_front(now)
        if len(self._tats) > self._max_keys:
            self._prune(now)
        return None

    async def close(self) -> None:
        self._tats.clear()

    def _drop_expired_front(self, now: int) -> None:
        for _ in range(2):
            oldest = next(iter(self._tats.items()), None)
            if oldest is None or oldest[1] > now:
                return
            del self._tats[oldest[0]]

    def _prune(self, now: int) -> None:
        live = {k: t for k, t in self._tats.items() if t > now}
        target = self._max_keys - self._max_keys // 10
        if len(live) > target:
            for k in sorted(live, key=live.__getitem__)[: len(live) - target]:
                del live[k]
        self._tats = OrderedDict((k, t) for k, t in self._tats.items() if k in live)


# KEYS[1]: the bucket; ARGV[1]: emission interval in microseconds; ARGV[2]: burst. Returns 0 or the wait in µs.
# Server time from TIME makes every replica judge by the same clock; Redis >= 5 replicates the script by its
# effects, so a write after TIME is allowed. The TAT is written with '%.0f' because Lua's tostring (used when a
# number is passed to redis.call) keeps only 14 digits, which would round an epoch in microseconds.
_GCRA_LUA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return allow_at - now
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return 0
"""


class RedisRateLimiter:
    """GCRA executed atomically in Redis by one Lua script, so all replicas share each limit.

    A key lives only until its TAT has passed (``PX`` on the write), so idle keys vanish on their own.
    ``hit`` raises ``RateLimiterUnavailable`` on any Redis failure, after ``timeout`` seconds at most per attempt
    and one immediate retry (which replaces a pooled connection that Redis closed, e.g. after a restart).
    """

    def __init__(self, url: str, *, prefix: str = "agentauth:rl:", timeout: float = 0.5) -> None:
        self._prefix = prefix
        self._redis: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        # EVALSHA first; on NOSCRIPT (a restarted or failed-over server) it loads the script and runs it again.
        self._script = self._redis.register_script(_GCRA_LUA)

    async def hit(self, key: str, limit: Limit) -> float | None:
        try:
            wait = int(await self._script(keys=[self._prefix + key], args=[limit.interval_us, limit.requests]))
        except (RedisError, OSError) as exc:
            raise RateLimiterUnavailable(f"rate limiter store unreachable: {type(exc).__name__}: {exc}") from exc
        return wait / _US if wait > 0 else None

    async def close(self) -> None:
        await self._redis.aclose()


def build_rate_limiter(redis_url: str | None) -> RateLimiter:
    """Redis when a URL is configured (several replicas), otherwise this process's memory."""
    if redis_url:
        return RedisRateLimiter(redis_url)
    return MemoryRateLimiter()
