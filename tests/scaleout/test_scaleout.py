"""Two ``agentauth serve`` processes on one PostgreSQL database behave as one service (issue 8 item 1; the
deployment is described in docs/deploy.md, "Several replicas").

Both processes get the same AGENTAUTH_DATABASE_URL, AGENTAUTH_KEY_ENCRYPTION_KEY and AGENTAUTH_ISSUER_URL; the
second starts once the first is healthy (the first ran the migrations and created the key ring). Over real HTTP
on 127.0.0.1, with every step of a flow sent to whichever process the test names:

* refresh-token reuse detection: a refresh token used on A and presented again on B kills the family on both;
  concurrent uses of one refresh token split over A and B have exactly one winner;
* jwt-bearer ``jti`` replay: an assertion accepted by A is refused by B, and of the same assertion sent to both at
  once exactly one is accepted;
* status slots: credentials of every kind (quickstart, client_credentials, refresh, jwt-bearer, child agent,
  delegation, token exchange) issued concurrently through both processes hold distinct (list, index) slots, in
  the tokens and in the database, dealt from blocks of both processes. (The 1,000-issuance client_credentials
  case across two processes is tests/e2e/test_allocation.py; this one covers the other issuing paths.)
* revocation: a token revoked on A is inactive on B's introspection, refused as a bearer by B and set in the
  status list B publishes, at once; a delegation revoked on A can no longer be exchanged on B;
* rate limits shared through Redis (AGENTAUTH_REDIS_URL): 5 token requests per minute per client, alternating
  between A and B: the sixth is refused, whichever process gets it;
* key rotation by ``agentauth keys rotate`` (a third process, against the database): both servers sign with the
  new key within KEY_RELOAD_SECONDS (5 s) plus scheduling slack, and a token signed by the new key on one process
  is accepted by the other even before that one adopted the rotation (the next key is published in advance).

Runs only with AGENTAUTH_TEST_POSTGRES=1: PostgreSQL is the scale-out backend.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agentauth.bootstrap import KEY_RELOAD_SECONDS
from agentauth.keys import KeyPair, generate_kek
from agentauth.vc import StaticStatusLists, Verifier, create_agent_assertion, create_proof
from live_server import BIN, LiveServer, free_ports, server_env, spawn
from support import POSTGRES_ENABLED, POSTGRES_URL, REDIS_URL, bearer, require_redis, reset_postgres, status_entry

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_ENABLED, reason="scale-out runs on PostgreSQL only: set AGENTAUTH_TEST_POSTGRES=1"),
]

TOKEN = "/api/v1/auth/token"
INTROSPECT = "/api/v1/auth/introspect"
REVOKE = "/api/v1/auth/revoke"
AGENTS = "/api/v1/agents"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"
RATE_PER_CLIENT = 5
# A replica picks up a rotation made elsewhere within KEY_RELOAD_SECONDS; allow for a loaded 2-core machine.
ADOPTION_SLACK_SECONDS = 1.5


# -- two servers on one database ----------------------------------------------------------------------------


@dataclass
class Pair:
    a: LiveServer
    b: LiveServer
    env: dict[str, str]
    issuer_url: str

    @property
    def both(self) -> tuple[LiveServer, LiveServer]:
        return self.a, self.b


@contextlib.contextmanager
def two_servers(env: dict[str, str], ports: list[int], tmp: Path, label: str) -> Iterator[Pair]:
    """A, then B once A is healthy; both stopped by pid when the block ends (on failure too)."""
    servers: list[LiveServer] = []
    try:
        servers.append(spawn(env, ports[0], tmp / f"{label}-a.log"))
        servers.append(spawn(env, ports[1], tmp / f"{label}-b.log"))
        yield Pair(servers[0], servers[1], env, env["AGENTAUTH_ISSUER_URL"])
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(env["AGENTAUTH_DATA_DIR"], ignore_errors=True)
    problems = [
        line
        for server in servers
        for line in server.log.read_text("utf-8", "replace").splitlines()
        if "unhandled error on" in line
    ]
    assert problems == [], f"a server answered 500: {problems[:3]}"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    asyncio.run(reset_postgres(POSTGRES_URL))
    tmp = tmp_path_factory.mktemp("scaleout")
    ports = free_ports(2)
    # What every replica shares (docs/deploy.md): database, key-encryption key, issuer URL (that of A).
    env = server_env(tmp / "data", ports[0], generate_kek(), POSTGRES_URL)
    with two_servers(env, ports, tmp, "pair") as servers:
        yield servers


# -- small REST helpers ---------------------------------------------------------------------------------------


async def quickstart(http: httpx.AsyncClient, server: LiveServer, name: str = "scaleout") -> dict[str, Any]:
    response = await http.post(f"{server.url}{AGENTS}/quickstart", json={"name": name, "agent_type": "assistant"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def client_credentials(http: httpx.AsyncClient, server: LiveServer, api_key: str) -> httpx.Response:
    return await http.post(f"{server.url}{TOKEN}", data={"grant_type": "client_credentials", "client_secret": api_key})


async def token_pair(http: httpx.AsyncClient, server: LiveServer, api_key: str) -> dict[str, Any]:
    response = await client_credentials(http, server, api_key)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(http: httpx.AsyncClient, server: LiveServer, refresh_token: str) -> httpx.Response:
    return await http.post(f"{server.url}{TOKEN}", data={"grant_type": "refresh_token", "refresh_token": refresh_token})


async def jwt_bearer(http: httpx.AsyncClient, server: LiveServer, assertion: str) -> httpx.Response:
    return await http.post(f"{server.url}{TOKEN}", data={"grant_type": JWT_BEARER, "assertion": assertion})


async def introspect(http: httpx.AsyncClient, server: LiveServer, token: str, api_key: str) -> dict[str, Any]:
    response = await http.post(f"{server.url}{INTROSPECT}", data={"token": token, "client_secret": api_key})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def bearer_status(http: httpx.AsyncClient, server: LiveServer, token: str) -> int:
    return (await http.get(f"{server.url}{AGENTS}", headers=bearer(token))).status_code


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant", response.text


def jwt_part(token: str, part: int) -> dict[str, Any]:
    """Header (0) or payload (1) of a compact JWS, unverified (signatures are checked with the JWKS elsewhere)."""
    segment = token.split(".")[part]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


def slot(token: str) -> tuple[int, int]:
    entry = status_entry(jwt_part(token, 1)["vc"])
    return int(entry["statusListCredential"].rsplit("/", 1)[1]), int(entry["statusListIndex"])


async def query(sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_async_engine(POSTGRES_URL)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]
    finally:
        await engine.dispose()


# -- refresh-token reuse ----------------------------------------------------------------------------------------


async def test_refresh_used_on_a_and_reused_on_b_kills_the_family_on_both(pair: Pair) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        registered = await quickstart(http, pair.a)
        first = await token_pair(http, pair.a, registered["api_key"])
        rotated = await refresh(http, pair.a, first["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        second = rotated.json()

        # RFC 9700 section 4.14.2: the spent token comes back - on the other process.
        assert_invalid_grant(await refresh(http, pair.b, first["refresh_token"]))

        for server in pair.both:
            assert_invalid_grant(await refresh(http, server, second["refresh_token"]))
            for access in (first["access_token"], second["access_token"]):
                assert await bearer_status(http, server, access) == 401
                assert await introspect(http, server, access, registered["api_key"]) == {"active": False}
            # Another family of the same agent is untouched, on both.
            assert await bearer_status(http, server, registered["access_token"]) == 200


async def test_concurrent_refreshes_split_over_both_processes_have_one_winner(pair: Pair) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        registered = await quickstart(http, pair.a)
        issued = await token_pair(http, pair.b, registered["api_key"])
        answers = await asyncio.gather(*(refresh(http, pair.both[n % 2], issued["refresh_token"]) for n in range(20)))
    outcomes = Counter((r.status_code, r.json().get("error")) for r in answers)
    assert outcomes == {(200, None): 1, (400, "invalid_grant"): 19}, outcomes
    winners = await query(
        "SELECT count(*) FROM refresh_tokens WHERE family_id = (SELECT refresh_family_id FROM credentials "
        "WHERE jti = :jti)",
        jti=jwt_part(issued["access_token"], 1)["jti"],
    )
    assert winners == [(2,)], "exactly one rotation: the original refresh token and one successor"


# -- jwt-bearer replay ------------------------------------------------------------------------------------------


async def test_jwt_bearer_assertion_accepted_once_across_processes(pair: Pair) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        registered = await quickstart(http, pair.a)
        agent_key = KeyPair.from_jwk(registered["private_key_jwk"])

        def assertion() -> str:
            return create_agent_assertion(agent_key, audience=pair.issuer_url + TOKEN, now=datetime.now(UTC))

        once = assertion()
        accepted = await jwt_bearer(http, pair.a, once)
        assert accepted.status_code == 200, accepted.text
        assert_invalid_grant(await jwt_bearer(http, pair.b, once))  # RFC 7523 section 3: jti not replayed
        assert_invalid_grant(await jwt_bearer(http, pair.a, once))

        raced = assertion()
        answers = await asyncio.gather(*(jwt_bearer(http, pair.both[n % 2], raced) for n in range(10)))
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {200: 1, 400: 9}, statuses


async def test_a_dpop_proof_is_used_once_across_processes(pair: Pair) -> None:
    """RFC 9449 section 11.1: a proof accepted by A is refused by B, which never saw it (the jti is recorded in
    the database with the tokens); the same proof sent to both at once is accepted once. With an API key (the
    batched issuing round) and with a refresh token (its own write plan)."""
    async with httpx.AsyncClient(timeout=60) as http:
        registered = await quickstart(http, pair.a, "dpop-scaleout")
        key = KeyPair.from_jwk(registered["private_key_jwk"])
        form = {"grant_type": "client_credentials", "client_secret": registered["api_key"]}

        async def post(server: LiveServer, proof: str, body: dict[str, str] = form) -> httpx.Response:
            return await http.post(f"{server.url}{TOKEN}", data=body, headers={"DPoP": proof})

        once = create_proof(key, "POST", pair.issuer_url + TOKEN)
        accepted = await post(pair.a, once)
        assert accepted.status_code == 200 and accepted.json()["token_type"] == "DPoP", accepted.text
        replayed = await post(pair.b, once)
        assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_dpop_proof", replayed.text
        raced = create_proof(key, "POST", pair.issuer_url + TOKEN)
        answers = await asyncio.gather(*(post(pair.both[n % 2], raced) for n in range(10)))
        assert Counter(r.status_code for r in answers) == {200: 1, 400: 9}
        assert {r.json()["error"] for r in answers if r.status_code == 400} == {"invalid_dpop_proof"}

        refresh_form = {"grant_type": "refresh_token", "refresh_token": accepted.json()["refresh_token"]}
        proof = create_proof(key, "POST", pair.issuer_url + TOKEN)
        answers = await asyncio.gather(post(pair.a, proof, refresh_form), post(pair.b, proof, refresh_form))
        assert sorted(r.status_code for r in answers) == [200, 400], [r.text for r in answers]


# -- status slots -------------------------------------------------------------------------------------------------

TENANTS = 10
CLIENT_CREDENTIALS_PER_TENANT = 10


async def issue_everything(http: httpx.AsyncClient, pair: Pair, n: int) -> list[tuple[str, str]]:
    """One tenant's credentials of every kind, each request sent to A or B in turn: [(server label, jwt)]."""
    out: list[tuple[str, str]] = []
    turn = iter(range(n, n + 1000))

    def server() -> tuple[str, LiveServer]:
        i = next(turn) % 2
        return "ab"[i], pair.both[i]

    label, srv = server()
    registered = await quickstart(http, srv, f"slots-{n}")
    out += [(label, registered["access_token"]), (label, registered["identity_credential"])]
    api_key, root_token = registered["api_key"], registered["access_token"]
    refresh_tokens = []
    for _ in range(CLIENT_CREDENTIALS_PER_TENANT):
        label, srv = server()
        issued = await token_pair(http, srv, api_key)
        out.append((label, issued["access_token"]))
        refresh_tokens.append(issued["refresh_token"])
    for refresh_token in refresh_tokens[:4]:
        label, srv = server()
        rotated = await refresh(http, srv, refresh_token)
        assert rotated.status_code == 200, rotated.text
        out.append((label, rotated.json()["access_token"]))
    label, srv = server()
    child = await http.post(
        f"{srv.url}{AGENTS}", json={"name": f"child-{n}", "agent_type": "tool"}, headers=bearer(root_token)
    )
    assert child.status_code == 201, child.text
    out.append((label, child.json()["identity_credential"]))
    child_key = KeyPair.from_jwk(child.json()["private_key_jwk"])
    label, srv = server()
    child_token = await jwt_bearer(
        http, srv, create_agent_assertion(child_key, audience=pair.issuer_url + TOKEN, now=datetime.now(UTC))
    )
    assert child_token.status_code == 200, child_token.text
    out.append((label, child_token.json()["access_token"]))
    label, srv = server()
    delegation = await http.post(
        f"{srv.url}/api/v1/delegations",
        json={"delegate_agent_id": child.json()["agent"]["id"], "scopes": ["agents.read"]},
        headers=bearer(root_token),
    )
    assert delegation.status_code == 201, delegation.text
    out.append((label, delegation.json()["credential"]))
    label, srv = server()
    exchanged = await exchange(http, srv, delegation.json()["credential"], child_token.json()["access_token"])
    assert exchanged.status_code == 200, exchanged.text
    out.append((label, exchanged.json()["access_token"]))
    return out


async def exchange(http: httpx.AsyncClient, server: LiveServer, delegation: str, actor_token: str) -> httpx.Response:
    return await http.post(
        f"{server.url}{TOKEN}",
        data={
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": delegation,
            "subject_token_type": JWT_TYPE,
            "actor_token": actor_token,
            "actor_token_type": ACCESS_TYPE,
        },
    )


async def test_every_issuing_path_takes_distinct_slots_across_processes(pair: Pair) -> None:
    limits = httpx.Limits(max_connections=2 * TENANTS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        per_tenant = await asyncio.gather(*(issue_everything(http, pair, n) for n in range(TENANTS)))
    issued = [item for items in per_tenant for item in items]
    slots = Counter(slot(jwt) for _, jwt in issued)
    assert len(issued) >= 200 and max(slots.values()) == 1, slots.most_common(3)

    # Each process deals from blocks of its own: no 512-index block serves both.
    blocks = {
        label: {(lst, index // 512) for lst, index in (slot(jwt) for lbl, jwt in issued if lbl == label)}
        for label in "ab"
    }
    assert blocks["a"] and blocks["b"] and not blocks["a"] & blocks["b"], blocks

    jtis = {jwt_part(jwt, 1)["jti"]: slot(jwt) for _, jwt in issued}
    rows = {
        jti: (lst, index)
        for jti, lst, index in await query("SELECT jti, status_list_id, status_index FROM credentials")
    }
    assert {jti: rows.get(jti) for jti in jtis} == jtis, "a credential's row does not hold the slot it carries"
    duplicates = await query(
        "SELECT status_list_id, status_index FROM credentials GROUP BY status_list_id, status_index HAVING count(*) > 1"
    )
    assert duplicates == []


# -- revocation ------------------------------------------------------------------------------------------------


async def test_revocation_on_a_is_seen_by_b_at_once(pair: Pair) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        registered = await quickstart(http, pair.a)
        api_key = registered["api_key"]
        issued = await token_pair(http, pair.a, api_key)
        token = issued["access_token"]
        assert (await introspect(http, pair.b, token, api_key))["active"] is True
        assert await bearer_status(http, pair.b, token) == 200

        revoked = await http.post(f"{pair.a.url}{REVOKE}", data={"token": token, "client_secret": api_key})
        assert revoked.status_code == 200, revoked.text
        # No wait: B reads the revocation state from the shared database on every request.
        assert await introspect(http, pair.b, token, api_key) == {"active": False}
        assert await bearer_status(http, pair.b, token) == 401

        # Offline verifiers see it in the list B publishes (verified with B's JWKS).
        list_id, index = slot(token)
        url = status_entry(jwt_part(token, 1)["vc"])["statusListCredential"]
        published = await http.get(f"{pair.b.url}/api/v1/status-lists/{list_id}")
        assert published.status_code == 200, published.text
        jwks = (await http.get(f"{pair.b.url}/.well-known/jwks.json")).json()
        verifier = Verifier(
            issuer_url=pair.issuer_url, jwks=jwks, status_source=StaticStatusLists({url: published.text})
        )
        assert verifier.status_list(url, datetime.now(UTC)).bits.get(index) is True

        # A delegation revoked on A can no longer be exchanged on B, and what B exchanged before dies with it.
        root = bearer(registered["access_token"])
        child = await http.post(f"{pair.a.url}{AGENTS}", json={"name": "delegate", "agent_type": "tool"}, headers=root)
        assert child.status_code == 201, child.text
        child_key = KeyPair.from_jwk(child.json()["private_key_jwk"])
        child_token = await jwt_bearer(
            http, pair.b, create_agent_assertion(child_key, audience=pair.issuer_url + TOKEN, now=datetime.now(UTC))
        )
        assert child_token.status_code == 200, child_token.text
        actor = child_token.json()["access_token"]
        delegation = await http.post(
            f"{pair.a.url}/api/v1/delegations",
            json={"delegate_agent_id": child.json()["agent"]["id"], "scopes": ["agents.read"]},
            headers=root,
        )
        assert delegation.status_code == 201, delegation.text
        credential = delegation.json()["credential"]
        exchanged = await exchange(http, pair.b, credential, actor)
        assert exchanged.status_code == 200, exchanged.text
        assert await bearer_status(http, pair.a, exchanged.json()["access_token"]) == 200

        killed = await http.post(f"{pair.a.url}/api/v1/delegations/{delegation.json()['id']}/revoke", headers=root)
        assert killed.status_code == 200, killed.text
        assert_invalid_grant(await exchange(http, pair.b, credential, actor))
        assert await bearer_status(http, pair.b, exchanged.json()["access_token"]) == 401


# -- rate limits through Redis -----------------------------------------------------------------------------------


async def test_token_rate_limit_is_shared_through_redis(pair: Pair, tmp_path: Path) -> None:
    require_redis()
    ports = free_ports(2)
    env = pair.env | {
        "AGENTAUTH_DATA_DIR": str(tmp_path / "data"),
        "AGENTAUTH_REDIS_URL": REDIS_URL,
        "AGENTAUTH_TOKEN_RATE_PER_CLIENT": str(RATE_PER_CLIENT),
    }
    # Two more replicas of the module's service (same database, KEK, issuer), differing only in the limiter.
    with two_servers(env, ports, tmp_path, "redis") as limited:
        async with httpx.AsyncClient(timeout=30) as http:
            registered = await quickstart(http, limited.a)
            answers = [
                await client_credentials(http, limited.both[n % 2], registered["api_key"])
                for n in range(RATE_PER_CLIENT + 3)
            ]
    statuses = [r.status_code for r in answers]
    # Each process saw at most 4 of these: only a shared count refuses the sixth.
    assert statuses == [200] * RATE_PER_CLIENT + [429] * 3, statuses
    for refused in answers[RATE_PER_CLIENT:]:
        assert refused.json()["error"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60 // RATE_PER_CLIENT


# -- key rotation ------------------------------------------------------------------------------------------------


async def test_key_rotation_by_the_cli_is_adopted_by_both(pair: Pair) -> None:
    """Last in this module: it changes the signing key of the shared ring."""
    async with httpx.AsyncClient(timeout=30) as http:
        registered = await quickstart(http, pair.a)
        api_key = registered["api_key"]
        before = await token_pair(http, pair.a, api_key)
        old_kid = jwt_part(before["access_token"], 0)["kid"]
        published = {
            server.url: {k["kid"] for k in (await http.get(f"{server.url}/.well-known/jwks.json")).json()["keys"]}
            for server in pair.both
        }

        rotated = await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "agentauth"), "keys", "rotate"],
            env=pair.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rotated.returncode == 0, rotated.stderr
        committed = time.monotonic()
        new_kid = rotated.stdout.strip().rsplit(" ", 1)[-1]
        assert new_kid != old_kid
        # The key that now signs was published before it signed (state "next"), by both processes.
        assert all(new_kid in kids for kids in published.values()), (new_kid, published)

        adopted: dict[str, float] = {}
        deadline = committed + KEY_RELOAD_SECONDS + ADOPTION_SLACK_SECONDS
        while len(adopted) < 2:
            for name, server, other in (("a", pair.a, pair.b), ("b", pair.b, pair.a)):
                if name in adopted:
                    continue
                token = (await token_pair(http, server, api_key))["access_token"]
                if jwt_part(token, 0)["kid"] == new_kid:
                    adopted[name] = time.monotonic() - committed
                    # Accepted by the other process whether or not it has adopted the rotation yet.
                    assert await bearer_status(http, other, token) == 200
                else:
                    assert jwt_part(token, 0)["kid"] == old_kid
            assert time.monotonic() < deadline, f"not adopted within {deadline - committed:.1f} s: {adopted}"
            await asyncio.sleep(0.1)

        for server in pair.both:
            # Tokens signed before the rotation stay valid: the retired key is still published.
            assert await bearer_status(http, server, before["access_token"]) == 200
        jwks = [
            {k["kid"] for k in (await http.get(f"{server.url}/.well-known/jwks.json")).json()["keys"]}
            for server in pair.both
        ]
        assert jwks[0] == jwks[1] and {old_kid, new_kid} <= jwks[0], jwks
    print(f"rotation adopted after {adopted['a']:.2f} s (A) and {adopted['b']:.2f} s (B)")
