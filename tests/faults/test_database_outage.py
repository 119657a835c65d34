"""The database goes away (issue 8 item 2): every endpoint that needs it answers 503 with ``Retry-After`` - never
a guessed answer (no ``active: false`` for a valid token, no 401 for a valid bearer, no 200 for a revocation that
did not happen, no 500) - and the same server process answers normally again, without a restart, once the
database is back.

PostgreSQL: the server reaches the database through a TCP proxy run by the test (127.0.0.1:<free port> ->
127.0.0.1:5432), so only this server loses its database. Stopping the proxy closes the listener and resets every
open connection (new connects are refused); starting it again listens on the same port.

SQLite is a file, and it does not "go away" the way a server does. This machine runs the suite as root, for whom
``chmod 000`` changes nothing (CAP_DAC_OVERRIDE), so the two faults that do happen to an embedded database are
produced instead:

* the database file disappears from its path (the data directory is renamed away, then back): connections the
  pools already hold keep working on the same open file (POSIX: a rename does not touch an open descriptor), so
  some requests are still answered correctly - and their writes land in the very file that comes back, which the
  test checks; a request that needs a new connection cannot open the file and answers 503;
* another process holds the database's write lock (an operator's ``sqlite3`` shell in a write transaction, a
  backup tool): writes wait the busy timeout (10 s) and answer 503, reads keep answering from the WAL snapshot,
  and when the lock is released the same server writes again.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_support import (
    AGENTS,
    INTROSPECT,
    QUICKSTART,
    REVOKE,
    TOKEN,
    TcpProxy,
    issued,
    jwt_claims,
    kill9,
    log_problems,
    query,
    running,
)
from sqlalchemy.engine import make_url

from agentauth.api.errors import RETRY_AFTER_SECONDS
from agentauth.keys import generate_kek
from agentauth.storage.db import SQLITE_BUSY_TIMEOUT_MS
from live_server import LiveServer, free_port, server_env, spawn
from support import POSTGRES_ENABLED, POSTGRES_URL, bearer, reset_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RECOVERY_SECONDS = 15
STALL_SECONDS = 60  # longer than any request may take: a request still waiting when it ends has hung
# A request facing a stalled database: the 5 s connect/pool/statement defaults, plus one more 5 s bound on the
# way out (the pooled connection's reset) and slack for a busy machine.
STALL_ANSWER_SECONDS = 12
FLAP_CLIENTS = 4


def assert_unavailable(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers.get("retry-after") == str(RETRY_AFTER_SECONDS), f"{what}: {response.headers}"
    assert response.json()["error"] == "temporarily_unavailable", f"{what}: {response.text}"
    assert response.headers.get("cache-control") == "no-store", f"{what}: {response.headers}"


class Tenant:
    """One quickstart registration and a spare token pair of it, made while the database was there."""

    def __init__(self, registered: dict[str, Any], spare: dict[str, Any]) -> None:
        self.api_key: str = registered["api_key"]
        self.agent_id: str = registered["agent"]["id"]
        self.access_token: str = registered["access_token"]
        self.refresh_token: str = spare["refresh_token"]
        self.spare_access_token: str = spare["access_token"]


async def register(http: httpx.AsyncClient) -> Tenant:
    registered = await http.post(QUICKSTART, json={"name": "outage", "agent_type": "tool"})
    assert registered.status_code == 201, registered.text
    spare = await http.post(
        TOKEN, data={"grant_type": "client_credentials", "client_secret": registered.json()["api_key"]}
    )
    assert spare.status_code == 200, spare.text
    return Tenant(registered.json(), spare.json())


def probes(tenant: Tenant) -> dict[str, Callable[[httpx.AsyncClient], Coroutine[Any, Any, httpx.Response]]]:
    """One request per kind of database use; each has a correct answer when the database is there."""
    auth = bearer(tenant.access_token)
    return {
        "client_credentials": lambda h: h.post(
            TOKEN, data={"grant_type": "client_credentials", "client_secret": tenant.api_key}
        ),
        "refresh": lambda h: h.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": tenant.refresh_token}),
        "introspect (bearer)": lambda h: h.post(INTROSPECT, data={"token": tenant.spare_access_token}, headers=auth),
        "introspect (api key)": lambda h: h.post(
            INTROSPECT, data={"token": tenant.spare_access_token, "client_secret": tenant.api_key}
        ),
        "revoke": lambda h: h.post(REVOKE, data={"token": tenant.spare_access_token}, headers=auth),
        "protected GET": lambda h: h.get(f"{AGENTS}/{tenant.agent_id}", headers=auth),
        "check_permission": lambda h: h.post(
            "/api/v1/policies/evaluate",
            json={"agent_id": tenant.agent_id, "action": "read", "resource": "/docs/a"},
            headers=auth,
        ),
        "quickstart": lambda h: h.post(QUICKSTART, json={"name": "during-outage", "agent_type": "tool"}),
        "status list": lambda h: h.get(f"/api/v1/status-lists/{issued(tenant.access_token, 'access').list_id}"),
    }


def judge(what: str, response: httpx.Response) -> str:
    """'ok' for a correct answer, 'unavailable' for a proper 503; anything else fails the test."""
    if response.status_code == 503:
        assert_unavailable(response, what)
        return "unavailable"
    expected = {"quickstart": 201}.get(what, 200)
    assert response.status_code == expected, f"wrong answer to {what}: {response.status_code} {response.text}"
    if what.startswith("introspect"):
        assert response.json()["active"] is True, f"a valid token was called inactive: {response.text}"
    if what == "status list":
        assert response.headers["content-type"].startswith("application/vc+jwt"), response.headers
    return "ok"


async def flap(server: LiveServer, tenant: Tenant, seconds: float, answers: Counter[str]) -> None:
    """Clients that keep calling the database-backed endpoints with a valid token while the database comes and
    goes: every answer must be correct (200) or a proper 503 - never 401/400/500, never ``active: false``."""
    deadline = time.monotonic() + seconds
    auth = bearer(tenant.access_token)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            while time.monotonic() < deadline:
                introspected = await http.post(INTROSPECT, data={"token": tenant.access_token}, headers=auth)
                if introspected.status_code == 503:
                    assert_unavailable(introspected, "introspect while flapping")
                    answers["introspect 503"] += 1
                else:
                    assert introspected.status_code == 200, introspected.text
                    assert introspected.json()["active"] is True, "a valid token was called inactive"
                    answers["introspect active"] += 1
                listed = await http.get(AGENTS, headers=auth)
                assert listed.status_code in (200, 503), f"protected GET: {listed.status_code} {listed.text}"
                if listed.status_code == 503:
                    assert_unavailable(listed, "protected GET while flapping")
                answers[f"GET {listed.status_code}"] += 1
                issued = await http.post(
                    TOKEN, data={"grant_type": "client_credentials", "client_secret": tenant.api_key}
                )
                assert issued.status_code in (200, 503), f"token: {issued.status_code} {issued.text}"
                if issued.status_code == 503:
                    assert_unavailable(issued, "token while flapping")
                answers[f"token {issued.status_code}"] += 1
                await asyncio.sleep(0.02)

    await asyncio.gather(*(client() for _ in range(FLAP_CLIENTS)))


async def recovered(server: LiveServer, tenant: Tenant) -> float:
    """Seconds until a token request succeeds again (the same process, no restart)."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        while True:
            response = await http.post(
                TOKEN, data={"grant_type": "client_credentials", "client_secret": tenant.api_key}
            )
            if response.status_code == 200:
                return time.monotonic() - started
            assert_unavailable(response, "token while recovering")
            assert time.monotonic() - started < RECOVERY_SECONDS, "the service did not recover by itself"
            await asyncio.sleep(0.2)


async def assert_works(server: LiveServer, tenant: Tenant) -> None:
    """After recovery: what was refused during the outage did not happen, and now it does."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        introspected = await http.post(
            INTROSPECT, data={"token": tenant.spare_access_token}, headers=bearer(tenant.access_token)
        )
        assert introspected.status_code == 200 and introspected.json()["active"] is True, introspected.text
        rotated = await http.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": tenant.refresh_token})
        assert rotated.status_code == 200, f"the refresh token was spent by a refused request: {rotated.text}"
        revoked = await http.post(
            REVOKE, data={"token": tenant.spare_access_token}, headers=bearer(tenant.access_token)
        )
        assert revoked.status_code == 200, revoked.text
        introspected = await http.post(
            INTROSPECT, data={"token": tenant.spare_access_token}, headers=bearer(tenant.access_token)
        )
        assert introspected.json() == {"active": False}


@asynccontextmanager
async def proxied_postgres_server(tmp_path: Path) -> AsyncIterator[tuple[TcpProxy, LiveServer]]:
    """A fresh schema and one ``agentauth serve`` reaching PostgreSQL through a TcpProxy the test controls."""
    await reset_postgres(POSTGRES_URL)
    target = make_url(POSTGRES_URL)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    try:
        proxy.start()
        port = free_port()
        env = server_env(tmp_path / "data", port, generate_kek(), proxy.url_for(POSTGRES_URL))
        with running([], remove=tmp_path / "data") as servers:
            server = spawn(env, port, tmp_path / "server.log")
            servers.append(server)
            yield proxy, server
    finally:
        proxy.close()


@pytest.mark.skipif(not POSTGRES_ENABLED, reason="PostgreSQL runs with AGENTAUTH_TEST_POSTGRES=1")
async def test_postgres_outage_answers_503_and_recovers_without_restart(tmp_path: Path) -> None:
    async with proxied_postgres_server(tmp_path) as (proxy, server):
        pid = server.process.pid
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            tenant = await register(http)

            # 1. The database goes away: every database-backed answer is a 503 with Retry-After, promptly.
            proxy.stop()
            for what, send in probes(tenant).items():
                started = time.monotonic()
                assert_unavailable(await send(http), what)
                assert time.monotonic() - started < 10, f"{what} hung instead of answering 503"
            # What needs no database still answers, and correctly.
            assert (await http.get("/health")).status_code == 200
            jwks = await http.get("/.well-known/jwks.json")
            assert jwks.status_code == 200 and jwks.json()["keys"]

        # 2. It comes back: the same process answers again by itself.
        proxy.start()
        took = await recovered(server, tenant)
        assert server.process.poll() is None and server.process.pid == pid
        await assert_works(server, tenant)

        # 3. Flapping under load: down for ~1 s in the middle of 4 busy clients, then back.
        answers: Counter[str] = Counter()

        async def outage() -> None:
            await asyncio.sleep(0.8)
            await asyncio.to_thread(proxy.stop)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(proxy.start)

        await asyncio.gather(flap(server, tenant, 4.0, answers), outage())
        assert answers["introspect 503"] + answers["token 503"] > 0, f"the outage was not seen: {answers}"
        assert answers["token 200"] > 0 and answers["introspect active"] > 0, answers
        await recovered(server, tenant)
        assert log_problems(server) == [], "a request failed with 500"
        print(f"[postgres] recovered in {took:.2f} s; flapping answers: {dict(answers)}")


@pytest.mark.skipif(not POSTGRES_ENABLED, reason="PostgreSQL runs with AGENTAUTH_TEST_POSTGRES=1")
async def test_postgres_stall_answers_503_within_seconds_and_recovers(tmp_path: Path) -> None:
    """The database hangs (connections accepted, nothing answered - no reset, no refusal): every request that
    needs it answers 503 + Retry-After within a few seconds (the AGENTAUTH_DB_*_TIMEOUT defaults), instead of
    hanging for the whole stall. Regression: requests hung for as long as the stall lasted."""
    async with proxied_postgres_server(tmp_path) as (proxy, server):
        async with httpx.AsyncClient(base_url=server.url, timeout=STALL_SECONDS + 30) as http:
            tenant = await register(http)
            proxy.stall()

            async def timed(what: str, send: Callable[[httpx.AsyncClient], Any]) -> tuple[str, float]:
                started = time.monotonic()
                assert_unavailable(await send(http), f"{what} while the database is stalled")
                return what, time.monotonic() - started

            took = dict(await asyncio.gather(*(timed(w, s) for w, s in probes(tenant).items())))
            slow = {what: round(t, 1) for what, t in took.items() if t > STALL_ANSWER_SECONDS}
            assert not slow, f"requests hung on the stalled database: {slow}"
            assert (await http.get("/health")).status_code == 200
        proxy.resume()
        recovery = await recovered(server, tenant)
        await assert_works(server, tenant)
        assert log_problems(server) == [], "a request failed with 500"
        times = {what: round(t, 1) for what, t in took.items()}
        print(f"[postgres stall] 503 after {max(took.values()):.1f} s at most {times}; recovered in {recovery:.2f} s")


def sqlite_server(tmp_path: Path) -> tuple[dict[str, str], int]:
    port = free_port()
    return server_env(tmp_path / "data", port, generate_kek(), None), port


async def test_sqlite_file_moved_away_answers_correctly_or_503_and_loses_nothing(tmp_path: Path) -> None:
    env, port = sqlite_server(tmp_path)
    data_dir, away = tmp_path / "data", tmp_path / "away"
    database_url = f"sqlite+aiosqlite:///{(data_dir / 'agentauth.db').resolve()}"
    with running([], remove=tmp_path / "data") as servers:
        server = spawn(env, port, tmp_path / "server.log")
        servers.append(server)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            tenant = await register(http)
            os.rename(data_dir, away)
            try:
                outcomes: Counter[str] = Counter()
                acknowledged: list[str] = []  # jti of every credential issued while the file was away
                for _ in range(3):
                    for what, send in probes(tenant).items():
                        if what in ("revoke", "refresh"):
                            continue  # keep the spare pair for the checks after the move back
                        response = await send(http)
                        outcomes[f"{what}: {judge(what, response)}"] += 1
                        if (
                            response.status_code in (200, 201)
                            and what != "status list"
                            and "access_token" in response.json()
                        ):
                            acknowledged.append(jwt_claims(response.json()["access_token"])["jti"])
            finally:
                os.rename(away, data_dir)
            # Open connections follow the moved file (same inode), so requests served on them keep answering -
            # correctly, into that very file; only a request needing a new connection notices (503). Which of
            # the two happens depends on the pools, not on correctness: every answer was judged above.
            assert sum(outcomes.values()) == 3 * (len(probes(tenant)) - 2), outcomes

        took = await recovered(server, tenant)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for what, send in probes(tenant).items():
                if what not in ("revoke", "refresh"):
                    assert judge(what, await send(http)) == "ok", what
        await assert_works(server, tenant)
        assert log_problems(server) == []
        # What was acknowledged while the file was away went into that very file, durably: crash, then read it.
        kill9(server)
        recorded = {jti for (jti,) in await query(database_url, "SELECT jti FROM credentials")}
        assert set(acknowledged) <= recorded, "a credential acknowledged while the file was away is missing"
    print(f"[sqlite moved away] {dict(outcomes)}; {len(acknowledged)} issued meanwhile; recovered in {took:.2f} s")


async def test_sqlite_write_lock_held_elsewhere_answers_503_then_recovers(tmp_path: Path) -> None:
    env, port = sqlite_server(tmp_path)
    database = tmp_path / "data" / "agentauth.db"
    with running([], remove=tmp_path / "data") as servers:
        server = spawn(env, port, tmp_path / "server.log")
        servers.append(server)
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            tenant = await register(http)
            # Another process's write transaction (like `sqlite3 agentauth.db` then `BEGIN IMMEDIATE;`).
            holder = sqlite3.connect(database, isolation_level=None, timeout=1)
            try:
                holder.execute("BEGIN IMMEDIATE")
                probe = probes(tenant)
                started = time.monotonic()
                write = asyncio.create_task(probe["client_credentials"](http))
                # Meanwhile reads are answered - correctly - from the WAL snapshot.
                introspected = await probe["introspect (bearer)"](http)
                assert introspected.status_code == 200 and introspected.json()["active"] is True, introspected.text
                got = await probe["protected GET"](http)
                assert got.status_code == 200, got.text
                read_seconds = time.monotonic() - started
                assert_unavailable(await write, "client_credentials while the write lock is held elsewhere")
                waited = time.monotonic() - started
                assert SQLITE_BUSY_TIMEOUT_MS / 1000 - 1 <= waited < SQLITE_BUSY_TIMEOUT_MS / 1000 + 10, waited
                assert read_seconds < 5, f"reads waited for the write lock: {read_seconds:.1f} s"
            finally:
                if holder.in_transaction:
                    holder.execute("ROLLBACK")
                holder.close()
        took = await recovered(server, tenant)
        assert server.process.poll() is None
        await assert_works(server, tenant)
    assert log_problems(server) == []
    print(
        f"[sqlite locked] write answered 503 after {waited:.1f} s; reads took {read_seconds:.2f} s; "
        f"recovered in {took:.2f} s"
    )


async def test_sqlite_status_list_is_served_while_the_write_lock_is_held_elsewhere(tmp_path: Path) -> None:
    env, port = sqlite_server(tmp_path)
    database = tmp_path / "data" / "agentauth.db"
    with running([], remove=tmp_path / "data") as servers:
        server = spawn(env, port, tmp_path / "server.log")
        servers.append(server)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            tenant = await register(http)
            path = f"/api/v1/status-lists/{issued(tenant.access_token, 'access').list_id}"
            before = await http.get(path)  # published (and cached in its row) while nothing holds the lock
            assert before.status_code == 200, before.text
            holder = sqlite3.connect(database, isolation_level=None, timeout=1)
            try:
                holder.execute("BEGIN IMMEDIATE")
                try:
                    during: httpx.Response | None = await http.get(path, timeout=3)
                except httpx.ReadTimeout:
                    during = None
            finally:
                if holder.in_transaction:
                    holder.execute("ROLLBACK")
                holder.close()
    assert during is not None, "the status list read waited for the write lock (> 3 s)"
    assert during.status_code == 200 and during.text == before.text, during.text
