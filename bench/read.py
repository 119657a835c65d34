"""A protected read over real HTTP against the same server's bare endpoint, in one run (issue 13, "Must show").

It starts ``agentauth serve --workers N`` on 127.0.0.1 with a fresh data directory (``--database postgres``: a
freshly reset schema), registers a root agent with quickstart and ``--children`` child agents under it
(unmeasured), then drives ``--concurrency`` keep-alive HTTP/1.1 connections, each with one request in flight, for
a fixed time per phase:

1. ``GET /health`` - the same app, middleware and worker; no database, no token;
2. ``GET /api/v1/agents`` with the root agent's access token as a Bearer token - signature check, token-state
   lookup, the policy engine's authorization of ``agents.list``, the subtree query and the page's serialization.

Each phase runs ``--warmup`` seconds unmeasured first; with ``--rounds 2`` or more the two phases alternate (hello,
read, hello, read, ...) and each phase's figures are summed over its rounds, so a burst of other work on a shared
machine weighs on both alike. It reports, per phase, requests/s, p50/p99/max latency, non-200 answers and
connection errors, and the CPU used by the server, this load generator, PostgreSQL and everything else; then the
ratio read/hello against the goal (>= 30 %), and the same ratio from the server CPU spent per request (what
the rates' ratio would be if the server had a core to itself in both phases: on a shared machine it may not).
Every read answer must be a 200 whose page lists the root agent and its children
(a cheaper wrong answer would not be a faster read).

The load generator is bench/rawhttp.py's minimal asyncio HTTP/1.1 client on uvloop (~30 us of CPU per request):
on a 2-core machine it shares the CPUs with the server. ``--profile DIR`` samples the server with py-spy during the
read phase (``.venv/bin/pip install py-spy``) and prints where the time goes.

Run: .venv/bin/python bench/read.py [--seconds 10] [--concurrency 32] [--workers 1] [--database sqlite|postgres]
     [--port PORT]

``--database postgres`` DROPS the ``public`` schema of ``--postgres-url`` (default $AGENTAUTH_BENCH_POSTGRES_URL,
else postgresql+asyncpg://postgres@127.0.0.1:5432/test). Exit status 1 if the read phase had any error.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a script named http.py, and Python puts a script's directory first on sys.path: move it to the end,
# or ``import http.client`` (httpx, urllib) would find that file instead of the standard library's package; at the
# end it still serves ``import rawhttp`` and ``import server``, the helpers beside this script.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import os
import platform
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from rawhttp import HttpError, RawConnection, build_request, new_event_loop
from server import DEFAULT_POSTGRES_URL, HOST, CpuMeter, profiled, reset_postgres, serve, summarize_profile

HELLO_PATH = "/health"
READ_PATH = "/api/v1/agents"
GOAL_READ_RATIO = 0.30


@dataclass
class Phase:
    """What the rounds of one phase saw, summed."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: Counter[str] = field(default_factory=Counter)  # CPU seconds used meanwhile, by party

    @property
    def ok(self) -> int:
        return self.statuses[200]

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200) + sum(self.errors.values())

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile_ms(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    def cpu_per_request_ms(self) -> float:
        """Server CPU per answered request: what the ratio would be on a machine where nothing else runs."""
        answered = sum(self.statuses.values())
        return 1000 * self.cpu["server"] / answered if answered else float("nan")

    def cores(self) -> str:
        if not self.seconds:
            return "n/a"
        return ", ".join(f"{name} {used / self.seconds:.2f}" for name, used in self.cpu.items())


# -- load -----------------------------------------------------------------------------------------------------


async def closed_loop(
    connections: list[RawConnection], request: bytes, seconds: float, phase: Phase | None, check: bytes
) -> None:
    """Each connection sends ``request``, waits for the answer, sends again, until ``seconds`` have passed. A 200
    must contain ``check``; one that does not counts as an error. Adds what it saw to ``phase`` (None: warm-up)."""
    into = phase or Phase()
    started = time.perf_counter()
    deadline = started + seconds

    async def loop(connection: RawConnection) -> None:
        while (begin := time.perf_counter()) < deadline:
            try:
                status, body = await connection.request(request, 30.0)
            except (HttpError, OSError, TimeoutError) as exc:
                into.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)
                continue
            into.latencies.append(time.perf_counter() - begin)
            if status == 200 and check not in body:
                into.errors["200 without the expected content"] += 1
                continue
            into.statuses[status] += 1

    await asyncio.gather(*(loop(c) for c in connections))
    into.seconds += time.perf_counter() - started


async def open_pool(port: int, size: int, warm: bytes) -> list[RawConnection]:
    """``size`` connections, opened one at a time with a request on each: opened in a burst, they would all be
    accepted by whichever worker process woke first, and "two workers" would measure one."""
    connections = []
    for _ in range(size):
        connection = await RawConnection.open(HOST, port)
        status, body = await connection.request(warm, 30.0)
        if status != 200:
            raise SystemExit(f"warm-up request answered {status}: {body[:300]!r}")
        connections.append(connection)
        await asyncio.sleep(0.005)
    return connections


async def prepare(port: int, children_count: int) -> tuple[str, bytes]:
    """A root agent (quickstart) with ``children_count`` children: its access token, and the bytes every page
    of the list must contain (the root agent's id)."""
    connection = await RawConnection.open(HOST, port)
    try:
        quickstart = {"name": "read-bench", "agent_type": "orchestrator"}
        status, body = await connection.request(
            build_request(HOST, port, "POST", "/api/v1/agents/quickstart", json=quickstart), 30.0
        )
        if status != 201:
            raise SystemExit(f"quickstart answered {status}: {body[:300]!r}")
        root = orjson.loads(body)
        token = str(root["access_token"])
        for n in range(children_count):
            child = {"name": f"read-bench-{n}", "agent_type": "tool"}
            status, body = await connection.request(
                build_request(HOST, port, "POST", READ_PATH, json=child, token=token), 30.0
            )
            if status != 201:
                raise SystemExit(f"creating a child agent answered {status}: {body[:300]!r}")
        status, body = await connection.request(build_request(HOST, port, "GET", READ_PATH, token=token), 30.0)
        page = orjson.loads(body)
        if status != 200 or len(page["items"]) != children_count + 1:
            raise SystemExit(f"the list answered {status} with {body[:300]!r}, not {children_count + 1} agents")
        return token, f'"{root["agent"]["id"]}"'.encode()
    finally:
        connection.close()


# Inclusive share of samples whose stack holds a frame matching one of these.
LAYERS = [
    ("authenticate_bearer", ("authenticate_bearer",)),
    ("token-state lookup", ("token_states", "lookups.py")),
    ("policy authorize", ("authorization.py", "policy_engine.py")),
    ("list query (issuer/agents.py list)", ("issuer/agents.py",)),
    ("SQLite one-hop reads (storage/db.py read)", ("SqliteSessionMaker._read",)),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("pydantic", ("pydantic",)),
    ("direct routes (api/direct.py)", ("api/direct.py",)),
    ("FastAPI routing + dependencies", ("fastapi/routing.py", "fastapi/dependencies")),
    ("starlette", ("starlette/",)),
    ("uvicorn protocol", ("uvicorn/protocols/",)),
]


async def measure(args: argparse.Namespace, port: int, pid: int) -> tuple[Phase, Phase]:
    token, root_id = await prepare(port, args.children)
    hello_request = build_request(HOST, port, "GET", HELLO_PATH)
    read_request = build_request(HOST, port, "GET", READ_PATH, token=token)
    connections = await open_pool(port, args.concurrency, read_request)
    hello, read = Phase(), Phase()
    meter = CpuMeter(pid)
    try:
        for n in range(args.rounds):
            for phase, request, check in ((hello, hello_request, b"ok"), (read, read_request, root_id)):
                await closed_loop(connections, request, args.warmup, None, check)
                before = meter.sample()
                label = f"read-{args.database}-w{args.workers}-{n}"
                with profiled(args.profile if phase is read else None, pid, args.seconds, label) as profile:
                    await closed_loop(connections, request, args.seconds, phase, check)
                phase.cpu.update(CpuMeter.used(before, meter.sample()))
                if profile is not None and profile.exists():
                    print(summarize_profile(profile, LAYERS, top=25), flush=True)
    finally:
        for connection in connections:
            connection.close()
    return hello, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase and round")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each phase")
    parser.add_argument("--rounds", type=int, default=1, help="hello/read rounds, alternating")
    parser.add_argument("--concurrency", type=int, default=32, help="connections, one request in flight each")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--children", type=int, default=4, help="child agents under the root (page size - 1)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AGENTAUTH_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="with --database postgres; its public schema is dropped first",
    )
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR", help="py-spy the read phase")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="agentauth-read-") as tmp,
        asyncio.Runner(loop_factory=new_event_loop) as runner,
    ):
        data_dir, log = Path(tmp) / "data", Path(tmp) / "server.log"
        database_url = None
        if args.database == "postgres":
            runner.run(reset_postgres(args.postgres_url))
            database_url = args.postgres_url
        with serve(args.workers, database_url, data_dir, log, args.port) as (port, pid, _):
            hello, read = runner.run(measure(args, port, pid))
        tracebacks = log.read_text(errors="replace").count("Traceback (most recent call last)")

    print(
        f"bench/read.py: {args.database}, {args.workers} worker(s), {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {args.concurrency} connections, {args.rounds} x {args.seconds:g} s per "
        f"phase, a page of {args.children + 1} agents; load generator on the same machine\n"
    )
    print(
        "| phase | req/s | p50 ms | p99 ms | max ms | errors | server CPU ms/request "
        "| cores used (server, generator, postgres, other) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, phase in ((f"GET {HELLO_PATH}", hello), (f"GET {READ_PATH} (Bearer)", read)):
        errors = {**{f"HTTP {s}": n for s, n in phase.statuses.items() if s != 200}, **phase.errors}
        print(
            f"| {name} | {phase.rate:,.0f} | {phase.percentile_ms(50):.1f} | {phase.percentile_ms(99):.1f} "
            f"| {max(phase.latencies, default=0) * 1000:.0f} | {phase.failed}{f' {errors}' if errors else ''} "
            f"| {phase.cpu_per_request_ms():.3f} | {phase.cores()} |"
        )
    ratio = read.rate / hello.rate if hello.rate else 0.0
    verdict = "met" if ratio >= GOAL_READ_RATIO and read.failed == 0 else "MISSED"
    print(f"\nread/hello = {ratio:.1%} (goal >= {GOAL_READ_RATIO:.0%}, no errors): {verdict}")
    # On a shared machine the server may not get a whole core in either phase: the CPU it spent per request is
    # the ratio it would reach with the machine to itself (both phases CPU-bound on one worker).
    by_cpu = hello.cpu_per_request_ms() / read.cpu_per_request_ms() if read.cpu_per_request_ms() else 0.0
    print(f"by server CPU per request: hello/read = {by_cpu:.1%}")
    if tracebacks:
        print(f"server log has {tracebacks} tracebacks", file=sys.stderr)
    if read.failed or tracebacks:
        sys.exit(1)


if __name__ == "__main__":
    main()
