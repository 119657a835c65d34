"""Revocation registry and token lifecycle throughput (issue 4: status lists, introspection, revocation).

Starts ``agentauth serve --workers N`` on 127.0.0.1 with a fresh data directory, registers an agent, and measures
over real HTTP with 32 keep-alive connections:
  * introspections/s (POST /api/v1/auth/introspect, the caller's bearer, another token of the same agent), p50/p99;
  * revocations/s (POST /api/v1/auth/revoke of distinct, pre-minted tokens);
  * the first GET of a status list after a bit changed (the server's whole republish path, DB read included);
and in-process:
  * republishing a changed 131,072-entry list: set a bit, encode (gzip + base64url), sign - median of 200 runs;
  * an offline status check from a cached list: ``Verifier._status`` (warm cache) and ``StatusList.get``.

The load generator is bench/rawhttp.py's minimal HTTP/1.1 keep-alive client on uvloop: on a 2-core machine it
shares the CPUs with the server, and httpx would cost more CPU per request than the endpoint being measured. Its
connections are opened one at a time (opened in a burst, one worker process accepts them all), and the CPU each
worker spent during the introspection run is printed, so a lopsided split is visible. So is the load average: on
a shared machine, other processes' load lowers every HTTP figure.
Run: .venv/bin/python bench/revocation.py [--seconds 5] [--workers 2]
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
import random
import statistics
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson

from agentauth.keys import KeyRing
from agentauth.vc import CredentialIssuer, StaticStatusLists, StatusEntry, StatusList, Verifier
from agentauth.vc.jws import parse_compact
from rawhttp import RawConnection, build_request, new_event_loop
from server import HOST, cpu_seconds, serve, worker_pids

LIST_SIZE = 131_072
GOALS = {"introspection": 2_500.0, "republish_ms": 0.5, "status_us": 1.0}


# -- over HTTP ----------------------------------------------------------------------------------------------


async def pool(port: int, size: int, warm: bytes) -> list[RawConnection]:
    """``size`` connections, opened one at a time with a request on each: opened in a burst, they would all be
    accepted by whichever worker process woke first, and "two workers" would measure one."""
    conns = []
    for _ in range(size):
        conn = await RawConnection.open(HOST, port)
        status, body = await conn.request(warm)
        assert status == 200, body[:300]
        conns.append(conn)
        await asyncio.sleep(0.01)
    return conns


def worker_cpu(parent: int) -> dict[int, float]:
    """CPU seconds used so far by each worker process of the server (Linux /proc; empty elsewhere)."""
    return {pid: cpu_seconds(pid) for pid in worker_pids(parent)}


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def revoke_request(port: int, caller: str, token: str) -> bytes:
    return build_request(HOST, port, "POST", "/api/v1/auth/revoke", form={"token": token}, token=caller)


async def mint(conns: list[RawConnection], port: int, api_key: str, count: int) -> list[str]:
    form = {"grant_type": "client_credentials", "client_secret": api_key}
    request = build_request(HOST, port, "POST", "/api/v1/auth/token", form=form)
    tokens: list[str] = []

    async def worker(conn: RawConnection, n: int) -> None:
        for _ in range(n):
            status, body = await conn.request(request)
            assert status == 200, body[:300]
            tokens.append(orjson.loads(body)["access_token"])

    share = [count // len(conns) + (1 if i < count % len(conns) else 0) for i in range(len(conns))]
    await asyncio.gather(*(worker(c, n) for c, n in zip(conns, share, strict=True)))
    return tokens


async def introspection_rate(conns: list[RawConnection], request: bytes, seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(conn: RawConnection) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            status, body = await conn.request(request)
            latencies.append(time.perf_counter() - start)
            assert status == 200 and b'"active":true' in body, body[:300]

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    return len(latencies) / (time.perf_counter() - start), latencies


async def revocation_rate(conns: list[RawConnection], requests: list[bytes]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = iter(requests)

    async def worker(conn: RawConnection) -> None:
        for request in queue:
            begin = time.perf_counter()
            status, body = await conn.request(request)
            latencies.append(time.perf_counter() - begin)
            assert status == 200, body[:300]

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    return len(requests) / (time.perf_counter() - start), latencies


async def republish_over_http(conn: RawConnection, port: int, caller: str, tokens: list[str]) -> list[float]:
    """Latency of the first GET of a list after one of its bits changed (the server re-signs it then)."""
    samples = []
    for token in tokens:
        status, _ = await conn.request(revoke_request(port, caller, token))
        assert status == 200
        list_url = parse_compact(token).payload["vc"]["credentialStatus"][0]["statusListCredential"]
        begin = time.perf_counter()
        status, _ = await conn.request(build_request(HOST, port, "GET", urllib.parse.urlsplit(list_url).path))
        samples.append(time.perf_counter() - begin)
        assert status == 200
    return samples


async def over_http(args: argparse.Namespace, port: int, pid: int) -> dict[str, object]:
    first = await RawConnection.open(HOST, port)
    quickstart = {"name": "bench", "agent_type": "tool"}
    status, body = await first.request(build_request(HOST, port, "POST", "/api/v1/agents/quickstart", json=quickstart))
    assert status == 201, body[:300]
    agent = orjson.loads(body)
    caller, api_key = agent["access_token"], agent["api_key"]
    target = (await mint([first], port, api_key, 1))[0]
    first.close()
    introspect = build_request(HOST, port, "POST", "/api/v1/auth/introspect", form={"token": target}, token=caller)
    conns = await pool(port, args.concurrency, introspect)
    await introspection_rate(conns, introspect, 1.0)  # warm-up: every worker, connection and cache
    cpu_before, load_before = worker_cpu(pid), load_average()
    rate, latencies = await introspection_rate(conns, introspect, args.seconds)
    cpu_after = worker_cpu(pid)
    split = sorted((cpu_after[p] - cpu_before.get(p, 0.0) for p in cpu_after), reverse=True)

    started = time.perf_counter()
    doomed = await mint(conns, port, api_key, args.revocations)
    mint_rate = len(doomed) / (time.perf_counter() - started)
    revoke_rate, revoke_latencies = await revocation_rate(conns, [revoke_request(port, caller, t) for t in doomed])

    extra = await mint(conns[:1], port, api_key, 50)
    republish = await republish_over_http(conns[0], port, caller, extra)
    for conn in conns:
        conn.close()
    return {
        "introspection": rate,
        "introspection_p50": statistics.median(latencies) * 1000,
        "introspection_p99": statistics.quantiles(latencies, n=100)[98] * 1000,
        "revocation": revoke_rate,
        "revocation_p50": statistics.median(revoke_latencies) * 1000,
        "revocation_p99": statistics.quantiles(revoke_latencies, n=100)[98] * 1000,
        "issuance": mint_rate,
        "republish_http_ms": statistics.median(republish) * 1000,
        "worker_cpu": split,
        "cpu_per_introspection_ms": sum(split) / (rate * args.seconds) * 1000 if split else float("nan"),
        "load": f"{load_before} -> {load_average()}",
    }


# -- in-process ---------------------------------------------------------------------------------------------


def per_call(fn: Callable[[], object], seconds: float, rounds: int = 7) -> float:
    """Seconds per call: the best of ``rounds`` timed rounds (as ``timeit`` advises - slower rounds measure
    the other processes on a shared machine, not the code)."""
    results = []
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / rounds
        while True:
            for _ in range(1000):
                fn()
            n += 1000
            now = time.perf_counter()
            if now >= deadline:
                results.append((now - start) / n)
                break
    return min(results)


def in_process(args: argparse.Namespace) -> dict[str, object]:
    now = datetime.now(UTC)
    issuer = CredentialIssuer(f"http://{HOST}:8000", KeyRing.create(f"did:web:{HOST}%3A8000", now))
    url = f"http://{HOST}:8000/api/v1/status-lists/1"
    rng = random.Random(7)
    bits = StatusList(LIST_SIZE)
    for index in rng.sample(range(LIST_SIZE), 1_000):  # a list with a realistic sprinkling of revocations
        bits.set(index)

    set_t, encode_t, sign_t, total_t = [], [], [], []
    for _ in range(args.runs):
        index = rng.randrange(LIST_SIZE)
        t0 = time.perf_counter()
        bits.set(index)
        t1 = time.perf_counter()
        encoded = bits.encode()
        t2 = time.perf_counter()
        jwt = issuer.issue_status_list_credential(
            list_url=url, encoded_list=encoded, now=now, ttl_seconds=300, valid_for_seconds=86_400
        )
        t3 = time.perf_counter()
        set_t.append(t1 - t0)
        encode_t.append(t2 - t1)
        sign_t.append(t3 - t2)
        total_t.append(t3 - t0)

    verifier = Verifier(
        issuer_url=f"http://{HOST}:8000", jwks=issuer.ring.jwks(), status_source=StaticStatusLists({url: jwt})
    )
    clean = next(i for i in range(LIST_SIZE) if not bits.get(i))
    vc = {"credentialStatus": StatusEntry(url, clean).to_json()}
    verifier._status(vc, now, now.timestamp())  # warm the cache: one signature check and one decompression
    check = verifier._status  # the per-credential step a verifier runs, measured alone
    later = now + timedelta(seconds=1)
    later_ts = later.timestamp()
    return {
        "republish_ms": statistics.median(total_t) * 1000,
        "republish_set_us": statistics.median(set_t) * 1e6,
        "republish_encode_ms": statistics.median(encode_t) * 1000,
        "republish_sign_ms": statistics.median(sign_t) * 1000,
        "encoded_bytes": len(encoded),
        "status_us": per_call(lambda: check(vc, later, later_ts), args.seconds / 2) * 1e6,
        "get_us": per_call(lambda: bits.get(clean), args.seconds / 2) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the introspection run")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--revocations", type=int, default=3_000, help="distinct tokens to pre-mint and revoke")
    parser.add_argument("--runs", type=int, default=200, help="republish runs (median reported)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="agentauth-bench-") as tmp,
        asyncio.Runner(loop_factory=new_event_loop) as runner,
        serve(args.workers, None, Path(tmp) / "data", Path(tmp) / "server.log", args.port) as (port, pid, _),
    ):
        http = runner.run(over_http(args, port, pid))
    local = in_process(args)
    r = {**http, **local}

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    print(f"\n{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{args.workers} server workers, {args.concurrency} keep-alive connections, SQLite; "
          f"load average during the HTTP run {r['load']}")  # fmt: skip
    split = ", ".join(f"{s:.1f}" for s in r["worker_cpu"]) or "n/a"
    print(f"introspection run: server worker CPU seconds [{split}] over {args.seconds:g} s, "
          f"{r['cpu_per_introspection_ms']:.2f} ms CPU per introspection\n")  # fmt: skip
    print("| Measurement | Result | Goal | Met |")
    print("|---|---|---|---|")
    print(
        f"| Introspection over HTTP | {r['introspection']:,.0f}/s (p50 {r['introspection_p50']:.1f} ms, "
        f"p99 {r['introspection_p99']:.1f} ms) | >= 2,500/s | {met(r['introspection'] >= GOALS['introspection'])} |"
    )
    print(
        f"| Revocation over HTTP (distinct tokens) | {r['revocation']:,.0f}/s (p50 {r['revocation_p50']:.1f} ms, "
        f"p99 {r['revocation_p99']:.1f} ms) | - | - |"
    )
    print(f"| Issuance over HTTP (client_credentials, to pre-mint) | {r['issuance']:,.0f}/s | - | - |")
    print(
        f"| Republish a changed 131,072-entry list (set + gzip + sign), median of {args.runs} | "
        f"{r['republish_ms']:.3f} ms (set {r['republish_set_us']:.2f} µs, encode {r['republish_encode_ms']:.3f} ms, "
        f"sign {r['republish_sign_ms']:.3f} ms; {r['encoded_bytes']} chars) | <= 0.5 ms | "
        f"{met(r['republish_ms'] <= GOALS['republish_ms'])} |"
    )
    print(f"| First GET of a changed list over HTTP (server path: DB read + rebuild + sign + store) | "
          f"{r['republish_http_ms']:.2f} ms | - | - |")  # fmt: skip
    print(
        f"| Offline status check, cached list (`Verifier._status`, best of 7 rounds) | {r['status_us']:.2f} µs/call "
        f"({1e6 / r['status_us']:,.0f}/s) | <= 1 µs | {met(r['status_us'] <= GOALS['status_us'])} |"
    )
    print(
        f"| Offline status check, cached list (`StatusList.get`, best of 7 rounds) | {r['get_us']:.3f} µs/call "
        f"({1e6 / r['get_us']:,.0f}/s) | <= 1 µs | {met(r['get_us'] <= GOALS['status_us'])} |"
    )


if __name__ == "__main__":
    main()
