"""A real ``agentauth serve`` process per backend for the end-to-end tests.

``issuer`` starts ``.venv/bin/agentauth serve`` on a free port of 127.0.0.1 with a fresh data directory (and, for
PostgreSQL, a freshly reset schema), waits until ``/health`` answers and yields an ``E2EServer``. One process
serves every test of a module on a backend (start-up runs the migrations and creates the key ring: ~2 s); the
log is checked after each test and again after shutdown, and any traceback in it fails the test that caused it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from browser_support import require_browser
from live_server import LiveServer, free_port, start_issuer
from support import BACKENDS, POSTGRES_URL, reset_postgres

AGENTAUTH = Path(sys.executable).with_name("agentauth")
STARTUP_SECONDS = 60
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class E2EServer:
    url: str
    backend: str
    database_url: str
    log: Path
    process: subprocess.Popen[bytes]
    checked: int = 0  # log bytes already checked for tracebacks

    def new_log(self) -> str:
        """The log written since the last call."""
        data = self.log.read_bytes()
        fresh, self.checked = data[self.checked :], len(data)
        return fresh.decode("utf-8", "replace")

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text("utf-8", "replace")[-chars:]


def server_env(data_dir: Path, port: int, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    env.update(
        AGENTAUTH_DATA_DIR=str(data_dir),
        AGENTAUTH_ISSUER_URL=f"http://127.0.0.1:{port}",
        # Generous limits: the tests send bursts from one IP; the limits themselves are tested elsewhere.
        AGENTAUTH_TOKEN_RATE_PER_IP="1000000",
        AGENTAUTH_TOKEN_RATE_PER_CLIENT="1000000",
        AGENTAUTH_QUICKSTART_RATE_PER_IP="100000",
    )
    if database_url is not None:
        env["AGENTAUTH_DATABASE_URL"] = database_url
    return env


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"{url} exited with {process.returncode} during start-up:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"{url} did not answer /health within {STARTUP_SECONDS} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="module", params=BACKENDS)
def issuer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EServer]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"e2e-{backend}")
    data_dir = tmp / "data"
    if backend == "postgres":
        asyncio.run(reset_postgres(POSTGRES_URL))
        database_url = POSTGRES_URL
    else:
        database_url = f"sqlite+aiosqlite:///{(data_dir / 'agentauth.db').resolve()}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(AGENTAUTH), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
            env=server_env(data_dir, port, database_url if backend == "postgres" else None),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = E2EServer(url=url, backend=backend, database_url=database_url, log=log, process=process)
    try:
        wait_healthy(process, url, log)
        if TRACEBACK in server.new_log():
            pytest.fail(f"the server printed a traceback during start-up:\n{server.tail()}")
        yield server
    finally:
        stop(process)
    rest = server.new_log()  # what no test's check has seen: shutdown
    if TRACEBACK in rest:
        pytest.fail(f"the server printed a traceback while shutting down:\n{rest[-4000:]}")


@pytest.fixture
def server(issuer: E2EServer) -> Iterator[E2EServer]:
    """The module's server; fails the test if the server printed a traceback while it ran."""
    issuer.new_log()
    yield issuer
    time.sleep(0.05)  # let the server flush what the last request logged
    fresh = issuer.new_log()
    if issuer.process.poll() is not None:
        pytest.fail(f"the server exited with {issuer.process.returncode}:\n{issuer.tail()}")
    if TRACEBACK in fresh:
        pytest.fail(f"the server printed a traceback during this test:\n{fresh[-4000:]}")


@pytest.fixture
def browser_issuer(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh issuer (``live_server.start_issuer``) for one browser test; the browser must be there (a skip on a
    developer's machine without it, a failure under CI)."""
    require_browser()
    live = start_issuer(tmp_path)
    try:
        yield live
    finally:
        live.stop()
