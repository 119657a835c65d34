"""Everything done at start is safe when N workers or N replicas start at once on an empty data directory or an
empty database (issue 12, item 13): data directory and KEK file creation, migrations, key ring creation and the
first status list.

Ten times each, on SQLite and (with AGENTAUTH_TEST_POSTGRES=1) PostgreSQL:

* ``agentauth serve --workers 2`` on a fresh data directory (no AGENTAUTH_KEY_ENCRYPTION_KEY: both workers race
  to create the directory, the KEK file, the schema and the key ring);
* two separate ``agentauth serve`` processes started together: on SQLite sharing one fresh data directory (KEK
  file and database), on PostgreSQL sharing one empty database and a KEK given in the environment, as replicas.

Every start succeeds with no error logged, /health answers 200, every process serves the same JWKS, and a token
issued by one process is accepted as a bearer and introspected active by the other (for ``--workers 2``: by
whichever worker the kernel hands each new connection to).

Cost: a start imports the service (~1.5 s of CPU here). The separate processes are forked from one process that
imported it once (tests/scaleout/zygote.py: the real ``serve`` command, minus the import); ``--workers 2`` is the
real command (uvicorn spawns its workers, each importing). Iterations run CONCURRENCY at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from agentauth.keys import generate_kek
from live_server import BIN, LiveServer, free_ports, server_env, wait_until_up
from support import BACKENDS, BASE_POSTGRES_URL, POSTGRES_URL, bearer, reset_postgres

pytestmark = pytest.mark.slow

ITERATIONS = 10
CONCURRENCY = 4
ZYGOTE = Path(__file__).with_name("zygote.py")
LOG_PROBLEMS = ("Traceback", "ERROR", "error:", "zygote child failed")


# -- processes forked by the zygote ----------------------------------------------------------------------------


@dataclass
class Forked:
    """A zygote child, with the part of ``subprocess.Popen`` that LiveServer and wait_until_up use."""

    pid: int

    def poll(self) -> int | None:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return 0  # exited (the zygote reaps its children)
        return None

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.05)
        return 0


class Zygote:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ZYGOTE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.lock = threading.Lock()
        assert self.process.stdout is not None and self.process.stdout.readline() == "ready\n"

    def fork(self, env: dict[str, str], port: int, log: Path, workers: int = 1) -> LiveServer:
        assert self.process.stdin is not None and self.process.stdout is not None
        order = {"env": env, "port": port, "log": str(log), "workers": workers}
        with self.lock:
            self.process.stdin.write(json.dumps(order) + "\n")
            self.process.stdin.flush()
            pid = int(self.process.stdout.readline())
        return LiveServer(f"http://127.0.0.1:{port}", Forked(pid), log, env)  # type: ignore[arg-type]

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.process.stdout.close()


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    forker = Zygote()
    try:
        yield forker
    finally:
        forker.close()


# -- empty databases, one per concurrent iteration -----------------------------------------------------------


def slot_url(slot: int) -> str:
    url = make_url(POSTGRES_URL)
    return url.set(database=f"{url.database}_start{slot}").render_as_string(hide_password=False)


async def create_slot_databases() -> None:
    engine = create_async_engine(BASE_POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for slot in range(CONCURRENCY):
                name = make_url(slot_url(slot)).database
                if not await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


# -- one start -------------------------------------------------------------------------------------------------


def checked_log(server: LiveServer) -> None:
    log = server.log.read_text("utf-8", "replace")
    problems = [p for p in LOG_PROBLEMS if p in log]
    assert not problems, f"{server.url}: {problems} in the log:\n{log[-3000:]}"


def agrees(servers: list[LiveServer], requests_each: int) -> None:
    """/health 200 everywhere, one JWKS everywhere, and a token from each server works on every other."""
    jwks = set()
    with httpx.Client(timeout=15) as http:
        for server in servers:
            for _ in range(requests_each):
                # A new connection each time, so --workers 2 spreads them over its workers.
                with httpx.Client(timeout=15) as fresh:
                    assert fresh.get(server.url + "/health").status_code == 200
                    keys = fresh.get(server.url + "/.well-known/jwks.json")
                assert keys.status_code == 200, keys.text
                jwks.add(json.dumps(keys.json(), sort_keys=True))
        assert len(jwks) == 1, f"the processes publish different JWKS: {jwks}"
        for issuer in servers:
            made = http.post(issuer.url + "/api/v1/agents/quickstart", json={"name": "s", "agent_type": "tool"})
            assert made.status_code == 201, made.text
            body = made.json()
            for verifier in servers:
                for _ in range(requests_each):
                    with httpx.Client(timeout=15) as fresh:
                        listed = fresh.get(verifier.url + "/api/v1/agents", headers=bearer(body["access_token"]))
                        assert listed.status_code == 200, listed.text
                        seen = fresh.post(
                            verifier.url + "/api/v1/auth/introspect",
                            data={"token": body["access_token"], "client_secret": body["api_key"]},
                        )
                    assert seen.status_code == 200 and seen.json()["active"] is True, seen.text


def start_workers(tmp: Path, database_url: str | None, zygote: Zygote | None) -> list[LiveServer]:
    """``agentauth serve --workers 2``: forked by the zygote, or (``zygote`` None) the command itself, whose
    workers uvicorn spawns."""
    port = free_ports(1)[0]
    env = server_env(tmp / "data", port, "unused", database_url)
    del env["AGENTAUTH_KEY_ENCRYPTION_KEY"]  # both workers race to create the KEK file
    log = tmp / "workers.log"
    if zygote is not None:
        return [zygote.fork(env, port, log, workers=2)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(BIN / "agentauth"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
             "--log-level", "warning"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return [LiveServer(f"http://127.0.0.1:{port}", process, log, env)]


def start_processes(tmp: Path, database_url: str | None, zygote: Zygote) -> list[LiveServer]:
    ports = free_ports(2)
    issuer = f"http://127.0.0.1:{ports[0]}"  # replicas of one service: one issuer
    kek = generate_kek()
    servers = []
    for n, port in enumerate(ports):
        if database_url is None:  # SQLite: one data directory, its KEK file created by whichever starts first
            env = server_env(tmp / "data", port, "unused", None, AGENTAUTH_ISSUER_URL=issuer)
            del env["AGENTAUTH_KEY_ENCRYPTION_KEY"]
        else:  # PostgreSQL replicas: one database, the KEK from the environment
            env = server_env(tmp / f"data{n}", port, kek, database_url, AGENTAUTH_ISSUER_URL=issuer)
        servers.append(zygote.fork(env, port, tmp / f"process{n}.log"))
    return servers


def one_start(start: Callable[[], list[LiveServer]], tmp: Path, requests_each: int) -> float:
    began = time.monotonic()
    servers = start()
    try:
        for server in servers:
            wait_until_up(server, "/health", timeout=90)
        up = time.monotonic() - began
        agrees(servers, requests_each)
        for server in servers:
            checked_log(server)
        if (tmp / "data").exists():
            leftovers = [p.name for p in (tmp / "data").iterdir() if p.name.endswith(".tmp")]
            assert not leftovers, leftovers
        return up
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("mode", ["workers", "processes"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_first_start(
    mode: str, backend: str, tmp_path: Path, zygote: Zygote, record_property: Callable[[str, Any], None]
) -> None:
    if backend == "postgres":
        asyncio.run(create_slot_databases())
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(CONCURRENCY):
        slots.put(slot)

    def iteration(n: int) -> float:
        slot = slots.get()
        try:
            tmp = tmp_path / f"{n}"
            tmp.mkdir()
            url = None
            if backend == "postgres":
                url = slot_url(slot)
                asyncio.run(reset_postgres(url))
            if mode == "workers":
                return one_start(lambda: start_workers(tmp, url, zygote), tmp, requests_each=4)
            return one_start(lambda: start_processes(tmp, url, zygote), tmp, requests_each=1)
        finally:
            slots.put(slot)

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        ups = list(pool.map(iteration, range(ITERATIONS)))
    record_property("seconds_to_up", ups)
    print(f"{mode}/{backend}: up in {min(ups):.1f}-{max(ups):.1f} s")


@pytest.mark.parametrize("backend", BACKENDS)
def test_agentauth_serve_workers_2_starts_on_an_empty_directory(backend: str, tmp_path: Path) -> None:
    """Once as a shell runs it: the ``agentauth`` executable, uvicorn spawning both workers."""
    url = None
    if backend == "postgres":
        asyncio.run(create_slot_databases())
        url = slot_url(0)
        asyncio.run(reset_postgres(url))
    one_start(lambda: start_workers(tmp_path, url, None), tmp_path, requests_each=4)


# -- the KEK file, raced directly ------------------------------------------------------------------------------

RACERS = 6
RACE_ROUNDS = 30


def _race_for_kek(data_dir: Path, barrier: Any, results: Any) -> None:
    from agentauth.keyfile import load_or_create_kek

    barrier.wait()
    try:
        results.put(load_or_create_kek(data_dir, None).derive("probe").hex())
    except BaseException as exc:
        results.put(f"failed: {exc!r}")


def test_processes_racing_on_a_fresh_directory_get_one_kek(tmp_path: Path) -> None:
    """RACERS processes released together by a barrier, RACE_ROUNDS times, each on a fresh (not yet existing)
    data directory: every one gets a KEK, all the same one, from one complete 0600 file, no temporary left."""
    context = multiprocessing.get_context("fork")
    for round_ in range(RACE_ROUNDS):
        data_dir = tmp_path / str(round_) / "data"
        barrier, results = context.Barrier(RACERS), context.Queue()
        racers = [context.Process(target=_race_for_kek, args=(data_dir, barrier, results)) for _ in range(RACERS)]
        for racer in racers:
            racer.start()
        got = [results.get(timeout=30) for _ in racers]
        for racer in racers:
            racer.join(timeout=10)
        assert len(set(got)) == 1 and not got[0].startswith("failed"), f"round {round_}: {got}"
        assert [p.name for p in data_dir.iterdir()] == ["kek"]
        assert (data_dir / "kek").stat().st_mode & 0o777 == 0o600
