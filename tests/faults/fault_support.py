"""Helpers for the fault suite (issue 8 item 2): real ``agentauth serve`` processes that a test may kill -9 and
restart on the same data, a client-side ledger of what the service acknowledged, direct reads of the server's
database, the published status lists decoded and verified, and a TCP proxy that makes PostgreSQL go away for one
server only.

Imported as ``fault_support`` (pytest puts tests/faults on ``sys.path`` for its test modules); processes are
started by ``live_server`` (``server_env``, ``spawn``) and the schema reset comes from ``support``.
Every process is stopped by its own pid; nothing here looks processes up by name.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from agentauth.issuer.secrets import SecretHasher
from agentauth.keys import KeyEncryptionKey
from agentauth.vc import StaticStatusLists, Verifier
from live_server import LiveServer, free_port
from support import status_entry

TOKEN = "/api/v1/auth/token"
INTROSPECT = "/api/v1/auth/introspect"
REVOKE = "/api/v1/auth/revoke"
QUICKSTART = "/api/v1/agents/quickstart"
AGENTS = "/api/v1/agents"
TRACEBACK = "Traceback (most recent call last)"
UNHANDLED = "unhandled error on"  # api/errors.py logs this for every 500
STATUS_BLOCK_SIZE = 512  # issuer/status.py BLOCK_SIZE


# -- server processes ---------------------------------------------------------------------------------------


def kill9(server: LiveServer) -> None:
    """SIGKILL by pid: no shutdown handler, no flush, no lifespan exit - a crash."""
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


@contextlib.contextmanager
def running(servers: list[LiveServer], remove: Path | None = None) -> Iterator[list[LiveServer]]:
    """Stops every server appended to ``servers`` when the block ends, on failure too (SIGTERM, then SIGKILL, by
    pid); then deletes ``remove`` (the data directory: databases and key files; the logs stay with pytest's
    tmp_path for a failure's post-mortem)."""
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()
        if remove is not None:
            shutil.rmtree(remove, ignore_errors=True)


def log_problems(server: LiveServer) -> list[str]:
    """Lines of the server log that show a 500 (an unexpected exception reached the edge)."""
    lines = server.log.read_text("utf-8", "replace").splitlines()
    return [line for line in lines if UNHANDLED in line]


# -- tokens -------------------------------------------------------------------------------------------------


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified (signatures are checked separately with the published JWKS)."""
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return claims


@dataclass(frozen=True)
class Issued:
    """One acknowledged credential: what the client holds and can later check the server against."""

    jti: str
    kind: str  # access | identity
    list_url: str
    list_id: int
    index: int
    jwt: str


def issued(token: str, kind: str) -> Issued:
    claims = jwt_claims(token)
    entry = status_entry(claims["vc"])
    url = str(entry["statusListCredential"])
    return Issued(str(claims["jti"]), kind, url, int(url.rsplit("/", 1)[1]), int(entry["statusListIndex"]), token)


@dataclass
class Ledger:
    """Everything the service acknowledged (HTTP 200/201 fully received), kept client-side."""

    credentials: dict[str, Issued] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    spent_refresh_tokens: set[str] = field(default_factory=set)  # their rotation was acknowledged
    revoked: set[str] = field(default_factory=set)  # jti whose revocation was acknowledged
    revoke_attempted: set[str] = field(default_factory=set)  # jti named in any revocation request, answered or not
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.outcomes[what] = self.outcomes.get(what, 0) + 1

    def summary(self) -> str:
        return (
            f"acknowledged: {len(self.credentials)} credentials, {len(self.refresh_tokens)} refresh tokens, "
            f"{len(self.revoked)} revocations; {self.outcomes}"
        )

    def add(self, token: str, kind: str) -> Issued:
        entry = issued(token, kind)
        assert entry.jti not in self.credentials, f"the service returned jti {entry.jti} twice"
        self.credentials[entry.jti] = entry
        return entry


# -- the database, read directly ----------------------------------------------------------------------------


async def query(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]
    finally:
        await engine.dispose()


def refresh_hasher(kek: str) -> SecretHasher:
    """The server's refresh-token hash (HMAC under a key derived from the KEK, as bootstrap.py builds it)."""
    return SecretHasher(KeyEncryptionKey.from_text(kek).derive("secret-hash"))


# -- published status lists ---------------------------------------------------------------------------------


async def published_bits(base_url: str, list_urls: dict[int, str], issuer_url: str) -> dict[int, Any]:
    """Each list (``{list_id: its URL}``) fetched over HTTP from ``base_url``, its signature verified with the
    JWKS that server publishes, decoded: ``{list_id: StatusList}``."""
    source = StaticStatusLists()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        jwks = (await http.get("/.well-known/jwks.json")).json()
        for list_id, url in list_urls.items():
            response = await http.get(f"/api/v1/status-lists/{list_id}")
            assert response.status_code == 200, response.text
            source.put(url, response.text)
    verifier = Verifier(issuer_url=issuer_url, jwks=jwks, status_source=source)
    now = datetime.now(UTC)
    return {list_id: verifier.status_list(url, now).bits for list_id, url in list_urls.items()}


# -- a TCP proxy in front of PostgreSQL ---------------------------------------------------------------------


class TcpProxy:
    """127.0.0.1:<port> -> target, on an asyncio loop in its own thread (so the test may block - start a server,
    sleep - while the proxy keeps forwarding). ``stop`` closes the listener and cuts every open connection: to
    the server behind it the database has gone away (connections reset, new ones refused). ``start`` again
    listens on the same port. ``stall`` keeps accepting connections but forwards nothing in either direction (a
    database host that hangs: packets swallowed, nothing reset) until ``resume``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()  # bound to the proxy's loop at its first use there
        self._flowing.set()
        self.accepted = 0

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())

    def stall(self) -> None:
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        self._call(self._set_flowing(True))

    async def _set_flowing(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def url_for(self, database_url: str) -> str:
        """``database_url`` with host and port replaced by this proxy."""
        return make_url(database_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    async def _start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # RST, not a polite FIN: like a database host or network dying
        self._writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await self._flowing.wait()  # stalled: the connection is accepted, and then nothing happens
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, upstream_writer))

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    await self._flowing.wait()
                    writer.write(data)
                    await writer.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                writer.transport.abort()
                self._writers.discard(writer)

        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))


def wait_for(predicate: Any, timeout: float, interval: float = 0.2) -> float:
    """Seconds until ``predicate()`` was true; raises AssertionError after ``timeout``."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
