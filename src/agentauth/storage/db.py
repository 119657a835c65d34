"""Engine and session factory for the two supported backends.

SQLite (embedded default): WAL journal, ``synchronous=NORMAL`` (durable across process crashes; an OS crash
may lose the last commits, never corrupt), foreign keys on, a busy timeout, and ``BEGIN IMMEDIATE`` so a
transaction that will write takes the write lock up front instead of failing to upgrade later.
PostgreSQL (scale-out): asyncpg, READ COMMITTED; atomic steps use conditional UPDATEs and unique constraints.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from agentauth.storage.failures import translate, translated

log = logging.getLogger("agentauth.storage")

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_PRAGMAS = (
    # First: the pragmas after it take locks (journal_mode=WAL on a file another process is creating), and without
    # a busy timeout a lock held for a moment is "database is locked" at once (processes starting together).
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    # No checkpoint inside a committing transaction (it made every ~16th token commit take 7-15 ms while
    # holding the writer lock): a serving process checkpoints in the background (``checkpoints``).
    "PRAGMA wal_autocheckpoint=0",
    f"PRAGMA journal_size_limit={8 * 2**20}",  # = WAL_TRUNCATE_BYTES
)
CHECKPOINT_SECONDS = 1.0
# The WAL is checkpointed with TRUNCATE once it is over this size (see ``SqliteSessionMaker.checkpoints``), and a
# WAL that restarts is cut back to it (``journal_size_limit``).
WAL_TRUNCATE_BYTES = 8 * 2**20
# What the WAL stays under in a serving process (docs/deploy.md, tests/faults/test_wal_bounded.py): the truncate
# threshold plus what writers append in a checkpoint interval or two at full speed (measured ~20 MB/s).
WAL_BOUND_BYTES = 64 * 2**20
WAL_SIZE_CHECK_SECONDS = 0.25
CHECKPOINT_BUSY_MS = 500  # how long a TRUNCATE checkpoint waits for readers, holding the writers back meanwhile

T = TypeVar("T")


@dataclass(frozen=True)
class Timeouts:
    """Bounds on waiting for the database, in seconds (``AGENTAUTH_DB_*_TIMEOUT``): a database that is away or
    stalled (connections accepted, nothing answered) turns into a prompt 503 instead of a request that hangs for
    the whole outage. ``connect`` and ``statement`` bind PostgreSQL (client side, so a stall is noticed too, and
    server side as ``statement_timeout``, which also bounds lock waits); ``pool`` binds both backends. SQLite's
    own wait for its write lock is its busy timeout (``SQLITE_BUSY_TIMEOUT_MS``)."""

    connect: float = 5.0
    pool: float = 5.0
    statement: float = 5.0


@dataclass(frozen=True)
class PoolLimits:
    """Connections per engine (``AGENTAUTH_DB_POOL_SIZE`` / ``AGENTAUTH_DB_MAX_OVERFLOW``); None: the backend's
    default. SQLite: 4 and no overflow - more connections only add lock contention on its single writer (measured:
    p99 ~1 s with SQLAlchemy's default pool); PostgreSQL: 10 plus 10 under load."""

    size: int | None = None
    overflow: int | None = None

    def for_backend(self, sqlite: bool) -> tuple[int, int]:
        size = self.size if self.size is not None else (SQLITE_POOL_SIZE if sqlite else POOL_SIZE)
        overflow = self.overflow if self.overflow is not None else (SQLITE_MAX_OVERFLOW if sqlite else MAX_OVERFLOW)
        return size, overflow


SQLITE_POOL_SIZE, SQLITE_MAX_OVERFLOW = 4, 0
POOL_SIZE, MAX_OVERFLOW = 10, 10


def create_engine(
    url: str,
    *,
    echo: bool = False,
    read_only: bool = False,
    timeouts: Timeouts | None = None,
    pool: PoolLimits | None = None,
) -> AsyncEngine:
    """The write engine, or with ``read_only`` a SQLite engine for lookups: no BEGIN IMMEDIATE (a lone SELECT in
    WAL mode reads a consistent snapshot without taking the write lock). PostgreSQL needs no second engine."""
    limits = timeouts or Timeouts()
    parsed = make_url(url)
    pool_size, max_overflow = (pool or PoolLimits()).for_backend(sqlite=parsed.get_backend_name() == "sqlite")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_sqlite_file(Path(parsed.database))
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=limits.pool,
            pool_reset_on_return=None if read_only else "rollback",
        )
        _configure_sqlite(engine, immediate=not read_only)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_driver_name() == "asyncpg":
        connect_args = {
            "timeout": limits.connect,
            "command_timeout": limits.statement,
            "server_settings": {"statement_timeout": str(max(1, int(limits.statement * 1000)))},
        }
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_timeout=limits.pool,
        connect_args=connect_args,
    )


SQLITE_COMPANIONS = ("-wal", "-shm", "-journal", ".writelock")


def private_sqlite_file(path: Path) -> None:
    """Create the database file owner-only (0600) before SQLite opens it, whatever the umask and the directory's
    mode: it holds the audit log, secret hashes and sealed keys. SQLite creates ``-wal``/``-shm`` with the
    database file's mode, so they follow; files left 0644 by an older version are tightened. ``O_CREAT``
    without ``O_EXCL``: processes starting together may all do this."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)
                log.warning("%s was readable by others; now 0600", file)
        except FileNotFoundError:
            pass


def _configure_sqlite(engine: AsyncEngine, immediate: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE below is what actually runs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: Any) -> None:
        # A connection that saw the file fail (read-only, I/O error, disk full, file moved) is not reused: the
        # pool opens a fresh one next time, as the hot path does (``SqliteSessionMaker._drop``). Otherwise a
        # connection opened while the file was read-only stays read-only after it is writable again, and every
        # ORM write (refresh, quickstart) kept answering 503 until a restart (issue 12 item 14).
        if _poisons_connection(context.original_exception):
            context.is_disconnect = True

    if not immediate:
        return

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _poisons_connection(exc: BaseException) -> bool:
    """SQLite errors of the file or the connection, not of the statement or of a lock wait."""
    if not isinstance(exc, sqlite3.Error):
        return False
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.ProgrammingError):
        return False
    return getattr(exc, "sqlite_errorname", "") not in ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_INTERRUPT")


@functools.lru_cache(maxsize=1024)  # a round's rows share a few instants (issued, expires): format each once
def sqlite_datetime(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DATETIME stores (and compares as text): naive UTC, microseconds always."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the database")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # SQLAlchemy's format, "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d":
    # isoformat writes it (without the "+00:00" it appends) in a third of strftime's time.
    return value.isoformat(" ", "microseconds")[:-6]


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return SqliteSessionMaker(engine, Path(database + ".writelock"))
    return StorageSessions(engine)


class TranslatingSession(AsyncSession):
    """An ``AsyncSession`` whose ``async with`` block turns storage failures into ``agentauth.errors``
    (``failures.translate``): whatever the block awaited on it (a query, a flush) and its closing."""

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        with translated():
            await super().__aexit__(type_, value, traceback)
        mapped = translate(value) if value is not None else None
        if mapped is not None:
            raise mapped from value


class StorageSessions(async_sessionmaker[AsyncSession]):
    """The session maker of every backend: its sessions (``TranslatingSession``) and its ``begin()`` blocks,
    commit included, raise ``agentauth.errors`` for storage failures, never the driver's exceptions."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, expire_on_commit=False, class_=TranslatingSession)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:  # type: ignore[override]
        with translated():
            async with super().begin() as session:
                yield session


def _release_if_acquired(fd: int, acquired: asyncio.Future[None]) -> None:
    if not acquired.cancelled() and acquired.exception() is None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class _WriterLock:
    """SQLite allows one writer. Left to itself, a second writer polls with sleeps of growing length (SQLite's
    busy handler: 1, 2, 5, 10 ... 100 ms), which under load turns into long stalls. Instead writers queue:
    in-process on an asyncio lock, across processes on an ``flock`` of a file beside the database, whose
    waiter wakes the moment the holder releases it."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self._path = path
        self._timeout = timeout
        self._local = asyncio.Lock()
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    async def __aenter__(self) -> None:
        try:
            await asyncio.wait_for(self._local.acquire(), self._timeout)
        except TimeoutError as exc:
            raise OperationalError("waiting for the SQLite writer lock", None, exc) from exc
        fd = self._file()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiter = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
            try:
                await asyncio.wait_for(asyncio.shield(waiter), self._timeout)
            except BaseException:
                # The thread cannot be cancelled: when it does get the lock, give it straight back, or no one
                # would ever release it.
                waiter.add_done_callback(functools.partial(_release_if_acquired, fd))
                self._local.release()
                raise
        except BaseException:
            self._local.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._file(), fcntl.LOCK_UN)
        finally:
            self._local.release()


class SqliteSessionMaker(StorageSessions):
    """``begin()`` takes the writer lock first; plain sessions (reads) do not.

    ``write()`` runs a plain function in one write transaction on a connection of its own, in one hop to its
    thread: for the hot paths, where SQLAlchemy's async layer costs more than SQLite itself. Measured on a round
    of 18 issued tokens (a select and three inserts): 5.6-7.1 ms of CPU through AsyncSession and aiosqlite, which
    hops threads for every statement, against 2.8-3.4 ms in one hop - and the sqlite3 module releases the GIL
    while SQLite works, so the event loop keeps serving requests meanwhile."""

    def __init__(self, engine: AsyncEngine, lock_path: Path) -> None:
        super().__init__(engine)
        self._writer = _WriterLock(lock_path)
        self._engine_path = self._path = str(engine.url.database)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentauth-sqlite-hotpath")
        self._connection: sqlite3.Connection | None = None

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:  # type: ignore[override]
        with translated():
            async with self._writer, super().begin() as session:
                yield session

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK if it raises), under the writer lock.
        SQLite's errors arrive translated (``failures.translate``), like those of every other path."""
        with translated():
            async with self._writer:
                return await asyncio.get_running_loop().run_in_executor(self._thread, self._run, work)

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on the same connection, in one hop to its thread, outside any transaction and
        without the writer lock: for hot-path reads, each a single SELECT (in WAL mode a lone statement reads one
        consistent snapshot). On the read engine's maker this is a connection and thread apart from the writer's."""
        with translated():
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._read, work)

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            connection = self._open()
            try:
                return work(connection)
            finally:
                # A read must not keep a snapshot open past its call: a held snapshot keeps checkpoints from
                # completing (and the WAL from restarting).
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
        except sqlite3.Error as exc:
            self._drop()
            raise DBAPIError.instance("hot-path read", None, exc, sqlite3.Error) from exc

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            try:
                for pragma in SQLITE_PRAGMAS:
                    connection.execute(pragma)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            connection = self._open()
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._drop()
            raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from exc
        try:
            result = work(connection)
            connection.execute("COMMIT")
        except BaseException as exc:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                self._drop()
            if isinstance(exc, sqlite3.Error):
                self._drop()  # reopened next time: the file may have been replaced, the disk may have been full
                raise DBAPIError.instance("hot-path write", None, exc, sqlite3.Error) from exc
            raise
        return result

    async def reopen(self, path: str | None = None) -> None:
        """Close the hot-path connection; the next ``read``/``write`` opens ``path`` (default: the engine's
        database). With ``engine.dispose()`` this moves every connection of the process to another file."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._drop)
        self._path = self._engine_path if path is None else path

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
            self._connection = None

    async def checkpoints(self, every: float = CHECKPOINT_SECONDS, truncate_over: int = WAL_TRUNCATE_BYTES) -> None:
        """Run for the life of a serving process: copy the WAL back into the database every ``every`` seconds,
        from a thread and connection of its own. Several processes may each run it.

        A PASSIVE checkpoint waits for no one, but under steady load it never *completes*: it copies the frames
        up to the WAL's end as it started while writers keep appending, and the WAL restarts from its beginning
        only after a complete one - so the file grew without bound (issue 12 item 14: 495 MiB in 25 s of token +
        revoke load). So once the WAL is over ``truncate_over`` bytes, the checkpointer takes the writer lock (writers
        queue behind it for the few milliseconds it takes, as behind any writer) and runs
        ``wal_checkpoint(TRUNCATE)``: it completes, and the WAL file is cut to zero. A PASSIVE pass just before,
        outside the lock, copies the bulk of the WAL, so the locked pass copies only what arrived meanwhile. A reader
        holding a snapshot (a long read transaction elsewhere) can still prevent that; it is waited for briefly
        (``CHECKPOINT_BUSY_MS``), never indefinitely, and retried at the next tick."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentauth-sqlite-checkpoint")
        connection: list[sqlite3.Connection] = []
        wal = Path(self._path + "-wal")

        def checkpoint(mode: str) -> tuple[int, int, int]:
            if not connection:
                opened = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
                for pragma in SQLITE_PRAGMAS:
                    opened.execute(pragma)
                opened.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
                connection.append(opened)
            busy, frames, copied = connection[0].execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            return int(busy), int(frames), int(copied)

        def close() -> None:
            for c in connection:
                c.close()
            connection.clear()

        def wal_size() -> int:
            try:
                return wal.stat().st_size
            except FileNotFoundError:
                return 0

        loop = asyncio.get_running_loop()
        try:
            since_passive = 0.0
            while True:
                # The size is looked at often (a stat); the WAL grows ~20 MB/s at full write speed.
                await asyncio.sleep(min(every, WAL_SIZE_CHECK_SECONDS))
                since_passive += min(every, WAL_SIZE_CHECK_SECONDS)
                try:
                    if since_passive >= every:
                        since_passive = 0.0
                        await loop.run_in_executor(thread, checkpoint, "PASSIVE")
                    if wal_size() > truncate_over:
                        # Copy what is there now without holding anyone up; under the lock only the frames
                        # written meanwhile are left to copy, so writers wait for a moment, not a whole WAL.
                        await loop.run_in_executor(thread, checkpoint, "PASSIVE")
                        async with self._writer:
                            busy, frames, copied = await loop.run_in_executor(thread, checkpoint, "TRUNCATE")
                        if busy:
                            log.warning(
                                "WAL checkpoint blocked by a reader (%s of %s frames copied, WAL %s bytes); retrying",
                                copied,
                                frames,
                                wal_size(),
                            )
                except (sqlite3.Error, OperationalError) as exc:
                    log.warning("WAL checkpoint failed (retrying): %s", exc)
                    await loop.run_in_executor(thread, close)
        finally:
            thread.submit(close)
            thread.shutdown(wait=False)

    def close(self) -> None:
        self._thread.submit(self._drop).result()
        self._thread.shutdown()
