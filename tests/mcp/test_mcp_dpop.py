"""``/mcp`` with DPoP-bound tokens (RFC 9449 section 7, issue 15 item 6), through the official MCP Python client
against ``agentauth serve``: the client sends ``Authorization: DPoP <token>`` and a fresh proof by the agent's own
key with every HTTP request (an ``httpx2.Auth`` flow), and the tools work with the token from the header. The
same token as a bearer token, a replayed proof, or another key's proof is refused at the transport with a DPoP
challenge."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_support import RunningServer, call

from agentauth import paths
from agentauth.keys import KeyPair
from agentauth.vc import create_proof

pytestmark = pytest.mark.anyio
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
ACCEPT = "application/json, text/event-stream"


class DPoPAuth(httpx2.Auth):
    """A new proof for each request: ``htm``/``htu`` of that request, ``ath`` of the token."""

    def __init__(self, token: str, key: KeyPair) -> None:
        self.token, self.key, self.sent = token, key, 0

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = create_proof(self.key, request.method, str(request.url), access_token=self.token)
        self.sent += 1
        yield request


async def bound_token(server: RunningServer) -> tuple[dict[str, Any], KeyPair, str]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        made = (
            await http.post(f"{paths.API_V1}/agents/quickstart", json={"name": "dpop-mcp", "agent_type": "assistant"})
        ).json()
        key = KeyPair.from_jwk(made["private_key_jwk"])
        proof = create_proof(key, "POST", f"{server.url}{paths.TOKEN}")
        answer = await http.post(
            paths.TOKEN,
            data={"grant_type": "client_credentials", "client_secret": made["api_key"]},
            headers={"DPoP": proof},
        )
    assert answer.status_code == 200 and answer.json()["token_type"] == "DPoP", answer.text
    server.secrets += [made["api_key"], answer.json()["access_token"], answer.json()["refresh_token"]]
    return made, key, answer.json()["access_token"]


async def test_the_official_client_calls_tools_with_a_dpop_bound_token(server: RunningServer) -> None:
    made, key, token = await bound_token(server)
    auth = DPoPAuth(token, key)
    async with (
        httpx2.AsyncClient(timeout=30, auth=auth) as http,
        streamable_http_client(f"{server.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        listed = await call(session, "list_agents")
        assert [a["id"] for a in listed["items"]] == [made["agent"]["id"]]
        got = await call(session, "get_agent", agent_id=made["agent"]["id"])
        assert got["id"] == made["agent"]["id"]
    assert auth.sent >= 4  # initialize, initialized, two calls: each with its own proof


async def test_the_transport_refuses_a_bound_token_without_its_proof(server: RunningServer) -> None:
    _, key, token = await bound_token(server)
    url = f"{server.url}/mcp"
    async with httpx.AsyncClient(timeout=30) as http:
        as_bearer = await http.post(url, json=PING, headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"})
        assert as_bearer.status_code == 401 and 'error="invalid_token"' in as_bearer.headers["www-authenticate"]
        proof = create_proof(key, "POST", url, access_token=token)
        sent = {"Accept": ACCEPT, "Authorization": f"DPoP {token}", "DPoP": proof}
        assert (await http.post(url, json=PING, headers=sent)).status_code == 200
        replayed = await http.post(url, json=PING, headers=sent)
        assert replayed.status_code == 401 and replayed.headers["www-authenticate"].startswith("DPoP ")
        other = create_proof(KeyPair.generate(), "POST", url, access_token=token)
        stolen = await http.post(url, json=PING, headers=sent | {"DPoP": other})
        assert stolen.status_code == 401 and 'error="invalid_token"' in stolen.headers["www-authenticate"]
        wrong_url = create_proof(key, "POST", f"{server.url}/api/v1/agents", access_token=token)
        assert (await http.post(url, json=PING, headers=sent | {"DPoP": wrong_url})).status_code == 401
