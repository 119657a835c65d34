"""``agentauth admin suspend|resume|stop AGENT_ID``: the operator's kill switch, run against the service's own
database while it serves. The running server refuses the agent's token at once, the published status lists say
so for offline verifiers, a resume restores the same token, a stop revokes it for good; the audit log names the
operator. Bad ids and refused transitions are one-line errors that change nothing."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentauth.vc import StaticStatusLists, VerificationError, Verifier
from live_server import BIN, LiveServer, start_issuer
from support import status_urls


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_issuer(tmp_path_factory.mktemp("kill-switch"))
    yield live
    live.stop()


def admin(server: LiveServer, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "agentauth"), "admin", *args],
        env=server.env, capture_output=True, text=True, timeout=60, check=False, input=stdin,
    )  # fmt: skip


def quickstart(server: LiveServer, name: str) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/api/v1/agents/quickstart", json={"name": name, "agent_type": "tool"})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def served(server: LiveServer, token: str) -> int:
    return httpx.get(f"{server.url}/api/v1/agents", headers={"Authorization": f"Bearer {token}"}).status_code


def offline(server: LiveServer, token: str) -> str | None:
    """A third party's verdict from freshly fetched JWKS and lists."""
    segment = token.split(".")[1]
    payload = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    lists = StaticStatusLists()
    for url in status_urls(payload["vc"]):
        lists.put(url, httpx.get(url).text)
    jwks = httpx.get(f"{server.url}/.well-known/jwks.json").json()
    try:
        Verifier(issuer_url=server.url, jwks=jwks, status_source=lists).verify_access_token(token)
    except VerificationError as exc:
        return exc.code
    return None


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_suspend_resume_stop_from_the_command_line(server: LiveServer) -> None:
    root = quickstart(server, "ops-tenant")
    auth = {"Authorization": f"Bearer {root['access_token']}"}
    child = httpx.post(f"{server.url}/api/v1/agents", json={"name": "worker", "agent_type": "tool"}, headers=auth)
    assert child.status_code == 201, child.text
    worker = child.json()  # {"agent": ...}
    key = httpx.post(f"{server.url}/api/v1/credentials", json={"agent_id": worker["agent"]["id"]}, headers=auth)
    assert key.status_code == 201, key.text
    grant = {"grant_type": "client_credentials", "client_secret": key.json()["raw_key"]}
    token = httpx.post(f"{server.url}/api/v1/auth/token", data=grant).json()["access_token"]
    assert served(server, token) == 200 and offline(server, token) is None

    suspended = admin(server, "suspend", worker["agent"]["id"], "--json")
    assert suspended.returncode == 0, suspended.stderr
    assert json.loads(suspended.stdout) == {"id": worker["agent"]["id"], "name": "worker", "status": "suspended"}
    assert served(server, token) == 401  # the running server sees it at once
    assert offline(server, token) == "suspended"
    assert httpx.post(f"{server.url}/api/v1/auth/token", data=grant).json()["error"] == "invalid_client"
    assert served(server, root["access_token"]) == 200  # the parent is untouched

    resumed = admin(server, "resume", worker["agent"]["id"])
    assert resumed.returncode == 0, resumed.stderr
    assert "is active" in resumed.stdout
    assert served(server, token) == 200 and offline(server, token) is None  # the same token again

    refused = admin(server, "stop", worker["agent"]["id"], stdin="n\n")  # asked, and the operator said no
    assert refused.returncode != 0 and served(server, token) == 200
    stopped = admin(server, "stop", worker["agent"]["id"], "--yes", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["status"] == "deactivated"
    assert served(server, token) == 401 and offline(server, token) == "revoked"
    again = admin(server, "resume", worker["agent"]["id"])
    assert "conflict" in error_line(again)  # a stop is for good

    events = httpx.get(f"{server.url}/api/v1/audit/events", headers=auth, params={"target_id": worker["agent"]["id"]})
    assert events.status_code == 200, events.text
    by_action = {e["action"]: e for e in events.json()["items"]}
    assert {"agent.suspended", "agent.resumed", "agent.deactivated"} <= set(by_action)
    assert all(by_action[a]["details"].get("operator") for a in ("agent.suspended", "agent.resumed"))


def test_a_whole_tenant_and_bad_ids(server: LiveServer) -> None:
    tenant = quickstart(server, "whole-tenant")
    root_id = tenant["agent"]["id"]
    assert admin(server, "suspend", root_id).returncode == 0
    assert served(server, tenant["access_token"]) == 401
    assert admin(server, "resume", root_id).returncode == 0  # the operator can still bring it back
    assert served(server, tenant["access_token"]) == 200

    assert "not_found" in error_line(admin(server, "suspend", "agt_" + "0" * 28))
    assert "not_found" in error_line(admin(server, "stop", "nonsense", "--yes"))
    assert admin(server, "stop", root_id, "--yes").returncode == 0
    assert "access_denied" in error_line(admin(server, "resume", root_id))  # a stopped tenant stays stopped
    for command in ("suspend", "resume", "stop"):
        usage = admin(server, command)
        assert usage.returncode == 64 and "AGENT_ID" in usage.stderr


def test_help_names_the_kill_switch() -> None:
    shown = subprocess.run([str(BIN / "agentauth"), "admin", "--help"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0
    assert all(command in shown.stdout for command in ("suspend", "resume", "stop", "stats"))
