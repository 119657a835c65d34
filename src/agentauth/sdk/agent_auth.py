"""``AgentAuth``: the agent client's ``httpx.Auth`` - its current token on every request, renewed when refused.

Per request: the token for its key (``TokenKey``: scope, resource, delegation), got from the client - which
renews it first if it is due, one renewal shared by concurrent callers. A bearer token goes in
``Authorization: Bearer`` (RFC 6750 section 2.1); a DPoP-bound one is sent by the client's ``DPoPAuth``, which
adds the proof and answers a ``use_dpop_nonce`` challenge (RFC 9449 sections 7 and 9): its logic, not a copy.

A ``401`` whose challenge says ``error="invalid_token"`` (RFC 6750 section 3.1: "expired, revoked, malformed, or
invalid for other reasons") makes the client renew that token - unless another caller already did - and the
request is sent once more with the new one; a second refusal is the caller's answer.

The same flow serves ``httpx.Client`` (with an ``AgentClient``) and ``httpx.AsyncClient`` (with an
``AsyncAgentClient``), and ``requests`` through ``agentauth.sdk.agent_requests``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Final

import httpx

from agentauth.sdk.agent_core import TokenKey, TokenSet

if TYPE_CHECKING:
    from agentauth.sdk.agent import AgentClient, AsyncAgentClient, _AgentBase

_INVALID_TOKEN: Final = re.compile(r'\berror\s*=\s*"?invalid_token\b"?')

Attach = Generator[httpx.Request, httpx.Response, httpx.Response]


class AgentAuth(httpx.Auth):
    requires_request_body = True  # sent again after a renewal (and after a DPoP nonce challenge)
    requires_response_body = True  # DPoPAuth reads a 400's JSON body for use_dpop_nonce

    def __init__(self, agent: _AgentBase, key: TokenKey) -> None:
        self.agent = agent
        self.key = key

    def __repr__(self) -> str:
        return f"AgentAuth(agent_id={self.agent.agent_id!r}, key={self.key!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        agent = self._sync()
        request.read()  # overriding the flow methods skips httpx's own reads (requires_*_body)
        token = agent._token(self.key)
        for renewed in (False, True):
            attach = self._attach(request, token)
            outgoing = next(attach)
            while True:
                response = yield outgoing
                response.read()
                try:
                    outgoing = attach.send(response)
                except StopIteration:
                    break
            if renewed or not refused_token(response):
                return
            token = agent._renew(self.key, token)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        agent = self._async()
        await request.aread()
        token = await agent._token(self.key)
        for renewed in (False, True):
            attach = self._attach(request, token)
            outgoing = next(attach)
            while True:
                response = yield outgoing
                await response.aread()
                try:
                    outgoing = attach.send(response)
                except StopIteration:
                    break
            if renewed or not refused_token(response):
                return
            token = await agent._renew(self.key, token)

    def _attach(self, request: httpx.Request, token: TokenSet) -> Attach:
        """Send ``request`` with ``token``; returns the last response."""
        if token.bound:
            dpop = self.agent._dpop
            if dpop is None:  # bound tokens come only from requests this client signed: a programming error
                raise RuntimeError("a DPoP-bound token without the client's DPoP key")
            flow = dpop.with_token(token.access_token).auth_flow(request)
            outgoing = next(flow)
            while True:
                response = yield outgoing
                try:
                    outgoing = flow.send(response)
                except StopIteration:
                    return response
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        return (yield request)

    def _sync(self) -> AgentClient:
        from agentauth.sdk.agent import AgentClient

        if not isinstance(self.agent, AgentClient):
            raise TypeError("this auth belongs to an AsyncAgentClient: use it with httpx.AsyncClient")
        return self.agent

    def _async(self) -> AsyncAgentClient:
        from agentauth.sdk.agent import AsyncAgentClient

        if not isinstance(self.agent, AsyncAgentClient):
            raise TypeError("this auth belongs to an AgentClient: use it with httpx.Client")
        return self.agent


def refused_token(response: httpx.Response) -> bool:
    """A 401 whose challenge (Bearer or DPoP) says ``invalid_token``: the token, not the request, was refused."""
    if response.status_code != 401:
        return False
    return any(_INVALID_TOKEN.search(value) for value in response.headers.get_list("WWW-Authenticate"))
