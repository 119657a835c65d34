"""Issue 16's must-show for the agent client SDK: an agent written with it runs for 3 access-token lifetimes
without one failed call.

`agentauth serve` with the shortest access-token lifetime it allows (60 s). Two agents call AgentAuth's own API
(``GET /api/v1/agents/{id}``, which checks the token online: an expired one is refused) about once a second for
3 lifetimes and a bit: a sync ``AgentClient`` (API key, bearer tokens; httpx and requests in turn) in a thread,
and an ``AsyncAgentClient`` (the agent's did:key by ``private_key_jwt``, DPoP-bound tokens) on the event loop,
both from credentials files. Every call must answer 200, and the tokens must really have been renewed: new
access tokens, each by the refresh grant, and a rotated refresh token in each credentials file every time.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from agentauth.sdk import AgentClient, AsyncAgentClient
from live_server import LiveServer, free_port, issuer_env, spawn

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TTL_SECONDS = 60  # the shortest AGENTAUTH_ACCESS_TOKEN_TTL_SECONDS allows

RUN_SECONDS = 3 * TTL_SECONDS + 8  # the last refresh (at 80 % of the third lifetime) well inside the run


@pytest.fixture
def short_ttl_issuer(tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    env = issuer_env(tmp_path / "data", port) | {"AGENTAUTH_ACCESS_TOKEN_TTL_SECONDS": str(TTL_SECONDS)}
    server = spawn(env, port, tmp_path / "issuer.log", log_level="warning")
    yield server
    server.stop()


class Run:
    """What one agent saw: each call's status and the token it sent, and each refresh token its file held."""

    def __init__(self, credentials_file: Path) -> None:
        self.file = credentials_file
        self.statuses: list[int] = []
        self.tokens: list[str] = []
        self.file_refresh_tokens: list[str] = []
        self.first = self.last = 0.0

    def record(self, response: httpx.Response | requests.Response, token: str) -> None:
        now = time.monotonic()
        self.first = self.first or now
        self.last = now
        self.statuses.append(response.status_code)
        self.tokens.append(token)
        self.file_refresh_tokens.append(json.loads(self.file.read_text())["refresh_token"])

    def check(self, minimum_renewals: int) -> None:
        failed = [status for status in self.statuses if status != 200]
        assert not failed, f"{len(failed)} of {len(self.statuses)} calls failed: {sorted(set(failed))}"
        assert self.last - self.first >= 3 * TTL_SECONDS, "the run did not last 3 lifetimes"
        assert len(self.statuses) >= 3 * TTL_SECONDS * 0.8, "far fewer calls than one a second"
        access = list(dict.fromkeys(self.tokens))  # distinct, in order of first use
        assert len(access) >= minimum_renewals + 1, f"only {len(access)} access tokens in {RUN_SECONDS} s"
        refresh = list(dict.fromkeys(self.file_refresh_tokens))
        assert len(refresh) >= minimum_renewals + 1, "the credentials file's refresh token was not rotated"


def authorization(response: httpx.Response | requests.Response) -> str:
    header = response.request.headers["Authorization"]
    assert header is not None
    return header.split(" ", 1)[1]


def run_sync(agent: AgentClient, run: Run, issuer: str, deadline: float) -> None:
    url = f"{issuer}/api/v1/agents/{agent.agent_id}"
    with httpx.Client(auth=agent.auth(), timeout=10) as http, requests.Session() as session:
        session.auth = agent.requests_auth()
        while time.monotonic() < deadline:
            # httpx and requests in turn, one client: they share its token and its renewals.
            response = http.get(url) if len(run.statuses) % 2 == 0 else session.get(url, timeout=10)
            run.record(response, authorization(response))
            time.sleep(1)


async def run_async(agent: AsyncAgentClient, run: Run, issuer: str, deadline: float) -> None:
    url = f"{issuer}/api/v1/agents/{agent.agent_id}"
    async with httpx.AsyncClient(auth=agent.auth(), timeout=10) as http:
        while time.monotonic() < deadline:
            response = await http.get(url)
            assert response.request.headers["Authorization"].startswith("DPoP ")  # bound, with a proof
            run.record(response, authorization(response))
            await asyncio.sleep(1)


async def test_an_agent_runs_three_token_lifetimes_without_a_failed_call(
    short_ttl_issuer: LiveServer, tmp_path: Path
) -> None:
    issuer = short_ttl_issuer.url
    sync_file, async_file = tmp_path / "sync-agent.json", tmp_path / "async-agent.json"
    sync_agent = AgentClient.quickstart(issuer, "sync agent", credentials_file=sync_file)
    registered = await AsyncAgentClient.quickstart(issuer, "async agent", credentials_file=async_file)
    await registered.aclose()
    # The async agent starts from its credentials file, as a restarted agent would.
    async_agent = AsyncAgentClient(async_file, method="private_key_jwt", dpop=True)
    sync_run, async_run = Run(sync_file), Run(async_file)
    deadline = time.monotonic() + RUN_SECONDS
    thread = threading.Thread(target=run_sync, args=(sync_agent, sync_run, issuer, deadline))
    thread.start()
    try:
        await run_async(async_agent, async_run, issuer, deadline)
    finally:
        thread.join()
        sync_agent.close()
        await async_agent.aclose()

    # The sync agent started with quickstart's token and renewed it at each lifetime's refresh_before.
    sync_run.check(minimum_renewals=3)
    assert sync_agent.token_requests == {"refresh_token": sync_agent.token_requests["refresh_token"]}
    # The async one began by refreshing the file's token with a proof (binding the family to its key).
    async_run.check(minimum_renewals=3)
    assert async_agent.token_requests.get("refresh_token", 0) >= 4
    assert set(async_agent.token_requests) == {"refresh_token"}, async_agent.token_requests
    # What each file holds last is the live refresh token of its family: a restarted agent continues with it.
    for file in (sync_file, async_file):
        restarted = AgentClient(file, dpop=file == async_file)
        assert restarted.token().grant == "refresh_token"
        assert restarted.token_requests == {"refresh_token": 1}
        restarted.close()
