"""The revocation registry (Bitstring Status List v1.0): index allocation and list publication.

Allocation: each process reserves a whole *block* of indexes at a time - a random free block of the open
list, made exclusive by the ``status_blocks`` primary key, so no index is ever handed out twice across
processes or replicas - and deals its indexes in random order (section 6.1 privacy advice: random, not
sequential). A crash forfeits the rest of a block; it is never reused, which wastes slots, never safety.
When every block of a list is reserved the list is marked full and a new one opens.

Publication: the signed list is rebuilt only when the list's ``version`` moved (bumped in the transaction
that revokes), then cached in the row so every replica serves the same bytes until the next change. Each list
has a twin of purpose ``suspension`` (same indexes, its own version and publication): every credential carries
both entries, so the kill switch can stop an agent reversibly - offline verifiers included.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentauth.errors import NotFound
from agentauth.storage import status_lists
from agentauth.storage.ports import StatusBlocks
from agentauth.storage.records import StatusListState
from agentauth.vc import CredentialIssuer, StatusEntry, StatusList, VerificationError
from agentauth.vc.jws import parse_compact

LIST_SIZE = 131_072
BLOCK_SIZE = 512
# A published list stays valid this long even with no change; it is re-signed before it runs out.
PUBLISHED_VALIDITY = timedelta(days=1)
# A process deals from a reserved block for at most this long; a list is recycled only after all its blocks
# are older than this, so no process can still be dealing indexes from a list being cleared.
BLOCK_MAX_AGE = timedelta(minutes=10)
# Reserve ahead enough blocks for about this long at the current issuing rate, at most MAX_BLOCKS_AHEAD.
SPARE_SECONDS = 10
MAX_BLOCKS_AHEAD = 16


@dataclass(frozen=True, slots=True)
class PublishedList:
    jwt: str
    etag: str
    version: int


@dataclass(frozen=True, slots=True)
class _Block:
    list_id: int
    indexes: list[int]
    reserved_at: datetime


def _retrieve(task: asyncio.Task[_Block]) -> None:
    if not task.cancelled():
        task.exception()  # seen here, so an unused failed reservation is not reported as never retrieved


class StatusRegistry:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        issuer: CredentialIssuer,
        list_url_templates: Mapping[str, str],
        ttl_seconds: int,
        clock: Callable[[], datetime],
        blocks: StatusBlocks,
        reads: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self._sessions = sessions
        self._blocks = blocks
        # Reads must not queue behind writers (on SQLite a plain session on the write engine BEGINs IMMEDIATE).
        self._reads = reads or sessions
        self._issuer = issuer
        # Per purpose (revocation, suspension), ``{list_id}`` in it; bootstrap hands them in.
        self._list_urls = dict(list_url_templates)
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._list_id: int | None = None
        self._free: list[int] = []
        self._reserved_at: datetime | None = None
        self._spare: asyncio.Task[_Block] | None = None
        self._dealt = 0  # size of the current reservation

    def list_url(self, list_id: int, purpose: str = "revocation") -> str:
        """The URL of a list (``purpose`` revocation) or of its twin of purpose suspension."""
        return self._list_urls[purpose].format(list_id=list_id)

    @property
    def _republish_after(self) -> timedelta:
        return min(PUBLISHED_VALIDITY / 2, timedelta(seconds=self._ttl) / 2)

    def reached_by(self, published_at: datetime | None, now: datetime) -> datetime | None:
        """When every verifier honouring the ttl has a change made to a list at ``now``, given when the copy
        served until then was signed (``published_at``; None: never fetched - no verifier holds a copy, the first
        fetch has the change). The last fetch that could get the old copy came before ``now`` and before the copy
        was due for re-signing (``published``: every half ttl); such a copy is kept for one ttl. A time not after
        ``now``: no verifier still relies on an older copy."""
        if published_at is None:
            return None
        return min(now, published_at + self._republish_after) + timedelta(seconds=self._ttl)

    def entries(self, slot: StatusEntry) -> tuple[StatusEntry, StatusEntry]:
        """The ``credentialStatus`` of a credential given ``slot`` (``allocate``): its revocation entry, and the same
        index in the list's suspension twin - the bit the kill switch's suspend sets and resume clears."""
        list_id, index = self.parse_entry(slot)
        return slot, StatusEntry(self.list_url(list_id, "suspension"), index, "suspension")

    async def allocate(self) -> StatusEntry:
        """A fresh (list, index) slot for one credential."""
        async with self._lock:
            now = self._clock()
            if not self._free or self._reserved_at is None or now - self._reserved_at > BLOCK_MAX_AGE:
                await self._next_block(now)
            if len(self._free) <= BLOCK_SIZE // 4 and self._spare is None:
                # Reserve the next blocks ahead, off the request path, enough for about SPARE_SECONDS at the
                # current rate. Measured: reserving on demand made every 512th token wait for a write
                # transaction with every request behind it; and under load the reservation's transaction holds
                # SQLite's writer for 10-30 ms (each statement waits for the busy event loop), so it should run
                # every few seconds, not several times a second.
                used = self._dealt - len(self._free)
                elapsed = max((now - self._reserved_at).total_seconds(), 1e-3) if self._reserved_at else 1.0
                count = min(MAX_BLOCKS_AHEAD, max(1, math.ceil(used / elapsed * SPARE_SECONDS / BLOCK_SIZE)))
                self._spare = asyncio.create_task(self._reserve_block(count))
                self._spare.add_done_callback(_retrieve)
            assert self._list_id is not None
            # Dealt in random order (section 6.1's privacy advice), drawn one at a time: shuffling a whole
            # reservation up front held the event loop for up to 18 ms (measured, 8,192 indexes).
            free = self._free
            pick = secrets.randbelow(len(free))
            free[pick], free[-1] = free[-1], free[pick]
            return StatusEntry(self.list_url(self._list_id), free.pop())

    async def _next_block(self, now: datetime) -> None:
        block: _Block | None = None
        if self._spare is not None:
            spare, self._spare = self._spare, None
            try:
                block = await asyncio.shield(spare)
            except Exception:  # reserving ahead failed (database away?): try once more, now, and let that fail
                block = None
            if block is not None and now - block.reserved_at > BLOCK_MAX_AGE:
                block = None  # reserved too long ago to deal from (see BLOCK_MAX_AGE)
        if block is None:
            block = await self._reserve_block()
        self._list_id, self._free, self._reserved_at = block.list_id, block.indexes, block.reserved_at
        self._dealt = len(block.indexes)

    async def close(self) -> None:
        if self._spare is not None:
            self._spare.cancel()
            with contextlib.suppress(BaseException):
                await self._spare

    @staticmethod
    def parse_entry(entry: StatusEntry) -> tuple[int, int]:
        return int(entry.list_url.rsplit("/", 1)[1]), entry.index

    async def _reserve_block(self, count: int = 1) -> _Block:
        """Up to ``count`` random free blocks of the open list. Choosing reads on the read engine; only the
        reservation itself writes (a block someone else took meanwhile is skipped by the primary key)."""
        for _ in range(1000):
            async with self._reads() as session:
                opened = await status_lists.oldest_open(session)
                taken = await status_lists.taken_blocks(session, opened[0]) if opened else set()
            if opened is None:
                async with self._sessions.begin() as session:
                    await status_lists.open_list(session, LIST_SIZE, self._clock())  # unless another just did
                continue
            list_id, size = opened
            free = [b for b in range(size // BLOCK_SIZE) if b not in taken]
            if not free:
                async with self._sessions.begin() as session:
                    await status_lists.mark_full(session, list_id)
                continue
            wanted = secrets.SystemRandom().sample(free, min(count, len(free)))
            got = await self._blocks.reserve_blocks(list_id, wanted, self._clock(), per_list=size // BLOCK_SIZE)
            if not got:
                continue  # other processes took them (or filled the list) since we read: draw again
            indexes = [i for block in got for i in range(block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE)]
            return _Block(list_id, indexes, self._clock())
        raise RuntimeError("could not reserve a status-list block")

    async def recycle(self) -> None:
        """Reuse lists whose every credential has expired: clear them (the published list turns all-zero), and
        only after verifiers' caches of the old list have run out (two ttls) deal their indexes again -
        otherwise a stale cached bit could make a fresh credential look revoked."""
        now = self._clock()
        async with self._sessions.begin() as session:
            for list_id, _ in await status_lists.lists_in_state(session, StatusListState.FULL):
                newest_block = await status_lists.newest_block(session, list_id)
                if newest_block is not None and now - newest_block < BLOCK_MAX_AGE + timedelta(minutes=1):
                    continue
                if not await status_lists.has_live_credentials(session, list_id, now):
                    await status_lists.clear(session, list_id, now)
            for list_id, cleared_at in await status_lists.lists_in_state(session, StatusListState.CLEARED):
                if cleared_at is not None and now - cleared_at >= timedelta(seconds=2 * self._ttl):
                    await status_lists.reopen(session, list_id)

    async def published(self, list_id: int, purpose: str = "revocation") -> PublishedList:
        """The current signed ``BitstringStatusListCredential`` of a list (or of its suspension twin); re-signed
        only when its bits changed."""
        if purpose not in status_lists.PURPOSES or purpose not in self._list_urls:
            raise NotFound("no such status list")
        now = self._clock()
        async with self._reads() as session:
            snap = await status_lists.snapshot(session, list_id, purpose)
            if snap is None:
                raise NotFound("no such status list")
            size, version, published_version, published_jwt, published_at = snap
            # Verifiers refuse a list older than its iat + ttl + a small grace (vc/status.py), so even an
            # unchanged list is re-signed every half ttl: a copy fetched now stays usable for its whole ttl.
            fresh = published_at is not None and now - published_at < self._republish_after
            # A list signed with a key that has since been dropped (compromise) must be re-signed.
            if fresh and published_jwt is not None:
                fresh = self._issuer.ring.get(_header_kid(published_jwt)) is not None
            if published_jwt is not None and published_version == version and fresh:
                return PublishedList(published_jwt, _etag(published_jwt), version)
            bits = StatusList(size)
            for index in await status_lists.marked_indexes(session, list_id, purpose):
                bits.set(index)
        jwt = self._issuer.issue_status_list_credential(
            list_url=self.list_url(list_id, purpose),
            purpose=purpose,
            encoded_list=bits.encode(),
            now=now,
            ttl_seconds=self._ttl,
            valid_for_seconds=int(PUBLISHED_VALIDITY.total_seconds()),
        )
        async with self._sessions.begin() as session:
            await status_lists.store_published(session, list_id, version, jwt, now, purpose)
        return PublishedList(jwt, _etag(jwt), version)


def _header_kid(jwt: str) -> str:
    try:
        return str(parse_compact(jwt).header.get("kid", ""))
    except VerificationError:
        return ""


def _etag(jwt: str) -> str:
    return '"' + hashlib.sha256(jwt.encode("ascii")).hexdigest()[:32] + '"'
