"""A client-metadata-document host for the CIMD tests: a tiny HTTP/1.1 server on 127.0.0.1 (or ``::1``), on a
port of this run's block (``live_server.free_port``, moved by ``AGENTAUTH_TEST_PORT_BASE``), that answers each
path with a canned response and counts the requests it got and the body bytes it sent - so a test can assert
that a refused fetch never reached it, or stopped reading early."""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson

from live_server import free_port

ENDLESS_CHUNK = b"x" * 1024


def document(client_id: str, **extra: object) -> dict[str, object]:
    return {
        "client_id": client_id,
        "client_name": "Example MCP Client",
        "logo_uri": "https://app.example/logo.png",
        "redirect_uris": ["http://127.0.0.1:3000/callback", "http://localhost:3000/callback"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **extra,
    }


@dataclass
class DocumentHost:
    port: int
    hits: Counter[str] = field(default_factory=Counter)
    hosts: list[str] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)
    address: str = "127.0.0.1"

    @property
    def base(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def respond(self, path: str) -> tuple[bytes, float]:
        """(raw response, seconds to wait before sending it)."""
        own = self.base + path
        json = "application/json"
        name = path.lstrip("/")
        if name.startswith("good"):
            return _response(200, orjson.dumps(document(own)), json, {"Cache-Control": "max-age=600"}), 0
        if name == "nostore.json":
            return _response(200, orjson.dumps(document(own)), json, {"Cache-Control": "no-store"}), 0
        if name == "big.json":
            return _response(200, orjson.dumps(document(own, pad="x" * 6000)), json), 0
        if name == "big-chunked.json":
            return _chunked(orjson.dumps(document(own, pad="x" * 6000))), 0
        if name == "slow.json":
            return _response(200, orjson.dumps(document(own)), json), 3.0
        if name == "html.json":
            return _response(200, orjson.dumps(document(own)), "text/html"), 0
        if name == "mismatch.json":
            return _response(200, orjson.dumps(document(self.base + "/good.json")), json), 0
        if name == "redirect-private.json":
            return _response(302, b"", json, {"Location": "http://10.0.0.1/doc.json"}), 0
        if name.startswith("redirect-") and name[9:12].isdigit():  # redirect-301.json ... redirect-308.json
            return _response(int(name[9:12]), b"", json, {"Location": "http://169.254.169.254/latest/meta-data/"}), 0
        if name == "redirect-self.json":
            return _response(302, b"", json, {"Location": self.base + "/good.json"}), 0
        if name == "secret.json":
            return _response(200, orjson.dumps(document(own, client_secret="s3cret")), json), 0
        if name == "shared-secret.json":
            doc = document(own, token_endpoint_auth_method="client_secret_basic")
            return _response(200, orjson.dumps(doc), json), 0
        if name == "post-secret.json":
            doc = document(own, token_endpoint_auth_method="client_secret_post")
            return _response(200, orjson.dumps(doc), json), 0
        if name == "jwt-secret.json":
            doc = document(own, token_endpoint_auth_method="client_secret_jwt")
            return _response(200, orjson.dumps(doc), json), 0
        if name == "secret-expiry.json":
            return _response(200, orjson.dumps(document(own, client_secret_expires_at=0)), json), 0
        if name == "http-redirect.json":
            doc = document(own, redirect_uris=["http://app.example/callback"])
            return _response(200, orjson.dumps(doc), json), 0
        if name == "private-scheme.json":
            doc = document(own, redirect_uris=["com.example.app:/callback"])
            return _response(200, orjson.dumps(doc), json), 0
        if name == "fragment-redirect.json":
            doc = document(own, redirect_uris=["https://app.example/callback#x"])
            return _response(200, orjson.dumps(doc), json), 0
        if name == "empty-redirects.json":
            return _response(200, orjson.dumps(document(own, redirect_uris=[])), json), 0
        if name == "case-mismatch.json":
            return _response(200, orjson.dumps(document(own.replace("http://", "HTTP://"))), json), 0
        if name == "slash-mismatch.json":
            return _response(200, orjson.dumps(document(own + "/")), json), 0
        if name == "no-client-id.json":
            doc = document(own)
            del doc["client_id"]
            return _response(200, orjson.dumps(doc), json), 0
        if name == "method-array.json":
            doc = document(own, token_endpoint_auth_method=["none"])
            return _response(200, orjson.dumps(doc), json), 0
        if name == "bad-logo.json":
            return _response(200, orjson.dumps(document(own, logo_uri="https://[oops/logo.png")), json), 0
        if name == "js-redirect.json":
            return _response(200, orjson.dumps(document(own, redirect_uris=["javascript:alert(1)"])), json), 0
        if name == "no-redirects.json":
            doc = document(own)
            del doc["redirect_uris"]
            return _response(200, orjson.dumps(doc), json), 0
        if name == "array.json":
            return _response(200, b"[1, 2]", json), 0
        if name == "broken.json":
            return _response(200, b"{not json", json), 0
        if name == "gzip.json":
            body = gzip.compress(orjson.dumps(document(own)))
            return _response(200, body, json, {"Content-Encoding": "gzip"}), 0
        return _response(404, b"{}", json), 0


def _response(status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join([*lines, "Connection: close", "", ""])).encode() + body


def _chunked(body: bytes) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000]) for i in range(0, len(body), 1000)
    )
    return head + chunks + b"0\r\n\r\n"


@asynccontextmanager
async def document_host(address: str = "127.0.0.1") -> AsyncIterator[DocumentHost]:
    host: DocumentHost | None = None
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert host is not None
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            path = request_line.split(" ")[1]
            host.hits[path] += 1
            host.hosts += [h.split(":", 1)[1].strip() for h in header_lines if h.lower().startswith("host:")]
            if path == "/endless.json":  # chunked, never ends: only a reader that stops at its limit gets out
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                while True:
                    writer.write(b"%x\r\n%s\r\n" % (len(ENDLESS_CHUNK), ENDLESS_CHUNK))
                    await writer.drain()
                    host.sent[path] += len(ENDLESS_CHUNK)
            if path == "/drip.json":  # slowloris: a byte every 0.3 s, each read well within a per-read timeout
                body = orjson.dumps(document(host.base + path))
                writer.write(_response(200, body, "application/json").split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
                for byte in body:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    host.sent[path] += 1
                    await asyncio.sleep(0.3)
            raw, delay = host.respond(path)
            if delay:
                await asyncio.sleep(delay)
            writer.write(raw)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            handlers.discard(task)

    port = free_port()
    server = await asyncio.start_server(handle, address, port)
    host = DocumentHost(port, address=address)
    try:
        yield host
    finally:
        server.close()
        for task in list(handlers):  # a slow answer still pending: stop it, so its socket closes now
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
