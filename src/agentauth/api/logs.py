"""Structured logs (issue 16 item 6): one JSON object per line when stderr is not a terminal (files, pipes,
containers, CI), a readable line on a terminal; the request id on every line logged while a request is handled,
and one access line per request.

The request id is made by ``LimitsMiddleware`` (``api/middleware.py``, echoed as ``X-Request-ID``), which puts it
into ``REQUEST_ID``, a context variable: every line logged in the request's task then names it. ``AccessLog``
writes the access line when the response is done: method, route template (the matched route's path, never the
raw path or query string - they carry ids and may carry secrets), status, duration, request id and client
address. Nothing logs a request body or header: tokens, API keys and ``Authorization`` never reach a line.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentauth.api.direct import ROUTE_TEMPLATE

# Set by LimitsMiddleware for the request being handled. Never reset: under a server every request runs in a task
# of its own, whose context ends with it (so the lines uvicorn itself logs about a failed request name it too);
# a lone ASGI caller (a test) sees its last request's id until its next request sets another.
REQUEST_ID: ContextVar[str | None] = ContextVar("agentauth_request_id", default=None)
UNMATCHED = "unmatched"  # the route of a request no route took: one fixed label, whatever the path
ACCESS = logging.getLogger("agentauth.access")


class RequestObserver(Protocol):
    """What else wants to know of each request (``api/metrics.py: Metrics``)."""

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None: ...


def route_template(scope: Scope) -> str:
    """The path template of the route that took the request (``/api/v1/agents/{agent_id}``), ``UNMATCHED`` if
    none did. Starlette's router records the route it matched in the scope; a direct route (``api/direct.py``),
    which bypasses that router, records its template itself."""
    route = scope.get("route")
    path = getattr(route, "path", None) if route is not None else scope.get(ROUTE_TEMPLATE)
    return path if isinstance(path, str) and path else UNMATCHED


class AccessLog:
    """ASGI middleware: one ``agentauth.access`` line per HTTP request and, with metrics on, its count and
    latency (``Metrics.observe_request``). Sits outside ``LimitsMiddleware``, so requests it refuses are logged
    too, and inside ``TrustedProxiesMiddleware``, so the client address is the one it settled."""

    def __init__(self, app: ASGIApp, metrics: RequestObserver | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            if self.metrics is not None:
                self.metrics.observe_request(scope["method"], route, status, seconds)
            if ACCESS.isEnabledFor(logging.INFO):
                client = scope.get("client")
                ip = client[0] if client else None
                request_id = scope.get("state", {}).get("request_id")
                fields = {
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "request_id": request_id,
                    "client_ip": ip,
                }
                ACCESS.info(
                    "%s %s %s %.1f ms %s", scope["method"], route, status, seconds * 1000, ip, extra={"fields": fields}
                )


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg``, ``request_id`` (when
    logged while a request is handled), the record's ``fields`` (``extra={"fields": {...}}``), ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """A readable line for a terminal: time, level, logger, ``[request id]``, message (and the traceback)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(request_tag)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        request_id = fields.get("request_id") if isinstance(fields, dict) else None
        request_id = request_id or REQUEST_ID.get()
        record.request_tag = f"[{request_id}] " if request_id else ""
        return super().format(record)


def stderr_handler() -> logging.Handler:
    """The one log handler of ``agentauth serve`` (built by ``logging.config.dictConfig`` in every worker):
    stderr, JSON unless stderr is a terminal. Python warnings become log records too, so no line is left
    unstructured."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ConsoleFormatter() if sys.stderr.isatty() else JsonFormatter())
    logging.captureWarnings(True)
    return handler


def logging_config(level: str) -> dict[str, Any]:
    """``logging.config.dictConfig`` input for ``agentauth serve`` (uvicorn's ``log_config``, applied in each
    worker process): every logger - ours, uvicorn's, the libraries' - through ``stderr_handler``; uvicorn's own
    access log off, ``AccessLog`` writes the one access line."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"()": "agentauth.api.logs.stderr_handler"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }
