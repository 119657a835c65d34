"""kill -9 in the middle of load (issue 8 item 2): no acknowledged credential, rotation or revocation is lost,
nothing is handed out twice, and the restarted server publishes the same keys.

One ``agentauth serve`` process (SQLite file in a fresh data directory; PostgreSQL with a freshly reset schema when
AGENTAUTH_TEST_POSTGRES=1) takes 8 concurrent clients, each registering with quickstart and then cycling
client_credentials -> refresh -> revoke (the new access token, or every third cycle the refresh token, which
revokes its whole family). Once the clients have had at least CLIENTS revocations acknowledged (and at least
1.5 s have passed) the process gets SIGKILL with requests in flight; the clients keep going another ~1.5 s (their
requests now fail). Killing on acknowledged work rather than on a clock keeps the test meaningful on a loaded
machine (CI runs it beside another pytest worker). Every response received in full with 200/201 is written to a
client-side ledger. The server is then restarted on the same data and the ledger is checked against:

* the database, read directly: every acknowledged credential has its row with the very (list, index) slot its
  status entry names; no (list, index) is held twice and every slot lies in a block the status registry reserved;
  every acknowledged refresh token is stored (by its keyed hash) and every acknowledged rotation left it ``used``;
  every acknowledged revocation has ``revoked_at``; SQLite passes ``PRAGMA integrity_check``;
* the status lists, fetched from the restarted server and verified with its JWKS: the bit of every acknowledged
  revocation is set, the bit of every credential nobody tried to revoke is clear, and the published bits equal the
  revoked rows of each list;
* the JWKS: the restarted server publishes the kids it published before the crash, and every acknowledged token
  verifies with it (no signing key lost);
* the restarted service works: introspection agrees with the ledger, and fresh issuances take fresh slots.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_support import (
    AGENTS,
    INTROSPECT,
    QUICKSTART,
    REVOKE,
    STATUS_BLOCK_SIZE,
    TOKEN,
    TRACEBACK,
    Ledger,
    kill9,
    log_problems,
    published_bits,
    query,
    refresh_hasher,
    running,
)

from agentauth.keys import generate_kek
from agentauth.vc import Verifier
from live_server import LiveServer, free_port, free_ports, server_env, spawn
from support import POSTGRES_URL, bearer, reset_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CLIENTS = 8
KILL_AFTER_SECONDS = 1.5  # at the earliest
KILL_AT_THE_LATEST_SECONDS = 60.0  # if the load has not reached CLIENTS revocations by then, the test fails
LOAD_AFTER_KILL_SECONDS = 1.5
AFTER_RESTART_ISSUANCES = 40


async def drive(base_url: str, ledger: Ledger, stop: asyncio.Event, in_flight: Counter[str], n: int) -> None:
    """One client: quickstart, then client_credentials -> refresh -> revoke until ``stop`` is set. A transport error
    (the server died) is counted and retried after a pause; only complete 200/201 answers enter the ledger, and any
    other answer fails the test."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:

        async def post(path: str, **kwargs: object) -> httpx.Response | None:
            in_flight[base_url] += 1
            try:
                return await http.post(path, **kwargs)  # type: ignore[arg-type]
            except httpx.TransportError as exc:
                ledger.count(f"{base_url} transport error: {type(exc).__name__}")
                await asyncio.sleep(0.05)
                return None
            finally:
                in_flight[base_url] -= 1

        api_key: str | None = None
        cycle = 0
        while not stop.is_set():
            if api_key is None:
                registered = await post(QUICKSTART, json={"name": f"crash-{n}", "agent_type": "tool"})
                if registered is None:
                    continue
                assert registered.status_code == 201, registered.text
                body = registered.json()
                ledger.add(body["access_token"], "access")
                ledger.add(body["identity_credential"], "identity")
                ledger.refresh_tokens.add(body["refresh_token"])
                api_key = body["api_key"]
                ledger.count("quickstart")
                continue
            cycle += 1
            issued = await post(TOKEN, data={"grant_type": "client_credentials", "client_secret": api_key})
            if issued is None:
                continue
            assert issued.status_code == 200, issued.text
            first = issued.json()
            first_jti = ledger.add(first["access_token"], "access").jti
            ledger.refresh_tokens.add(first["refresh_token"])
            ledger.count("client_credentials")

            rotated = await post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
            if rotated is None:
                continue
            assert rotated.status_code == 200, rotated.text
            second = rotated.json()
            second_jti = ledger.add(second["access_token"], "access").jti
            ledger.refresh_tokens.add(second["refresh_token"])
            ledger.spent_refresh_tokens.add(first["refresh_token"])
            ledger.count("refresh")

            if cycle % 3 == 0:
                # RFC 7009 section 2.1: revoking the refresh token revokes the access tokens of its grant too.
                target, family = second["refresh_token"], {first_jti, second_jti}
            else:
                target, family = second["access_token"], {second_jti}
            ledger.revoke_attempted |= family
            revoked = await post(REVOKE, data={"token": target, "client_secret": api_key})
            if revoked is None:
                continue
            assert revoked.status_code == 200, revoked.text
            ledger.revoked |= family
            ledger.count("revoke")


async def get_json(url: str) -> Any:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(url)
        assert response.status_code == 200, response.text
        return response.json()


async def load_and_kill(targets: list[LiveServer], victim: LiveServer, ledger: Ledger) -> int:
    """CLIENTS clients spread over ``targets``; SIGKILL ``victim`` once CLIENTS revocations are acknowledged (not
    before KILL_AFTER_SECONDS) at a moment it has requests in flight. Returns the requests in flight at the kill."""
    in_flight: Counter[str] = Counter()
    stop = asyncio.Event()
    started = time.monotonic()
    clients = [
        asyncio.create_task(drive(targets[n % len(targets)].url, ledger, stop, in_flight, n)) for n in range(CLIENTS)
    ]
    try:
        while True:
            elapsed = time.monotonic() - started
            loaded = ledger.outcomes.get("revoke", 0) >= CLIENTS and in_flight[victim.url] >= 1
            if (loaded and elapsed >= KILL_AFTER_SECONDS) or elapsed >= KILL_AT_THE_LATEST_SECONDS:
                break
            await asyncio.sleep(0.005)
        cut = in_flight[victim.url]
        kill9(victim)
        await asyncio.sleep(LOAD_AFTER_KILL_SECONDS)
        stop.set()
        await asyncio.gather(*clients)
    finally:
        stop.set()
        for client in clients:
            client.cancel()
    assert victim.process.returncode == -9
    assert cut >= 1, "the kill should land with requests in flight"
    assert ledger.outcomes.get("revoke", 0) >= CLIENTS, f"too little load before the kill: {ledger.outcomes}"
    assert any(k.startswith(f"{victim.url} transport error") for k in ledger.outcomes), ledger.outcomes
    return cut


def database_for(backend: str, data_dir: Path) -> str:
    return POSTGRES_URL if backend == "postgres" else f"sqlite+aiosqlite:///{(data_dir / 'agentauth.db').resolve()}"


async def test_kill9_under_load_loses_and_duplicates_nothing(backend: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    if backend == "postgres":
        await reset_postgres(POSTGRES_URL)
    database_url = database_for(backend, data_dir)
    kek = generate_kek()
    port = free_port()
    env = server_env(data_dir, port, kek, database_url if backend == "postgres" else None)
    ledger = Ledger()

    with running([], remove=data_dir) as servers:
        first = spawn(env, port, tmp_path / "before.log")
        servers.append(first)
        kids_before = {k["kid"] for k in (await get_json(f"{first.url}/.well-known/jwks.json"))["keys"]}
        cut = await load_and_kill([first], first, ledger)
        print(f"[{backend}] killed with {cut} requests in flight; {ledger.summary()}")

        # Restart on the same data directory / database (and port).
        second = spawn(env, port, tmp_path / "after.log")
        servers.append(second)
        await check_ledger(ledger, database_url, second, env["AGENTAUTH_ISSUER_URL"], kek, kids_before)
        await check_after_restart(second, ledger)
        if backend == "sqlite":
            assert await query(database_url, "PRAGMA integrity_check") == [("ok",)]
        assert log_problems(second) == []
        assert TRACEBACK not in second.log.read_text("utf-8", "replace")


async def test_kill9_of_one_process_leaves_the_other_serving(backend: str, tmp_path: Path) -> None:
    """Two processes on one database (SQLite file: writers queue on its lock file; PostgreSQL: replicas). One is
    killed mid-load - on SQLite possibly holding the writer lock or in the middle of a write transaction; the
    other must answer every request of its clients correctly throughout (any non-2xx or transport error fails),
    and the ledger of both holds, checked through the survivor."""
    data_dir = tmp_path / "data"
    if backend == "postgres":
        await reset_postgres(POSTGRES_URL)
    database_url = database_for(backend, data_dir)
    kek = generate_kek()
    ports = free_ports(2)
    env = server_env(data_dir, ports[0], kek, database_url if backend == "postgres" else None)
    ledger = Ledger()

    with running([], remove=data_dir) as servers:
        victim = spawn(env, ports[0], tmp_path / "victim.log")
        servers.append(victim)
        survivor = spawn(env, ports[1], tmp_path / "survivor.log")
        servers.append(survivor)
        kids_before = {k["kid"] for k in (await get_json(f"{survivor.url}/.well-known/jwks.json"))["keys"]}
        cut = await load_and_kill([victim, survivor], victim, ledger)
        print(f"[{backend}, two processes] killed one with {cut} requests in flight; {ledger.summary()}")
        assert not [k for k in ledger.outcomes if k.startswith(f"{survivor.url} transport")], ledger.outcomes

        await check_ledger(ledger, database_url, survivor, env["AGENTAUTH_ISSUER_URL"], kek, kids_before)
        await check_after_restart(survivor, ledger)
        if backend == "sqlite":
            assert await query(database_url, "PRAGMA integrity_check") == [("ok",)]
        assert log_problems(survivor) == []
        assert TRACEBACK not in survivor.log.read_text("utf-8", "replace")


async def check_ledger(
    ledger: Ledger, database_url: str, server: LiveServer, issuer_url: str, kek: str, kids_before: set[str]
) -> None:
    """Everything the ledger says was acknowledged, against the database and what ``server`` publishes."""
    jwks = await get_json(f"{server.url}/.well-known/jwks.json")
    assert {k["kid"] for k in jwks["keys"]} == kids_before, "a signing key was lost (or invented) by the crash"

    credentials = ledger.credentials
    # 1. Every acknowledged credential is recorded, in the slot its status entry names.
    rows = {
        jti: (kind, list_id, index, revoked_at)
        for jti, kind, list_id, index, revoked_at in await query(
            database_url, "SELECT jti, kind, status_list_id, status_index, revoked_at FROM credentials"
        )
    }
    missing = sorted(jti for jti in credentials if jti not in rows)
    assert missing == [], f"{len(missing)} acknowledged credentials have no row, e.g. {missing[:3]}"
    moved = [
        (jti, (c.kind, c.list_id, c.index), rows[jti][:3])
        for jti, c in credentials.items()
        if rows[jti][:3] != (c.kind, c.list_id, c.index)
    ]
    assert moved == [], f"recorded slot differs from the issued one: {moved[:3]}"

    # 2. No status slot twice - client side, in the database, and every slot inside a reserved block.
    slots = Counter((c.list_id, c.index) for c in credentials.values())
    assert max(slots.values()) == 1, slots.most_common(3)
    duplicates = await query(
        database_url,
        "SELECT status_list_id, status_index, count(*) FROM credentials "
        "GROUP BY status_list_id, status_index HAVING count(*) > 1",
    )
    assert duplicates == []
    outside = await query(
        database_url,
        "SELECT c.jti FROM credentials c LEFT JOIN status_blocks b ON b.list_id = c.status_list_id "
        "AND b.block = c.status_index / :size WHERE b.block IS NULL",
        size=STATUS_BLOCK_SIZE,
    )
    assert outside == [], f"slots outside any reserved block: {outside[:3]}"

    # 3. Every acknowledged refresh token is stored; every acknowledged rotation spent it.
    hasher = refresh_hasher(kek)
    stored = dict(await query(database_url, "SELECT token_hash, status FROM refresh_tokens"))
    states = {token: stored.get(hasher.hash(token)) for token in ledger.refresh_tokens}
    assert [t for t, s in states.items() if s is None] == [], "acknowledged refresh tokens missing"
    not_spent = [states[t] for t in ledger.spent_refresh_tokens if states[t] not in ("used", "revoked")]
    assert not_spent == [], f"acknowledged rotations not persisted: {not_spent[:3]}"

    # 4. Every acknowledged revocation persisted; nothing was revoked that nobody asked to revoke.
    assert [j for j in ledger.revoked if rows[j][3] is None] == [], "acknowledged revocation lost"
    untouched = set(credentials) - ledger.revoke_attempted
    assert [j for j in untouched if rows[j][3] is not None] == [], "credential revoked without a request"

    # ... and the published lists say so, verified with the server's keys.
    list_urls = {c.list_id: c.list_url for c in credentials.values()}
    bits = await published_bits(server.url, list_urls, issuer_url)
    assert [j for j in ledger.revoked if not bits[credentials[j].list_id].get(credentials[j].index)] == []
    assert [j for j in untouched if bits[credentials[j].list_id].get(credentials[j].index)] == []
    for list_id in list_urls:
        revoked_indexes = await query(
            database_url,
            "SELECT status_index FROM credentials WHERE status_list_id = :l AND revoked_at IS NOT NULL",
            l=list_id,
        )
        assert set(bits[list_id].set_indexes()) == {i for (i,) in revoked_indexes}

    # 5. Every acknowledged credential still verifies with the published keys.
    verifier = Verifier(issuer_url=issuer_url, jwks=jwks, check_status=False)
    for c in credentials.values():
        verifier.verify_signature(c.jwt)


async def check_after_restart(server: LiveServer, ledger: Ledger) -> None:
    access = [c for c in ledger.credentials.values() if c.kind == "access"]
    live = next(c for c in access if c.jti not in ledger.revoke_attempted)
    dead = next(c for c in access if c.jti in ledger.revoked)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post(INTROSPECT, data={"token": live.jwt}, headers=bearer(live.jwt))
        assert response.status_code == 200, response.text
        assert response.json()["active"] is True, response.json()
        assert (await http.get(AGENTS, headers=bearer(live.jwt))).status_code == 200
        refused = await http.get(AGENTS, headers=bearer(dead.jwt))
        assert refused.status_code == 401, refused.text
        registered = await http.post(QUICKSTART, json={"name": "after-crash", "agent_type": "tool"})
        assert registered.status_code == 201, registered.text
        api_key = registered.json()["api_key"]
        answers = await asyncio.gather(
            *(
                http.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": api_key})
                for _ in range(AFTER_RESTART_ISSUANCES)
            )
        )
    assert Counter(r.status_code for r in answers) == {200: AFTER_RESTART_ISSUANCES}
    old_slots = {(c.list_id, c.index) for c in ledger.credentials.values()}
    new = [ledger.add(r.json()["access_token"], "access") for r in answers]
    assert not old_slots & {(c.list_id, c.index) for c in new}, "a slot from before the crash was dealt again"
