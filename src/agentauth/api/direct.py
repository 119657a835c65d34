"""Direct routes: the busiest routes answered by their own route function, without FastAPI's router, dependency
injection and exception middleware (ASGI, inside ``LimitsMiddleware``: body limits, NUL screening and request ids
apply as everywhere).

Measured with py-spy and in process (bench/ops.py, bench/read.py): matching a request against every route of the
app, solving three dependencies and the two exception/exit-stack layers cost as much CPU as the token check, the
policy decision and the query of ``GET /api/v1/agents`` together. Each direct route is declared once, beside its
FastAPI route, which stays declared: for OpenAPI, and as the answer to whatever the direct handler declines
(``None``: a query or path parameter FastAPI would have to validate, a body that is not a valid JSON object of
the route's model), so every answer - errors included - is the one the FastAPI route gives; a declined request
reaches FastAPI with the body the handler read replayed. Errors raised by a handler go through the app's own
exception handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response | None]]
# The scope key naming the path template of the direct route that took a request (``api/logs.py`` reads it).
ROUTE_TEMPLATE = "agentauth.route"
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class DirectRoute:
    """``path`` is exact, or ends with one ``{name}`` segment (a non-empty segment without ``/``, passed as
    ``request.path_params[name]``)."""

    method: str
    path: str
    handler: Handler

    @property
    def template(self) -> tuple[str, str] | None:
        """(prefix up to and including the last ``/``, parameter name) for a templated path, else None."""
        prefix, _, last = self.path.rpartition("/")
        if last.startswith("{") and last.endswith("}"):
            return prefix + "/", last[1:-1]
        return None


class DirectRoutes:
    """ASGI middleware: answers the requests of ``routes`` with their handlers; everything else (and whatever a
    handler declines) goes to the app."""

    def __init__(self, app: ASGIApp, routes: Iterable[DirectRoute] = ()) -> None:
        self.app = app
        self.exact: dict[tuple[str, str], DirectRoute] = {}
        self.templated: dict[tuple[str, str], tuple[str, DirectRoute]] = {}
        for route in routes:
            template = route.template
            if template is None:
                self.exact[(route.method, route.path)] = route
            else:
                self.templated[(route.method, template[0])] = (template[1], route)

    def _match(self, scope: Scope) -> DirectRoute | None:
        method, path = scope["method"], scope["path"]
        route = self.exact.get((method, path))
        if route is not None or not self.templated:
            return route
        prefix, _, last = path.rpartition("/")
        found = self.templated.get((method, prefix + "/")) if last else None
        if found is None:
            return None
        scope["path_params"] = {found[0]: last}
        return found[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._match(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        # The access log and /metrics name a request by its route's path template, never its raw path (ids).
        scope[ROUTE_TEMPLATE] = route.path
        handler = route.handler
        recorded = _Recorded(receive)
        request = Request(scope, recorded)
        try:
            response = await handler(request)
        except Exception as exc:
            on_error = handler_for(request.app.exception_handlers, exc)
            if on_error is None:
                raise
            response = await on_error(request, exc)
        if response is None:
            scope.pop("path_params", None)
            await self.app(scope, recorded.replay(), send)
            return
        await response(scope, receive, send)


def handler_for(handlers: Mapping[Any, Any], exc: Exception) -> Any:
    """The app's exception handler for ``exc``: the one registered for its class or the nearest base class."""
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


class _Recorded:
    """A ``receive`` that keeps what the handler read, to hand the same messages to FastAPI if it declines."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.seen: list[Message] = []

    async def __call__(self) -> Message:
        message = await self.receive()
        self.seen.append(message)
        return message

    def replay(self) -> Receive:
        pending = list(self.seen)

        async def receive() -> Message:
            return pending.pop(0) if pending else await self.receive()

        return receive


async def json_body(request: Request, model: type[M]) -> M | None:
    """The body as ``model`` when it is an ``application/json`` object valid for it - what FastAPI would pass
    the route -, else None (the route declines: FastAPI gives its own answer, 422 or other)."""
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
        return None
    try:
        # FastAPI validates what ``json.loads`` gave; orjson gives the same values, and refuses the inputs where
        # they could differ (NaN, integers over 64 bits): those are declined.
        return model.model_validate(orjson.loads(await request.body()))
    except (orjson.JSONDecodeError, ValidationError):
        return None
