"""Webhooks against real ``agentauth serve`` processes (issue 16 item 5, must show): a receiver verifies every
signature with the Standard Webhooks library; one that fails twice then succeeds gets the event once, with the
three attempts in the delivery log; and kill -9 of the server between the commit of a change and the delivery
of its event loses nothing - on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_support import kill9, running
from standardwebhooks import WebhookVerificationError

from agentauth.keys import generate_kek
from live_server import LiveServer, free_port, server_env, spawn
from support import POSTGRES_URL, bearer, ok, reset_postgres
from webhook_support import receiver

FAST = {
    "AGENTAUTH_WEBHOOK_ALLOW_LOOPBACK": "true",
    "AGENTAUTH_WEBHOOK_POLL_SECONDS": "0.2",
    "AGENTAUTH_WEBHOOK_RETRY_FIRST_SECONDS": "0.4",
}


def start(tmp: Path, backend: str, kek: str, port: int, **extra: str) -> LiveServer:
    database = POSTGRES_URL if backend == "postgres" else None
    env = server_env(tmp / "data", port, kek, database, **(FAST | extra))
    return spawn(env, port, tmp / "server.log", log_level="warning")


def root(server: LiveServer) -> dict[str, Any]:
    made = httpx.post(f"{server.url}/api/v1/agents/quickstart", json={"name": "root", "agent_type": "orchestrator"})
    return ok(made, 201)


def subscribe(server: LiveServer, token: str, url: str, events: list[str]) -> dict[str, Any]:
    made = httpx.post(f"{server.url}/api/v1/webhooks", json={"url": url, "events": events}, headers=bearer(token))
    return ok(made, 201)


def create_agent(server: LiveServer, token: str, name: str) -> str:
    body = {"name": name, "agent_type": "tool"}
    made = httpx.post(f"{server.url}/api/v1/agents", json=body, headers=bearer(token))
    agent_id: str = ok(made, 201)["agent"]["id"]
    return agent_id


def test_a_receiver_that_fails_twice_gets_the_event_once_signed_with_the_attempts_logged(
    backend: str, tmp_path: Path
) -> None:
    if backend == "postgres":
        asyncio.run(reset_postgres(POSTGRES_URL))
    with running([]) as servers, receiver(script=[500, 503]) as hook:
        server = start(tmp_path, backend, generate_kek(), free_port())
        servers.append(server)
        tenant = root(server)
        token = tenant["access_token"]
        created = subscribe(server, token, hook.url, ["agent.created"])
        secret = created["secret"]
        assert secret.startswith("whsec_") and "secret" not in ok(
            httpx.get(f"{server.url}/api/v1/webhooks/{created['id']}", headers=bearer(token))
        )
        child = create_agent(server, token, "worker")
        (accepted,) = hook.wait_for(1)
        time.sleep(1.5)  # time for a (wrong) further attempt
        assert [r.answered for r in hook.received] == [500, 503, 204]
        ids = {r.headers["webhook-id"] for r in hook.received}
        assert len(ids) == 1  # the same message every time: the receiver can dedupe
        for request in hook.received:
            payload = request.verified(secret)
            assert payload["type"] == "agent.created" and payload["data"]["target_id"] == child
            assert payload["data"]["tenant_id"] == tenant["agent"]["id"]
        with pytest.raises(WebhookVerificationError):  # the check can fail: another secret
            accepted.verified(subscribe(server, token, hook.url + "x", ["agent.created"])["secret"])
        tampered = accepted.body.replace(child.encode(), b"agt_someone_else")
        with pytest.raises(WebhookVerificationError):
            type(accepted)(accepted.headers, tampered, 204).verified(secret)
        log = ok(httpx.get(f"{server.url}/api/v1/webhooks/{created['id']}/deliveries", headers=bearer(token)))
        (delivery,) = log["items"]
        assert (delivery["status"], delivery["attempts"], delivery["event_type"]) == ("delivered", 3, "agent.created")
        assert delivery["message_id"] == accepted.headers["webhook-id"]
        assert [(a["attempt"], a["status_code"]) for a in delivery["log"]] == [(1, 500), (2, 503), (3, 204)]
        assert delivery["log"][0]["error"] == "HTTP 500" and delivery["delivered_at"] is not None


def test_kill9_between_commit_and_delivery_loses_nothing(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        asyncio.run(reset_postgres(POSTGRES_URL))
    kek, port = generate_kek(), free_port()
    with running([]) as servers, receiver() as hook:
        # First life: webhooks do not go out, so every acknowledged change is committed and not yet delivered.
        first = start(tmp_path, backend, kek, port, AGENTAUTH_WEBHOOKS_ENABLED="false")
        servers.append(first)
        token = root(first)["access_token"]
        secret = subscribe(first, token, hook.url, ["agent.*"])["secret"]
        made = [create_agent(first, token, f"a{n}") for n in range(25)]
        kill9(first)
        assert hook.received == []
        second = start(tmp_path, backend, kek, port)
        servers.append(second)
        arrived = hook.wait_for(len(made))
        time.sleep(1.0)
        assert len(hook.received) == len(made)  # each once
        assert sorted(r.verified(secret)["data"]["target_id"] for r in arrived) == sorted(made)
        assert len({r.headers["webhook-id"] for r in arrived}) == len(made)
