"""The SQLite WAL stays bounded under steady load (issue 12 item 14, first bullet).

Regression: under a steady token + revoke load the WAL grew without bound (~9 MB/s; 435 MB after 48 s against a
12.8 MB database) and shrank only at a clean stop. The background checkpointer's PASSIVE checkpoints never
completed - each copied frames up to the WAL's end as it started, while writers kept appending, so the WAL never
restarted from its beginning. Now (storage/db.py ``SqliteSessionMaker.checkpoints``) a checkpoint that finds the
WAL over ``WAL_TRUNCATE_BYTES`` takes the writer lock for a moment and runs ``wal_checkpoint(TRUNCATE)``, and
``journal_size_limit`` caps what a restarted WAL keeps on disk.

A real ``agentauth serve`` (uvicorn), bounded in time (~25 s of load) and in clients; the WAL's size is sampled
throughout and must stay under ``WAL_BOUND_BYTES`` (the bound docs/deploy.md states).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from fault_support import QUICKSTART, REVOKE, TOKEN, log_problems, running

from agentauth.keys import generate_kek
from agentauth.storage.db import WAL_BOUND_BYTES
from live_server import free_port, server_env, spawn

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SOAK_SECONDS = 25
CLIENTS = 6
SAMPLE_SECONDS = 0.1


async def test_the_wal_stays_bounded_under_steady_token_and_revoke_load(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = server_env(data, port, generate_kek(), None)
    wal = data / "agentauth.db-wal"
    with running([], remove=data) as servers:
        server = spawn(env, port, tmp_path / "server.log", log_level="warning")
        servers.append(server)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            registered = await http.post(QUICKSTART, json={"name": "soak", "agent_type": "tool"})
            assert registered.status_code == 201, registered.text
            api_key = registered.json()["api_key"]
            deadline = time.monotonic() + SOAK_SECONDS
            done = {"tokens": 0, "revocations": 0}
            sizes: list[int] = []

            async def client() -> None:
                grant = {"grant_type": "client_credentials", "client_secret": api_key}
                while time.monotonic() < deadline:
                    issued = await http.post(TOKEN, data=grant)
                    assert issued.status_code == 200, issued.text
                    done["tokens"] += 1
                    token = issued.json()["access_token"]
                    revoked = await http.post(REVOKE, data={"token": token, "client_secret": api_key})
                    assert revoked.status_code == 200, revoked.text
                    done["revocations"] += 1

            async def sample() -> None:
                while time.monotonic() < deadline:
                    sizes.append(wal.stat().st_size if wal.exists() else 0)
                    await asyncio.sleep(SAMPLE_SECONDS)

            await asyncio.gather(sample(), *(client() for _ in range(CLIENTS)))
        database = (data / "agentauth.db").stat().st_size
        assert log_problems(server) == []
    largest = max(sizes)
    print(
        f"[wal soak] {done['tokens']} tokens + {done['revocations']} revocations in {SOAK_SECONDS} s; "
        f"WAL largest {largest / 2**20:.1f} MiB, last {sizes[-1] / 2**20:.1f} MiB; database {database / 2**20:.1f} MiB"
    )
    assert done["tokens"] > 100, done  # the load was real
    assert largest < WAL_BOUND_BYTES, f"the WAL grew to {largest / 2**20:.1f} MiB (bound {WAL_BOUND_BYTES / 2**20} MiB)"
