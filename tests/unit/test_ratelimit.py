"""GCRA rate limiting (``agentauth.issuer.ratelimit``): in memory with a fake clock, and shared through a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
from redis.asyncio import Redis

from agentauth.issuer.ratelimit import (
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RateLimiterUnavailable,
    RedisRateLimiter,
    build_rate_limiter,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
US = 1e-6  # both backends count in whole microseconds

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def memory(clock: FakeClock) -> AsyncIterator[MemoryRateLimiter]:
    limiter = MemoryRateLimiter(clock=clock)
    yield limiter
    await limiter.close()


async def burst(limiter: RateLimiter, key: str, limit: Limit) -> list[float | None]:
    return [await limiter.hit(key, limit) for _ in range(limit.requests)]


# --- limits -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("requests", "period"), [(0, 1.0), (-1, 1.0), (1, 0.0), (1, -5.0), (1, float("nan"))])
def test_limit_rejects_nonsense(requests: int, period: float) -> None:
    with pytest.raises(ValueError, match="requests >= 1"):
        Limit(requests, period)


def test_interval_never_looser_than_asked() -> None:
    assert Limit(3, 1.0).interval_us == 333_334
    assert Limit(10, 60).interval_us == 6_000_000
    assert Limit(10**9, 1e-3).interval_us == 1


# --- in memory ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("requests", "period"), [(1, 60.0), (5, 10.0), (3, 1.0), (100, 60.0)])
async def test_memory_allows_exactly_the_burst_then_asks_for_one_interval(
    memory: MemoryRateLimiter, clock: FakeClock, requests: int, period: float
) -> None:
    limit = Limit(requests, period)
    assert await burst(memory, "k", limit) == [None] * requests

    retry = await memory.hit("k", limit)
    assert retry is not None
    assert retry > 0
    assert retry == pytest.approx(period / requests, abs=2 * US)
    assert await memory.hit("k", limit) == retry  # a denied hit is not counted

    clock.now += retry - 2 * US
    assert await memory.hit("k", limit) is not None
    clock.now += 2 * US
    assert await memory.hit("k", limit) is None
    assert await memory.hit("k", limit) == pytest.approx(period / requests, abs=2 * US)


async def test_memory_refills_at_the_limit_rate(memory: MemoryRateLimiter, clock: FakeClock) -> None:
    limit = Limit(4, 8.0)
    await burst(memory, "k", limit)
    clock.now += 4.0  # two intervals
    assert [await memory.hit("k", limit) for _ in range(3)] == [None, None, pytest.approx(2.0)]
    clock.now += 100.0  # idle for long: a full burst again, never more
    assert await burst(memory, "k", limit) == [None] * 4
    assert await memory.hit("k", limit) == pytest.approx(2.0)


async def test_memory_keys_are_independent(memory: MemoryRateLimiter) -> None:
    limit = Limit(2, 60.0)
    await burst(memory, "token:a", limit)
    assert await memory.hit("token:a", limit) is not None
    assert await burst(memory, "token:b", limit) == [None, None]
    assert await memory.hit("token:b", limit) is not None


async def test_memory_drops_expired_entries_while_serving(memory: MemoryRateLimiter, clock: FakeClock) -> None:
    limit = Limit(1, 1.0)
    for key in ("a", "b", "c"):
        await memory.hit(key, limit)
    assert len(memory) == 3
    clock.now += 5.0
    await memory.hit("d", limit)
    await memory.hit("e", limit)
    assert len(memory) == 2


async def test_memory_cap_evicts_the_oldest_tats(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock, max_keys=10)
    limit = Limit(1, 60.0)
    for i in range(10):
        assert await limiter.hit(f"k{i}", limit) is None
        clock.now += 0.1
    assert len(limiter) == 10

    await limiter.hit("k10", limit)
    assert len(limiter) == 9  # pruned to 90 % of the cap: k0 and k1 had the oldest TATs
    assert await limiter.hit("k2", limit) is not None
    assert await limiter.hit("k1", limit) is None  # forgotten, so a fresh bucket
    assert await limiter.hit("k0", limit) is None

    for i in range(100, 200):
        await limiter.hit(f"k{i}", limit)
        assert len(limiter) <= 10
    await limiter.close()
    assert len(limiter) == 0


async def test_memory_cap_drops_expired_entries_before_live_ones(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock, max_keys=3)
    long, short = Limit(1, 100.0), Limit(1, 1.0)
    await limiter.hit("front", long)  # live at the front stops the opportunistic sweep
    await limiter.hit("short", short)
    clock.now += 2.0
    await limiter.hit("b", long)
    await limiter.hit("c", long)
    assert len(limiter) == 3
    for key in ("front", "b", "c"):
        assert await limiter.hit(key, long) is not None
    await limiter.close()


async def test_build_rate_limiter_picks_the_backend() -> None:
    memory = build_rate_limiter(None)
    assert isinstance(memory, MemoryRateLimiter)
    assert isinstance(build_rate_limiter(""), MemoryRateLimiter)
    shared = build_rate_limiter(REDIS_URL)
    assert isinstance(shared, RedisRateLimiter)
    await memory.close()
    await shared.close()


# --- Redis ------------------------------------------------------------------------------------------------------


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    prefix = f"agentauth:rl:test-{uuid.uuid4().hex}:"
    yield prefix
    admin = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in admin.scan_iter(match=prefix + "*")]
        if keys:
            await admin.delete(*keys)
    finally:
        await admin.aclose()


@pytest.fixture
async def admin() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def shared(prefix: str) -> AsyncIterator[RedisRateLimiter]:
    limiter = RedisRateLimiter(REDIS_URL, prefix=prefix)
    yield limiter
    await limiter.close()


async def test_redis_allows_exactly_the_burst_then_asks_for_one_interval(shared: RedisRateLimiter) -> None:
    limit = Limit(5, 60.0)
    assert await burst(shared, "k", limit) == [None] * 5
    retry = await shared.hit("k", limit)
    assert retry is not None
    assert 11.0 < retry <= 12.0  # server time moved on a little since the first hit
    second = await shared.hit("k", limit)
    assert second is not None
    assert second <= retry  # a denied hit is not counted


async def test_redis_allows_again_after_the_retry_after(shared: RedisRateLimiter) -> None:
    limit = Limit(2, 0.2)
    assert await burst(shared, "k", limit) == [None, None]
    retry = await shared.hit("k", limit)
    assert retry is not None
    assert 0 < retry <= 0.1
    await anyio.sleep(retry + 0.005)
    assert await shared.hit("k", limit) is None
    assert await shared.hit("k", limit) is not None


async def test_redis_keys_are_independent(shared: RedisRateLimiter) -> None:
    limit = Limit(1, 60.0)
    assert await shared.hit("a", limit) is None
    assert await shared.hit("a", limit) is not None
    assert await shared.hit("b", limit) is None


async def test_redis_replicas_share_one_limit(prefix: str) -> None:
    limit = Limit(4, 60.0)
    replica_a = RedisRateLimiter(REDIS_URL, prefix=prefix)
    replica_b = RedisRateLimiter(REDIS_URL, prefix=prefix)
    try:
        assert [await replica_a.hit("client", limit) for _ in range(2)] == [None, None]
        assert [await replica_b.hit("client", limit) for _ in range(2)] == [None, None]
        assert await replica_a.hit("client", limit) is not None
        assert await replica_b.hit("client", limit) is not None
    finally:
        await replica_a.close()
        await replica_b.close()


async def test_redis_keys_are_prefixed_and_expire(shared: RedisRateLimiter, prefix: str, admin: Redis) -> None:
    limit = Limit(2, 10.0)
    await shared.hit("k", limit)
    assert await admin.keys(prefix + "*") == [(prefix + "k").encode()]
    assert 4_900 < await admin.pttl(prefix + "k") <= 5_000  # until the TAT: one interval ahead
    await shared.hit("k", limit)
    assert 9_900 < await admin.pttl(prefix + "k") <= 10_000


async def test_redis_reloads_a_script_the_server_does_not_know(shared: RedisRateLimiter) -> None:
    shared._script.sha = "0" * 40  # as after a server restart or failover: EVALSHA answers NOSCRIPT
    assert await shared.hit("k", Limit(1, 60.0)) is None
    assert await shared.hit("k", Limit(1, 60.0)) is not None


async def test_redis_unreachable_raises_rate_limiter_unavailable() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1", timeout=0.2)
    try:
        with anyio.fail_after(5):
            with pytest.raises(RateLimiterUnavailable) as caught:
                await limiter.hit("k", Limit(1, 1.0))
        assert isinstance(caught.value, RuntimeError)
        assert caught.value.__cause__ is not None
    finally:
        await limiter.close()
