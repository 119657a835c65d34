"""Pure ASGI middleware: the client address behind trusted proxies, request ids and a request-body size limit
(checked before any parsing)."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentauth.api.logs import REQUEST_ID

DEFAULT_MAX_BODY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024


async def _reject(send: Send, status: int, error: str, description: str) -> None:
    body = orjson.dumps({"error": error, "error_description": description})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(BaseException):
    """A BaseException on purpose: FastAPI turns any Exception raised while reading a body into a 400."""


class _NulByte(BaseException):
    pass


_NUL_MARKERS = (b"\x00", b"\\u0000", b"%00")


class LimitsMiddleware:
    """Refuses bodies over ``max_body`` (413) - by Content-Length up front, or while streaming - and oversized
    header sets (431); stamps every request with an id, echoed as ``X-Request-ID``."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    def _screen(self, scope: Scope) -> tuple[tuple[int, str, str] | None, str]:
        """(refusal or None, request id) from the request line and headers alone."""
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        if sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES:
            return (431, "invalid_request", "request headers are too large"), ""
        raw_target = scope.get("raw_path", b"") + b"?" + scope.get("query_string", b"")
        if b"%00" in raw_target or b"\x00" in raw_target:
            # No identifier, name or secret of this API contains NUL; PostgreSQL cannot even store it.
            return (400, "invalid_request", "NUL characters are not allowed"), ""
        request_id = secrets.token_hex(8)
        for name, value in headers:
            if name == b"content-length":
                if not value.isdigit():
                    return (400, "invalid_request", "invalid Content-Length"), ""
                if int(value) > self.max_body:
                    return (413, "invalid_request", f"request body exceeds {self.max_body} bytes"), ""
            elif name == b"x-request-id" and 0 < len(value) <= 64 and value.isascii():
                candidate = value.decode()
                if candidate.replace("-", "").replace("_", "").isalnum():
                    request_id = candidate
        return None, request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal, request_id = self._screen(scope)
        if refusal is not None:
            await _reject(send, *refusal)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        REQUEST_ID.set(request_id)  # every line logged while handling the request names it (api/logs.py)
        received = 0
        started = False
        tail = b""

        async def limited_receive() -> Message:
            nonlocal received, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_body:
                    raise _TooLarge
                window = tail + chunk
                if any(marker in window for marker in _NUL_MARKERS):
                    raise _NulByte
                tail = window[-5:]
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _TooLarge:
            if not started:
                await _reject(send, 413, "invalid_request", f"request body exceeds {self.max_body} bytes")
        except _NulByte:
            if not started:
                await _reject(send, 400, "invalid_request", "NUL characters are not allowed")


class TrustedProxiesMiddleware:
    """The client address (``scope["client"]``) behind the configured reverse proxies, and nowhere else.

    Per-IP rate limits, ``source_ips`` policy conditions and the audit log's ``ip`` all read ``scope["client"]``.
    It is the TCP peer unless that peer is a trusted proxy: then ``X-Forwarded-For`` is read from the right (the
    entry the nearest proxy appended) past every trusted hop, and the first untrusted address is the client; what
    a client wrote further left is never believed. A trusted proxy's ``X-Forwarded-Proto`` sets the scheme.
    ``agentauth serve`` turns uvicorn's own proxy handling off (it trusts any local peer), so this is the only one.
    """

    def __init__(self, app: ASGIApp, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def _client(self, peer: str, headers: list[tuple[bytes, bytes]]) -> str:
        hops = [
            hop.strip()
            for name, value in headers
            if name == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",")
        ]
        client = peer
        for hop in reversed(hops):
            try:
                client = str(ipaddress.ip_address(hop))
            except ValueError:
                break  # not an address: stop at the last hop a trusted proxy vouched for
            if not self._is_trusted(client):
                break
        return client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if self.trusted and scope["type"] in ("http", "websocket") and peer and self._is_trusted(peer[0]):
            headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
            scope = dict(scope)
            scope["client"] = (self._client(peer[0], headers), 0)
            for name, value in headers:
                if name == b"x-forwarded-proto" and value.strip().lower() in (b"http", b"https", b"ws", b"wss"):
                    scope["scheme"] = value.strip().lower().decode()
        await self.app(scope, receive, send)


class DPoPNonceMiddleware:
    """RFC 9449 section 8.2: with nonces required, every answer to a request carrying a ``DPoP`` proof names the
    current nonce (``DPoP-Nonce``), so a client follows the rotation without a refused request first. An answer
    that names one already (a ``use_dpop_nonce`` refusal, the token endpoint's) keeps its own. ``current``: the
    nonce now (every replica derives the same ones, ``vc.dpop_nonces``)."""

    def __init__(self, app: ASGIApp, current: Callable[[], str]) -> None:
        self.app = app
        self.current = current

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(k == b"dpop" for k, _ in scope.get("headers", ())):
            await self.app(scope, receive, send)
            return

        async def send_with_nonce(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"dpop-nonce" for k, _ in headers):
                    headers.append((b"dpop-nonce", self.current().encode("ascii")))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_nonce)
