"""The shared rate limiter's store goes away (issue 8 item 2, beside the database): with AGENTAUTH_REDIS_URL set,
the rate-limited endpoints (token, quickstart) fail closed - 503 with ``Retry-After``, never a 200 that skipped
the limit and never a 429 that invented one - while everything else keeps answering correctly from the
database; when Redis returns, the same process counts again by itself.

The server reaches Redis through a TCP proxy run by the test (127.0.0.1:<free port> -> the Redis of
AGENTAUTH_TEST_REDIS_URL, default 127.0.0.1:6379), so only this server loses it. SQLite is enough here: the
limiter does not depend on the database backend.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from fault_support import INTROSPECT, QUICKSTART, TOKEN, TcpProxy, log_problems, running

from agentauth.api.errors import RETRY_AFTER_SECONDS
from agentauth.keys import generate_kek
from live_server import free_port, server_env, spawn
from support import REDIS_URL, bearer, require_redis

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def assert_unavailable(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.json()["error"] == "temporarily_unavailable", response.text
    assert response.headers.get("retry-after") == str(RETRY_AFTER_SECONDS), response.headers


async def test_redis_outage_fails_closed_and_recovers(tmp_path: Path) -> None:
    require_redis()
    parts = urlsplit(REDIS_URL)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    try:
        proxy.start()
        proxied = urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
        port = free_port()
        env = server_env(tmp_path / "data", port, generate_kek(), None, AGENTAUTH_REDIS_URL=proxied)
        with running([], remove=tmp_path / "data") as servers:
            server = spawn(env, port, tmp_path / "server.log")
            servers.append(server)
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                registered = await http.post(QUICKSTART, json={"name": "redis-outage", "agent_type": "tool"})
                assert registered.status_code == 201, registered.text
                api_key, token = registered.json()["api_key"], registered.json()["access_token"]
                grant = {"grant_type": "client_credentials", "client_secret": api_key}
                assert (await http.post(TOKEN, data=grant)).status_code == 200
                accepted = proxy.accepted

                proxy.stop()
                for _ in range(3):
                    started = time.monotonic()
                    assert_unavailable(await http.post(TOKEN, data=grant), "token without Redis")
                    assert time.monotonic() - started < 5, "the limiter hung instead of failing"
                    assert_unavailable(
                        await http.post(QUICKSTART, json={"name": "x", "agent_type": "tool"}), "quickstart"
                    )
                # Not rate-limited, served from the database: still correct.
                introspected = await http.post(INTROSPECT, data={"token": token}, headers=bearer(token))
                assert introspected.status_code == 200 and introspected.json()["active"] is True
                assert (await http.get("/api/v1/agents", headers=bearer(token))).status_code == 200

                proxy.start()
                deadline = time.monotonic() + 10
                while (response := await http.post(TOKEN, data=grant)).status_code != 200:
                    assert_unavailable(response, "token while Redis returns")
                    assert time.monotonic() < deadline, "the limiter did not reconnect by itself"
                assert proxy.accepted > accepted, "the server counted without Redis"
            assert log_problems(server) == []
    finally:
        proxy.close()
