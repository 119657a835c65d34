"""A minimal asyncio HTTP/1.1 client for the HTTP benchmarks (bench/http.py, bench/load.py, bench/revocation.py).

On a 2-core machine the load generator shares the CPUs with the server it measures: ``httpx`` costs ~1-2 ms of
CPU per request, which would take the core the server needs; one keep-alive connection driven by this protocol
on uvloop costs ~30 us. It speaks just enough HTTP for uvicorn's answers (RFC 9112: status line, a
``Content-Length`` body; chunked answers are refused), one request in flight per connection.

Imported as ``rawhttp`` from the scripts in bench/, whose directory is on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlencode

import orjson


class HttpError(Exception):
    pass


def build_request(
    host: str,
    port: int,
    method: str,
    path: str,
    *,
    form: dict[str, str] | None = None,
    json: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """One whole request for ``RawConnection.request``: a body from ``form`` (application/x-www-form-urlencoded)
    or ``json``, ``token`` as a bearer token (RFC 6750 section 2.1) and any other ``headers`` (a cookie, an
    Origin). Built once, it can be sent many times."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    if form is not None:
        body = urlencode(form).encode()
        head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
    elif json is not None:
        body = orjson.dumps(json)
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    else:
        body = b""  # RFC 9110 section 8.6: a request without content (a GET here) has no Content-Length
    return (head + "\r\n").encode() + body


class RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self.last_used = time.monotonic()
        self.headers: dict[bytes, bytes] = {}  # the last answer's header fields, names lower-case

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        _, protocol = await asyncio.get_running_loop().create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports do not subclass asyncio's

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection closed: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        length = None
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            fields[name] = value.strip()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                self.waiter.set_exception(HttpError("chunked responses are not supported"))
                return
        if length is None:
            self.waiter.set_exception(HttpError("response without Content-Length"))
            return
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.headers = fields
        self.waiter.set_result((int(lines[0][9:12]), body))

    async def request(self, data: bytes, limit: float | None = None) -> tuple[int, bytes]:
        """Send ``data`` (a whole request) and wait for the whole answer: (status, body). With ``limit``, wait at
        most that many seconds (then ``TimeoutError``)."""
        assert self.transport is not None
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            return await (waiter if limit is None else asyncio.wait_for(waiter, limit))
        finally:
            self.waiter = None
            self.last_used = time.monotonic()

    def reusable(self, max_idle: float) -> bool:
        """Open, and idle for less than ``max_idle`` seconds (a server closes a keep-alive connection idle too long)."""
        return not self.closed and time.monotonic() - self.last_used < max_idle

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop when uvloop is installed (the client's per-request CPU is lower on it), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
