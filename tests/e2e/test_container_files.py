"""The container files (issue 16 item 6) as written: the Dockerfile's ENTRYPOINT + CMD with its ENV (only the
data directory, listen address and port moved for the host) serve, its HEALTHCHECK command answers 0 while the
server is ready and 1 once it is gone, the image runs as a non-root user; and the compose file's replicas, started
on the host with the environment it gives them (its PostgreSQL and Redis hosts mapped to 127.0.0.1), share one
key ring and accept each other's tokens. No Docker daemon is needed (there is none here)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agentauth.keys import generate_kek
from live_server import BIN, LiveServer, free_port, wait_until_up
from support import POSTGRES_ENABLED, POSTGRES_URL, reset_postgres

ROOT = Path(__file__).resolve().parents[2]


def hermetic_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            env.update(dict(part.split("=", 1) for part in shlex.split(rest)))
    return env


def one(word: str) -> str:
    (found,) = [rest for w, rest in instructions() if w == word]
    return found


def command() -> list[str]:
    """ENTRYPOINT + CMD, the executable resolved in this checkout's venv (where pip put it, as in the image)."""
    entry = exec_form(one("ENTRYPOINT")) + exec_form(one("CMD"))
    return [str(BIN / entry[0]), *entry[1:]]


def healthcheck() -> list[str]:
    _, _, rest = one("HEALTHCHECK").partition("CMD ")
    check = exec_form(rest)
    assert check[0] == "python"
    return [sys.executable, *check[1:]]


def start(env: dict[str, str], port: int, log: Path) -> LiveServer:
    with log.open("ab") as out:
        process = subprocess.Popen(command(), env=env, stdout=out, stderr=subprocess.STDOUT)
    server = LiveServer(f"http://127.0.0.1:{port}", process, log, env)
    wait_until_up(server, "/health", timeout=60)
    return server


def test_the_image_runs_its_entrypoint_non_root_and_its_healthcheck_tells_ready_from_gone(tmp_path: Path) -> None:
    assert one("USER") not in ("", "0", "root")
    env = image_env()
    assert env["AGENTAUTH_DATA_DIR"] == "/data" and env["AGENTAUTH_PORT"] == "8000"
    port = free_port()
    moved = {"AGENTAUTH_DATA_DIR": str(tmp_path / "data"), "AGENTAUTH_HOST": "127.0.0.1", "AGENTAUTH_PORT": str(port)}
    run_env = hermetic_environment() | env | moved | {"AGENTAUTH_ISSUER_URL": f"http://127.0.0.1:{port}"}
    server = start(run_env, port, tmp_path / "server.log")
    try:
        checked = subprocess.run(healthcheck(), env=run_env, capture_output=True, timeout=30, check=False)
        assert checked.returncode == 0, checked.stderr
        made = httpx.post(f"{server.url}/api/v1/agents/quickstart", json={"name": "c", "agent_type": "tool"})
        assert made.status_code == 201, made.text
    finally:
        server.stop()
    gone = subprocess.run(healthcheck(), env=run_env, capture_output=True, timeout=30, check=False)
    assert gone.returncode != 0


def compose_replicas() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    return {name: s for name, s in document["services"].items() if name.startswith("agentauth-")}


def host_env(environment: dict[str, str], kek: str, port: int) -> dict[str, str]:
    """The compose environment with its variables given and its service hosts mapped onto this machine's."""
    values = {
        "AGENTAUTH_ISSUER_URL": f"http://127.0.0.1:{port}",
        "AGENTAUTH_KEY_ENCRYPTION_KEY": kek,
        "AGENTAUTH_TRUSTED_PROXIES": "",
    }
    env = {}
    for name, written in environment.items():
        value = re.sub(r"\$\{(\w+)[^}]*\}", lambda m: values[m.group(1)], str(written))
        if name == "AGENTAUTH_DATABASE_URL":
            value = POSTGRES_URL
        elif name == "AGENTAUTH_REDIS_URL":
            value = value.replace("redis://redis:", "redis://127.0.0.1:").rsplit("/", 1)[0] + "/7"
        env[name] = value
    return env


@pytest.mark.skipif(not POSTGRES_ENABLED, reason="the compose replicas run on PostgreSQL (AGENTAUTH_TEST_POSTGRES=1)")
def test_the_compose_replicas_share_one_key_ring_and_accept_each_others_tokens(tmp_path: Path) -> None:
    replicas = compose_replicas()
    assert len(replicas) >= 2
    for service in replicas.values():
        assert service["environment"]["AGENTAUTH_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert service["environment"]["AGENTAUTH_REDIS_URL"].startswith("redis://redis:")
        assert service["ports"][0].endswith(":8000")
    asyncio.run(reset_postgres(POSTGRES_URL))
    kek, first_port = generate_kek(), free_port()
    servers: list[LiveServer] = []
    try:
        for index, service in enumerate(replicas.values()):
            port = first_port if index == 0 else free_port()
            env = hermetic_environment() | image_env() | host_env(service["environment"], kek, first_port)
            env |= {"AGENTAUTH_DATA_DIR": str(tmp_path / f"data{index}"), "AGENTAUTH_HOST": "127.0.0.1"}
            env["AGENTAUTH_PORT"] = str(port)
            servers.append(start(env, port, tmp_path / f"replica{index}.log"))
            time.sleep(0.2)
        a, b = servers[0], servers[1]
        assert httpx.get(f"{a.url}/.well-known/jwks.json").json() == httpx.get(f"{b.url}/.well-known/jwks.json").json()
        made = httpx.post(f"{a.url}/api/v1/agents/quickstart", json={"name": "c", "agent_type": "tool"})
        assert made.status_code == 201, made.text
        seen = httpx.get(f"{b.url}/api/v1/agents", headers={"Authorization": f"Bearer {made.json()['access_token']}"})
        assert seen.status_code == 200 and seen.json()["items"][0]["id"] == made.json()["agent"]["id"]
    finally:
        for server in servers:
            server.stop()
