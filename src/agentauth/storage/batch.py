"""Micro-batching: concurrent callers' operations run together in one database round, one transaction.

Each statement through an async driver costs several thread or network round trips, and each transaction
several more; on the hot paths (token issuance, token lookups) we therefore let requests that arrive while
a round is running queue up, and run them as the next round: one query with ``IN (...)`` instead of N, one
``executemany`` insert instead of N, one commit instead of N. A caller's result is delivered only after its
round committed, so nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("agentauth.batch")

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_MAX_BATCH = 256  # = Settings.batch_max_size's default

Handler = Callable[[Sequence[T]], Awaitable[Sequence["R | BaseException"]]]
# Told, once each round ended (done or failed), the batcher's name, the requests it took and the seconds it ran
# (``/metrics``: ``api/metrics.py``). The rounds are the database's work - lookups, inserts, write plans, reads -,
# so their durations are the database latency the server sees (the issuance rounds' include signing).
RoundObserver = Callable[[str, int, float], None]
_observer: RoundObserver | None = None


def observe_rounds(observer: RoundObserver | None) -> None:
    """Have ``observer`` told of every round of every batcher in this process (None: stop). One observer per
    process - the app with metrics on sets it -, so a round costs one global read when nobody listens."""
    global _observer  # noqa: PLW0603 - one hook per process, like a logging handler
    _observer = observer


def observe(name: str, size: int, seconds: float) -> None:
    """Report database work done outside a batcher (a read straight on a connection) like a round of ``name``."""
    if _observer is not None:
        _observer(name, size, seconds)


def _name_of(handler: Callable[..., object]) -> str:
    """``TokenStateLookup.round`` for the bound method ``TokenStateLookup._round``: a stable, bounded label."""
    return getattr(handler, "__qualname__", type(handler).__name__).replace("._", ".")


class MicroBatcher(Generic[T, R]):
    """Runs ``handler`` over whatever accumulated while the previous round ran (at most ``max_batch``: the
    ``AGENTAUTH_BATCH_MAX_SIZE`` setting)."""

    def __init__(self, handler: Handler[T, R], max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._handler = handler
        self._max = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.name = _name_of(handler)

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None or self._task.done():
            # A context of its own: a round serves many requests, so its log lines carry none's request id.
            self._task = asyncio.create_task(self._drain(), context=contextvars.Context())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._max], self._queue[self._max :]
            started = time.perf_counter()
            try:
                results = await self._handler([item for item, _ in batch])
            except BaseException as exc:  # the whole round failed: every caller sees why
                if _observer is not None:
                    _observer(self.name, len(batch), time.perf_counter() - started)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                    raise
                continue
            if _observer is not None:
                _observer(self.name, len(batch), time.perf_counter() - started)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
