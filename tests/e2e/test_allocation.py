"""Status-index allocation across processes (issue 4, "Must show"): 1,000 concurrent issuances spread over two
``agentauth serve`` processes on one database allocate 1,000 distinct (list, index) slots.

PostgreSQL is the scale-out case the issue names (runs when AGENTAUTH_TEST_POSTGRES=1); two processes on one
SQLite file run always, as an extra check of the same guarantee on the embedded backend.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agentauth.keys import generate_kek
from agentauth.vc import Verifier
from live_server import free_ports
from support import POSTGRES_URL, reset_postgres, status_entry

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ISSUANCES = 1_000
CONCURRENCY = 50
AGENTAUTH = Path(sys.executable).with_name("agentauth")


@contextmanager
def serve(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """``agentauth serve`` on 127.0.0.1:port until the block ends; yields its base URL once /health answers."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(AGENTAUTH), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"server on port {port} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server on port {port} did not become healthy:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def slot(token: str) -> tuple[str, str]:
    segment = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    entry = status_entry(claims["vc"])
    return entry["statusListCredential"], entry["statusListIndex"]


async def duplicate_slots(database_url: str) -> tuple[int, int, list[Any]]:
    """(credentials recorded, blocks reserved, (list, index, count) of every slot held by more than one credential)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            total = (await conn.execute(text("SELECT count(*) FROM credentials"))).scalar_one()
            blocks = (await conn.execute(text("SELECT count(*) FROM status_blocks"))).scalar_one()
            duplicates = (
                await conn.execute(
                    text(
                        "SELECT status_list_id, status_index, count(*) FROM credentials "
                        "GROUP BY status_list_id, status_index HAVING count(*) > 1"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    return int(total), int(blocks), [tuple(row) for row in duplicates]


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_concurrent_issuance_on_two_processes_allocates_distinct_indexes(database: str, tmp_path: Path) -> None:
    if database == "postgres":
        if os.environ.get("AGENTAUTH_TEST_POSTGRES") != "1":
            pytest.skip("PostgreSQL runs with AGENTAUTH_TEST_POSTGRES=1")
        await reset_postgres(POSTGRES_URL)
        database_url = POSTGRES_URL
    else:
        database_url = f"sqlite+aiosqlite:///{(tmp_path / 'data' / 'agentauth.db').resolve()}"
    ports = free_ports(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    env.update(
        AGENTAUTH_ISSUER_URL=f"http://127.0.0.1:{ports[0]}",
        AGENTAUTH_DATA_DIR=str(tmp_path / "data"),
        AGENTAUTH_DATABASE_URL=database_url,
        AGENTAUTH_KEY_ENCRYPTION_KEY=generate_kek(),
        AGENTAUTH_TOKEN_RATE_PER_IP="1000000",
        AGENTAUTH_TOKEN_RATE_PER_CLIENT="1000000",
        AGENTAUTH_QUICKSTART_RATE_PER_IP="100000",
    )
    # The first process creates the schema and the key ring; the second starts once the first is healthy.
    with serve(env, ports[0], tmp_path / "a.log") as first, serve(env, ports[1], tmp_path / "b.log") as second:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            registered = await http.post(f"{first}/api/v1/agents/quickstart", json={"name": "a", "agent_type": "tool"})
            assert registered.status_code == 201, registered.text
            api_key = registered.json()["api_key"]
            gate = asyncio.Semaphore(CONCURRENCY)

            async def issue(n: int) -> tuple[int, str]:
                async with gate:
                    try:
                        response = await http.post(
                            f"{(first, second)[n % 2]}/api/v1/auth/token",
                            data={"grant_type": "client_credentials", "client_secret": api_key},
                        )
                    except httpx.TransportError as exc:
                        return -1, f"server {n % 2}: {exc!r}"
                return response.status_code, response.text

            results = await asyncio.gather(*(issue(n) for n in range(ISSUANCES)))
            jwks = (await http.get(f"{second}/.well-known/jwks.json")).json()

    failures = Counter(status for status, _ in results if status != 200)
    if failures:
        first_failure = next(body for status, body in results if status != 200)[:500]
        logs = "\n".join(f"--- {name}:\n{(tmp_path / name).read_text()[-2000:]}" for name in ("a.log", "b.log"))
        pytest.fail(f"{failures}; first failure: {first_failure}\n{logs}")
    tokens = [json.loads(body)["access_token"] for _, body in results]
    slots = [slot(t) for t in tokens]
    assert len(set(slots)) == ISSUANCES, Counter(slots).most_common(3)
    assert all(url.startswith(env["AGENTAUTH_ISSUER_URL"] + "/api/v1/status-lists/") for url, _ in slots)
    verifier = Verifier(issuer_url=env["AGENTAUTH_ISSUER_URL"], jwks=jwks, check_status=False)
    assert len({verifier.verify_access_token(t).claims["jti"] for t in tokens}) == ISSUANCES

    recorded, blocks, duplicates = await duplicate_slots(database_url)
    assert duplicates == []
    assert blocks >= 2, "each process deals from blocks of its own"
    assert recorded == ISSUANCES + 2  # plus the quickstart's identity credential and access token
