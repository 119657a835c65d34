"""Real servers in subprocesses for the end-to-end tests (tests/sdk, tests/cli, tests/mcp, tests/faults,
tests/scaleout): `agentauth serve` on a free port with a temporary data directory, and any ASGI app under uvicorn.
Each is waited for until it answers, and stopped by its own pid."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
STATUS_TTL_SECONDS = 10  # the shortest ttl AGENTAUTH_STATUS_LIST_TTL_SECONDS allows


# Ports handed out by this process, from a block of its own below the kernel's ephemeral range (32768-60999 here):
# bind(("127.0.0.1", 0)) can hand the port a concurrent test in this process has just been given but whose server
# has not bound it yet, and then two servers race for one port (CI saw a replica answer with another test's JWKS).
# Each pytest-xdist worker takes its own block, so no two workers hand out the same port either.
_PORT_BLOCK = 1200
# AGENTAUTH_TEST_PORT_BASE moves the blocks, for two test runs on one machine at once.
_XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_PORT_BASE = int(os.environ.get("AGENTAUTH_TEST_PORT_BASE", "20000")) + _PORT_BLOCK * _XDIST_WORKER
_port_lock = threading.Lock()
_port_offsets = itertools.count()


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that are free now and that no other caller in this test run has been given."""
    ports: list[int] = []
    with _port_lock:
        while len(ports) < n:
            port = _PORT_BASE + next(_port_offsets) % _PORT_BLOCK  # a block lasts a whole run; wrap, not fail
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue  # in use by something else on the machine
            ports.append(port)
    return ports


def free_port() -> int:
    return free_ports(1)[0]


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def wait_until_up(server: LiveServer, path: str, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.url} exited early:\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + path, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.url} did not come up:\n{server.log.read_text()[-3000:]}")


def server_env(data_dir: Path, port: int, kek: str, database_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of one ``agentauth serve``: our settings only (no inherited AGENTAUTH_*), limits far above
    what a test sends (limits are tested elsewhere), and the KEK given explicitly so the test can hash refresh
    tokens the way the server does, or give several replicas the same one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    env.update(
        AGENTAUTH_DATA_DIR=str(data_dir),
        AGENTAUTH_ISSUER_URL=f"http://127.0.0.1:{port}",
        AGENTAUTH_KEY_ENCRYPTION_KEY=kek,
        AGENTAUTH_TOKEN_RATE_PER_IP="1000000",
        AGENTAUTH_TOKEN_RATE_PER_CLIENT="1000000",
        AGENTAUTH_QUICKSTART_RATE_PER_IP="1000000",
        AGENTAUTH_STATUS_LIST_TTL_SECONDS=str(STATUS_TTL_SECONDS),
    )
    if database_url is not None:
        env["AGENTAUTH_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def spawn(
    env: dict[str, str], port: int, log: Path, *, log_level: str = "info", wait: bool = True, timeout: float = 60
) -> LiveServer:
    """``agentauth serve`` on 127.0.0.1:``port``, its output appended to ``log`` (one process: its pid is the
    server, so kill -9 of the pid kills the service); waited for until /health answers unless ``wait`` is off."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(BIN / "agentauth"), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log, env)
    if wait:
        wait_until_up(server, "/health", timeout=timeout)
    return server


def issuer_env(data_dir: Path, port: int) -> dict[str, str]:
    """The environment of `agentauth serve` - and of every CLI command that shares its data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    return env | {
        "AGENTAUTH_ISSUER_URL": f"http://127.0.0.1:{port}",
        "AGENTAUTH_DATA_DIR": str(data_dir),
        "AGENTAUTH_STATUS_LIST_TTL_SECONDS": str(STATUS_TTL_SECONDS),
        "AGENTAUTH_QUICKSTART_RATE_PER_IP": "10000",
        "AGENTAUTH_TOKEN_RATE_PER_IP": "100000",
        "AGENTAUTH_TOKEN_RATE_PER_CLIENT": "100000",
    }


def start_issuer(tmp: Path, *, wait: bool = True) -> LiveServer:
    port = free_port()
    return spawn(issuer_env(tmp / "data", port), port, tmp / "issuer.log", log_level="warning", wait=wait, timeout=45)


def start_uvicorn(
    tmp: Path, app_dir: Path, app: str, env: Mapping[str, str], port: int | None = None, *, wait: bool = True
) -> LiveServer:
    port = port or free_port()
    log = tmp / f"{app.replace(':', '_')}.log"
    full_env = dict(os.environ) | dict(env)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(app_dir),
                app,
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log, full_env)
    if wait:
        wait_until_up(server, "/")
    return server
