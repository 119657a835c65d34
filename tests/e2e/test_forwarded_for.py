"""Who the client is, behind a real ``agentauth serve`` (uvicorn) on 127.0.0.1 (issue 12, item 6).

uvicorn's defaults believe ``X-Forwarded-For`` from any local peer, so anyone reaching the port from the same
host (or through a proxy that passes the header on) picked the address that per-IP rate limits, ``source_ips``
policy conditions and the audit log's ``ip`` see. Forwarded headers count only from AGENTAUTH_TRUSTED_PROXIES
(default none), and then only the hops those proxies appended.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from agentauth.keys import generate_kek
from agentauth.settings import Settings
from live_server import LiveServer, free_ports, server_env, spawn, wait_until_up
from support import bearer

pytestmark = pytest.mark.slow

FORGED = "198.51.100.9"
OTHER = "203.0.113.50"
QUICKSTART_LIMIT = 2


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LiveServer]]:
    """Two SQLite servers started together: uvicorn and our settings at their defaults, and one that trusts
    127.0.0.1 as its proxy. Quickstart is limited to 2 per minute per IP on both."""
    tmp = tmp_path_factory.mktemp("xff")
    ports = free_ports(2)
    started: dict[str, LiveServer] = {}
    try:
        for name, port, extra in (
            ("default", ports[0], {}),
            ("trusting", ports[1], {"AGENTAUTH_TRUSTED_PROXIES": "127.0.0.1, ::1"}),
        ):
            env = server_env(tmp / name, port, generate_kek(), None, **extra)
            env["AGENTAUTH_QUICKSTART_RATE_PER_IP"] = str(QUICKSTART_LIMIT)
            started[name] = spawn(env, port, tmp / f"{name}.log", wait=False)
        for server in started.values():
            wait_until_up(server, "/health")
        yield started
    finally:
        for server in started.values():
            server.stop()


def quickstart(server: LiveServer, forwarded_for: str) -> httpx.Response:
    return httpx.post(
        server.url + "/api/v1/agents/quickstart",
        json={"name": "xff", "agent_type": "assistant"},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=10,
    )


def audit_ips(server: LiveServer, token: str) -> set[str | None]:
    response = httpx.get(server.url + "/api/v1/audit/events", headers=bearer(token), timeout=10)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    assert items
    return {item["ip"] for item in items}


def source_ip_denied(server: LiveServer, token: str, forwarded_for: str) -> bool:
    """Whether a deny policy on the forged address's block stops a read sent with that X-Forwarded-For."""
    policy = {
        "name": "no reads from the documentation block",
        "effect": "deny",
        "subjects": {"all": True},
        "actions": ["read"],
        "resources": ["api/v1/agents"],
        "conditions": {"source_ips": ["198.51.100.0/24"]},
    }
    created = httpx.post(server.url + "/api/v1/policies", json=policy, headers=bearer(token), timeout=10)
    assert created.status_code == 201, created.text
    response = httpx.get(
        server.url + "/api/v1/agents", headers={**bearer(token), "X-Forwarded-For": forwarded_for}, timeout=10
    )
    assert response.status_code in (200, 403), response.text
    return response.status_code == 403


def test_forwarded_for_is_ignored_by_default(servers: dict[str, LiveServer]) -> None:
    server = servers["default"]
    first = quickstart(server, FORGED)
    assert first.status_code == 201, first.text
    token = first.json()["access_token"]
    assert audit_ips(server, token) == {"127.0.0.1"}
    assert not source_ip_denied(server, token, FORGED)
    # The rate-limit key is the peer: a new forged address per request buys no new allowance.
    assert quickstart(server, OTHER).status_code == 201
    assert quickstart(server, "192.0.2.77").status_code == 429


def test_forwarded_for_is_believed_from_a_trusted_proxy(servers: dict[str, LiveServer]) -> None:
    server = servers["trusting"]
    # What the client itself wrote (left) is not believed; the hop the trusted proxy appended (right) is.
    first = quickstart(server, f"192.0.2.1, {FORGED}")
    assert first.status_code == 201, first.text
    token = first.json()["access_token"]
    assert audit_ips(server, token) == {FORGED}
    assert source_ip_denied(server, token, FORGED)
    assert quickstart(server, FORGED).status_code == 201
    assert quickstart(server, FORGED).status_code == 429  # two from this client already
    assert quickstart(server, OTHER).status_code == 201  # another client behind the proxy has its own bucket
    # A trusted proxy's entry that is not an address: the client is the proxy's peer, not garbage.
    garbage = quickstart(server, "not-an-ip")
    assert garbage.status_code == 201, garbage.text
    assert audit_ips(server, garbage.json()["access_token"]) == {"127.0.0.1"}


def test_trusted_proxies_setting_parses_addresses_and_blocks() -> None:
    settings = Settings(trusted_proxies="10.0.0.0/8, 192.0.2.1 ,::1")  # type: ignore[arg-type]
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.0.2.1/32", "::1/128"]
    assert Settings().trusted_proxies == ()
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.internal")  # type: ignore[arg-type]
