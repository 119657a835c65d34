"""A real ``agentauth serve`` for the HTTP benchmarks (bench/http.py, bench/load.py, bench/revocation.py): started
on a free port of 127.0.0.1 with a fresh data directory, a PostgreSQL schema reset for ``--database postgres``, and
the CPU its processes use (Linux /proc).

Imported as ``server`` from the scripts in bench/, whose directory is on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (uvicorn's workers and multiprocessing's resource tracker), from /proc."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def worker_pids(pid: int) -> list[int]:
    """uvicorn's worker processes: the children of ``pid`` but multiprocessing's resource tracker."""
    found = []
    for child in children(pid):
        with contextlib.suppress(OSError):
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (/proc; 0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@contextlib.contextmanager
def serve(
    workers: int, database_url: str | None, data_dir: Path, log: Path, port: int = 0
) -> Iterator[tuple[int, int, str]]:
    """``agentauth serve --workers N`` on ``port`` (0: a free one) until the block ends: yields (port, pid, issuer
    URL). Stopped by its pid (SIGTERM; SIGKILL of it and of its workers, by their pids, if it does not exit)."""
    port = port or free_port()
    issuer_url = f"http://{HOST}:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    env.update(
        {
            "AGENTAUTH_DATA_DIR": str(data_dir),
            "AGENTAUTH_ISSUER_URL": issuer_url,
            # Far above what one client sends: the abuse limits are not what is measured.
            "AGENTAUTH_TOKEN_RATE_PER_IP": "100000000",
            "AGENTAUTH_TOKEN_RATE_PER_CLIENT": "100000000",
            "AGENTAUTH_QUICKSTART_RATE_PER_IP": "100000000",
        }
    )
    if database_url:
        env["AGENTAUTH_DATABASE_URL"] = database_url
    command = [str(BIN / "agentauth"), "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    with log.open("ab") as out:
        process = subprocess.Popen([*command, "--log-level", "warning"], env=env, stdout=out, stderr=subprocess.STDOUT)
    workers_seen: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{issuer_url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        if workers > 1:
            time.sleep(2)  # /health answered from the first worker; let the others finish starting
        workers_seen = children(process.pid)
        yield port, process.pid, issuer_url
    finally:
        workers_seen += children(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in set(workers_seen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def reset_postgres(url: str) -> None:
    """Drop and recreate the ``public`` schema of ``url``: every table in it is gone."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()
