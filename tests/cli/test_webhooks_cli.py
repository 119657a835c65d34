"""``agentauth webhooks``: a tenant root manages its webhooks from the terminal against a running server, with
the credentials file the agent SDK wrote (the SDK gets the token), and a receiver gets the signed event."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentauth.sdk import AgentClient
from live_server import BIN, LiveServer, free_port, issuer_env, spawn
from webhook_support import receiver


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("webhooks-cli")
    port = free_port()
    env = issuer_env(tmp / "data", port) | {
        "AGENTAUTH_WEBHOOK_ALLOW_LOOPBACK": "true",
        "AGENTAUTH_WEBHOOK_POLL_SECONDS": "0.2",
    }
    running = spawn(env, port, tmp / "issuer.log", log_level="warning")
    yield running
    running.stop()


def agentauth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")} | (env or {})
    return subprocess.run(
        [str(BIN / "agentauth"), "webhooks", *args], check=False, capture_output=True, text=True, env=clean, timeout=60
    )


def test_a_root_agent_manages_webhooks_with_its_credentials_file(server: LiveServer, tmp_path: Path) -> None:
    file = tmp_path / "root.json"
    AgentClient.quickstart(server.url, "root", "orchestrator", credentials_file=file).close()
    env = {"AGENTAUTH_CREDENTIALS_FILE": str(file)}
    with receiver() as hook:
        made = agentauth("create", hook.url, "--event", "agent.*", "--description", "ops", env=env)
        assert made.returncode == 0, made.stderr
        created = json.loads(made.stdout)
        assert created["events"] == ["agent.*"] and created["secret"].startswith("whsec_")
        listed = json.loads(agentauth("list", env=env).stdout)
        assert [h["id"] for h in listed["items"]] == [created["id"]] and "secret" not in listed["items"][0]
        with AgentClient(file) as agent:
            body = {"name": "worker", "agent_type": "tool"}
            response = httpx.post(f"{server.url}/api/v1/agents", json=body, auth=agent.auth())
            assert response.status_code == 201, response.text
        (arrived,) = hook.wait_for(1)
        assert arrived.verified(created["secret"])["type"] == "agent.created"
        log = json.loads(agentauth("deliveries", created["id"], env=env).stdout)
        assert [d["status"] for d in log["items"]] == ["delivered"]
        paused = agentauth("update", created["id"], "--paused", env=env)
        assert paused.returncode == 0 and json.loads(paused.stdout)["active"] is False
        gone = agentauth("delete", created["id"], env=env)
        assert gone.returncode == 0 and created["id"] in gone.stdout
    assert json.loads(agentauth("list", env=env).stdout)["items"] == []


def test_refusals_are_one_line_with_the_error(server: LiveServer, tmp_path: Path) -> None:
    file = tmp_path / "root.json"
    AgentClient.quickstart(server.url, "root", "orchestrator", credentials_file=file).close()
    env = {"AGENTAUTH_CREDENTIALS_FILE": str(file)}
    refused = agentauth("create", "http://10.0.0.1/hook", env=env)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "invalid_request: url: webhook URL must use https" in refused.stderr
    missing = agentauth("delete", "wh_nope", env=env)
    assert missing.returncode == 1 and "not_found: no such webhook in your tenant" in missing.stderr
    unauthenticated = agentauth("list", "--issuer", server.url, "--token", "not-a-token")
    assert unauthenticated.returncode == 1 and "invalid_token" in unauthenticated.stderr
    nothing = agentauth("list")
    assert nothing.returncode == 1 and "--credentials-file" in nothing.stderr
