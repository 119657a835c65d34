"""Two fresh replicas on one fresh PostgreSQL under token load never deadlock (issue 12 item 14, second bullet).

Regression: two servers deadlocked on the token endpoint ("deadlock detected", early while keys were fresh;
clients got 503). An issuing round took FOR SHARE on its API keys, then upgraded to an update of the same rows
(``last_used_at``) - two replicas' rounds for one key each held the share lock the other's update waited for; and
status-block reservations inserted their randomly drawn blocks in random order, so two replicas could each hold
a block the other was inserting. Now a round's row locks are taken in one order (key id) and the last-used hint
skips rows another transaction holds instead of waiting; blocks are reserved in ascending order.

Bounded: LOAD_SECONDS of load from CLIENTS clients spread over both servers, on fresh keys (last_used_at unset),
issuing, refreshing and revoking; then every server log is searched for "deadlock" and every answer is counted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from test_scaleout import AGENTS, REVOKE, TOKEN, two_servers

from agentauth.keys import generate_kek
from live_server import free_ports, server_env
from support import POSTGRES_ENABLED, POSTGRES_URL, reset_postgres

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_ENABLED, reason="scale-out runs on PostgreSQL only: set AGENTAUTH_TEST_POSTGRES=1"),
]

LOAD_SECONDS = 12
TENANTS = 3
CLIENTS = 12


async def test_two_fresh_replicas_under_token_load_never_deadlock(tmp_path: Path) -> None:
    await reset_postgres(POSTGRES_URL)
    ports = free_ports(2)
    env = server_env(tmp_path / "data", ports[0], generate_kek(), POSTGRES_URL)
    answers: Counter[str] = Counter()
    with two_servers(env, ports, tmp_path, "deadlock") as pair:
        servers = [pair.a.url, pair.b.url]
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=CLIENTS * 2)) as http:
            keys = []
            for n in range(TENANTS):
                registered = await http.post(
                    f"{servers[n % 2]}{AGENTS}/quickstart", json={"name": f"t{n}", "agent_type": "tool"}
                )
                assert registered.status_code == 201, registered.text
                keys.append(registered.json()["api_key"])
            deadline = time.monotonic() + LOAD_SECONDS

            async def client(n: int) -> None:
                key = keys[n % TENANTS]
                turn = n
                while time.monotonic() < deadline:
                    turn += 1
                    base = servers[turn % 2]
                    issued = await http.post(
                        f"{base}{TOKEN}", data={"grant_type": "client_credentials", "client_secret": key}
                    )
                    answers[f"token {issued.status_code}"] += 1
                    if issued.status_code != 200:
                        continue
                    other = servers[(turn + 1) % 2]
                    if turn % 3 == 0:
                        refreshed = await http.post(
                            f"{other}{TOKEN}",
                            data={"grant_type": "refresh_token", "refresh_token": issued.json()["refresh_token"]},
                        )
                        answers[f"refresh {refreshed.status_code}"] += 1
                    elif turn % 3 == 1:
                        revoked = await http.post(
                            f"{other}{REVOKE}", data={"token": issued.json()["access_token"], "client_secret": key}
                        )
                        answers[f"revoke {revoked.status_code}"] += 1

            await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        deadlocks = [
            line
            for server in pair.both
            for line in server.log.read_text("utf-8", "replace").splitlines()
            if "deadlock" in line.lower()
        ]
    print(f"[two replicas, {LOAD_SECONDS} s] {dict(answers)}; deadlock lines: {len(deadlocks)}")
    assert deadlocks == [], f"{len(deadlocks)} deadlock lines, e.g. {deadlocks[:2]}"
    failed = {what: n for what, n in answers.items() if not what.endswith(" 200")}
    assert failed == {}, f"answers other than 200: {failed} of {dict(answers)}"
    assert answers["token 200"] > 100, answers
