"""A real ``agentauth serve`` for the HTTP benchmarks (bench/http.py, bench/read.py, bench/load.py,
bench/revocation.py): started on a free port of 127.0.0.1 with a fresh data directory, a PostgreSQL schema reset for
``--database postgres``, the CPU its processes and everyone else use (Linux /proc), and py-spy sampling of it.

Imported as ``server`` from the scripts in bench/, whose directory is on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
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


def descendants(pid: int) -> list[int]:
    """Children of ``pid`` (of every thread of it), their children, and so on, from /proc."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
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


# -- who used the CPUs ----------------------------------------------------------------------------------------

TICK = float(os.sysconf("SC_CLK_TCK"))


def busy_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot (/proc/stat: all but idle and iowait)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields)
    return (user + nice + system + irq + softirq + steal) / TICK


class CpuMeter:
    """Who used the CPUs during a phase (Linux /proc): the server's processes (master and workers), this load
    generator, PostgreSQL, and everything else - other work on a shared machine shows up instead of silently
    skewing the numbers."""

    PARTIES = ("server", "load generator", "postgres")

    def __init__(self, server_pid: int) -> None:
        self.server = {server_pid, *descendants(server_pid)}

    def sample(self) -> dict[str, float] | None:
        """CPU seconds used so far by each party, the machine's busy seconds and the wall clock; None without
        /proc."""
        try:
            totals = dict.fromkeys(self.PARTIES, 0.0)
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    name = stat[stat.index("(") + 1 : stat.rindex(")")]
                    seconds = sum(int(v) for v in stat[stat.rindex(")") + 2 :].split()[11:13]) / TICK  # utime+stime
                    pid = int(entry.name)
                    if pid in self.server:
                        totals["server"] += seconds
                    elif pid == os.getpid():
                        totals["load generator"] += seconds
                    elif name == "postgres":
                        totals["postgres"] += seconds
            return {**totals, "busy": busy_seconds(), "wall": time.monotonic()}
        except OSError:
            return None

    @classmethod
    def used(cls, before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float]:
        """CPU seconds each party (and "other") used between two samples."""
        if before is None or after is None:
            return {}
        used = {k: after[k] - before[k] for k in cls.PARTIES}
        used["other"] = max(0.0, after["busy"] - before["busy"] - sum(used.values()))
        return used

    @classmethod
    def cores(cls, before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float]:
        """Cores each party (and "other") kept busy on average between two samples."""
        if before is None or after is None:
            return {}
        wall = after["wall"] - before["wall"]
        return {k: v / wall for k, v in cls.used(before, after).items()} if wall > 0 else {}


def wait_for_quiet(max_wait: float, threshold: float = 0.15) -> None:
    """On a shared machine, wait (at most ``max_wait`` s) until the rest of it uses under ``threshold`` cores."""
    if max_wait <= 0 or not Path("/proc/stat").exists():
        return
    deadline = time.monotonic() + max_wait
    while True:
        before, started = busy_seconds(), time.monotonic()
        time.sleep(1.0)
        used = (busy_seconds() - before) / (time.monotonic() - started)
        if used < threshold:
            return
        if time.monotonic() > deadline:
            print(f"   the machine is still busy ({used:.2f} cores used by others); measuring anyway", flush=True)
            return


# -- profiling ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def profiled(
    directory: Path | None, pid: int, seconds: float, label: str, threads: bool = False
) -> Iterator[Path | None]:
    """py-spy the server (its workers included) for ``seconds`` into DIR/label.txt, collapsed stacks (``threads``:
    one stack root per thread); yields that path, or None without ``directory``."""
    if directory is None:
        yield None
        return
    spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"{label}.txt"
    process = subprocess.Popen(
        [
            *(spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", "250"),
            *(["--threads"] if threads else []),
            *("--format", "raw", "--duration", str(max(1, int(seconds))), "--output", str(output)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield output
    finally:
        try:
            _, err = process.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        if process.returncode != 0:
            print(f"py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)


def summarize_profile(path: Path, categories: Sequence[tuple[str, tuple[str, ...]]], top: int = 20) -> str:
    """Where the sampled time went: per thread (when recorded), the inclusive share of each category (samples
    whose stack holds a frame matching one of its needles) and the functions with the most self time.

    py-spy samples threads that are not idle, so a thread's share is roughly the time it was running (or waiting
    for the GIL); time in C code without Python frames (uvloop, sqlite3, the GIL wait) shows on the calling frame.
    """
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    total = sum(n for _, n in stacks) or 1
    out = [f"py-spy: {total} samples in {path}"]
    threads: Counter[str] = Counter()
    for frames, n in stacks:
        thread = next((f for f in frames[:2] if f.startswith("thread (")), "")
        if thread:
            process = frames[0].split(":", 1)[0] if frames[0].startswith("process ") else ""
            threads[f"{process} {thread}".strip()] += n
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in threads.most_common(8)]
    for name, needles in categories:
        hits = sum(n for frames, n in stacks if any(any(k in f for k in needles) for f in frames))
        out.append(f"  {100 * hits / total:5.1f}%  incl. {name}")
    own: Counter[str] = Counter()
    for frames, n in stacks:
        own[frames[-1]] += n
    out.append("  top self time:")
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(out)
