"""``AgentRequestsAuth``: the agent client's auth for ``requests`` (imported only when asked for: the SDK does
not need ``requests``).

It runs the very flow of ``AgentAuth`` (``agentauth.sdk.agent_auth``): the flow is given an ``httpx.Request``
naming the same method and URL, and what it sets - ``Authorization`` and, for a bound token, ``DPoP`` - is
copied onto the ``requests`` request. When the flow wants the request sent again (a renewed token after a 401
``invalid_token``, a DPoP nonce challenge), a response hook sends a copy through the same connection adapter, as
``requests``' own digest auth does, and hands the flow the new answer.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import httpx
from requests import PreparedRequest, Response
from requests.auth import AuthBase

from agentauth.sdk.agent_auth import AgentAuth

_SET_BY_FLOW = ("Authorization", "DPoP")


class AgentRequestsAuth(AuthBase):
    """``requests.get(url, auth=agent.requests_auth())`` - the token (and DPoP proof) of an ``AgentClient``."""

    def __init__(self, auth: AgentAuth) -> None:
        self.auth = auth

    def __repr__(self) -> str:
        return f"AgentRequestsAuth({self.auth!r})"

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        flow = self.auth.sync_auth_flow(_as_httpx(request))
        _copy_headers(next(flow), request)
        request.register_hook("response", _Resend(flow))  # type: ignore[no-untyped-call]  # untyped in the stubs
        return request


class _Resend:
    """The response hook of one request: feeds answers to its flow until the flow is done."""

    def __init__(self, flow: Generator[httpx.Request, httpx.Response, None]) -> None:
        self.flow = flow

    def __call__(self, response: Response, **kwargs: Any) -> Response:
        while True:
            try:
                wanted = self.flow.send(_as_httpx_response(response))
            except StopIteration:
                return response
            response.content  # noqa: B018 - read it, so the connection goes back to the pool
            response.close()
            again = response.request.copy()
            _copy_headers(wanted, again)
            answer: Response = response.connection.send(again, **kwargs)
            answer.history.append(response)
            answer.request = again
            response = answer


def _as_httpx(request: PreparedRequest) -> httpx.Request:
    assert request.method is not None and request.url is not None
    return httpx.Request(request.method, request.url)


def _as_httpx_response(response: Response) -> httpx.Response:
    return httpx.Response(response.status_code, headers=list(response.headers.items()), content=response.content)


def _copy_headers(source: httpx.Request, target: PreparedRequest) -> None:
    for name in _SET_BY_FLOW:
        value = source.headers.get(name)
        if value is not None:
            target.headers[name] = value
