"""Secrets at rest: API keys and refresh tokens are stored only as keyed hashes, issuer private keys only sealed,
agents' private keys not at all - checked by reading every row of every table (and, on SQLite, the bytes of
the database files), and by reading the log of a run that handled them."""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path

import httpx
import pytest
from api_support import JWT_BEARER, TOKEN, assertion_for, client_credentials, dump_database, make_child
from sqlalchemy import text

from agentauth.bootstrap import Services
from support import bearer, ok, quickstart

pytestmark = pytest.mark.anyio

API_KEY_PREFIX = "ak_live_"
LOOKUP_CHARS = 12  # of the random part, stored in clear as the lookup prefix (DESIGN: "lookup by prefix")


def secret_fragments(raw: str) -> list[str]:
    """What must never be stored: the whole secret, its random part, and (for an API key) the part after the
    lookup prefix."""
    if raw.startswith(API_KEY_PREFIX):
        random = raw[len(API_KEY_PREFIX) :]
        return [raw, random, random[LOOKUP_CHARS:]]
    return [raw, raw.split("_", 1)[1]]


def database_file_bytes(services: Services) -> bytes:
    """The SQLite database with its WAL and shared-memory files, as raw bytes (empty on PostgreSQL)."""
    if services.engine.dialect.name != "sqlite":
        return b""
    files = sorted(Path(services.settings.data_dir).rglob("agentauth.db*"))
    assert files, "no SQLite database file found"
    return b"".join(p.read_bytes() for p in files)


async def test_api_keys_and_refresh_tokens_are_stored_only_as_keyed_hashes(
    client: httpx.AsyncClient, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    root = await quickstart(client, "vault")
    token = root["access_token"]
    created = ok(await client.post("/api/v1/credentials", json={"name": "ci"}, headers=bearer(token)), 201)
    rotated = ok(await client.post(f"/api/v1/credentials/{created['id']}/rotate", headers=bearer(token)))
    _, child_key, _ = await make_child(client, token, "worker")
    issued = await client_credentials(client, root["api_key"], "agents.read")
    refreshed = ok(
        await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    )
    jwt_bearer = ok(await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion_for(root)}))
    # Failed attempts carry secrets too (a mistyped key, a stolen refresh token): they must not be kept either.
    wrong_key = API_KEY_PREFIX + "W" * 43
    assert (
        await client.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": wrong_key})
    ).status_code == 401
    wrong_refresh = "rt_" + "R" * 43
    assert (
        await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": wrong_refresh})
    ).status_code == 400

    api_keys = {
        root["api_key_id"]: root["api_key"],
        created["id"]: created["raw_key"],
        rotated["id"]: rotated["raw_key"],
        child_key["id"]: child_key["raw_key"],
    }
    refresh_tokens = [
        root["refresh_token"], issued["refresh_token"], refreshed["refresh_token"], jwt_bearer["refresh_token"]
    ]  # fmt: skip
    assert all(r.startswith("rt_") for r in refresh_tokens) and len(set(refresh_tokens)) == 4

    # The api_keys rows: a keyed hash (HMAC under a KEK-derived key, not a bare SHA-256), and the lookup prefix.
    async with services.engine.connect() as conn:
        rows = {r.id: r for r in await conn.execute(text("SELECT id, prefix, key_hash FROM api_keys"))}
        stored_refresh = {r[0] for r in await conn.execute(text("SELECT token_hash FROM refresh_tokens"))}
    assert set(rows) == set(api_keys)
    for key_id, raw in api_keys.items():
        row = rows[key_id]
        assert row.key_hash == services.core.hasher.hash(raw)
        assert row.key_hash != hashlib.sha256(raw.encode()).hexdigest()
        assert len(row.key_hash) == 64 and int(row.key_hash, 16) >= 0
        assert row.prefix == raw[: len(API_KEY_PREFIX) + LOOKUP_CHARS]
        # DESIGN: ">= 32 bytes of randomness" (43 base64url characters); what the prefix leaves must stay out of
        # reach of guessing (>= 128 bits).
        assert len(raw) - len(API_KEY_PREFIX) >= 43
        assert (len(raw) - len(row.prefix)) * 6 >= 128
    assert {services.core.hasher.hash(r) for r in refresh_tokens} <= stored_refresh

    dump = await dump_database(services)
    files = database_file_bytes(services)
    logged = caplog.text
    secrets = [
        f for raw in [*api_keys.values(), *refresh_tokens, wrong_key, wrong_refresh] for f in secret_fragments(raw)
    ]
    for secret in secrets:
        assert secret not in dump, f"secret {secret[:12]}... found in the database"
        assert secret.encode() not in files, f"secret {secret[:12]}... found in the SQLite files"
        assert secret not in logged, f"secret {secret[:12]}... found in the log"


async def test_listing_and_reading_keys_never_shows_secrets_or_hashes(
    client: httpx.AsyncClient, services: Services
) -> None:
    root = await quickstart(client, "lister")
    token = root["access_token"]
    created = ok(await client.post("/api/v1/credentials", json={"name": "x"}, headers=bearer(token)), 201)
    async with services.engine.connect() as conn:
        hashes = [r[0] for r in await conn.execute(text("SELECT key_hash FROM api_keys"))]
    listing = await client.get("/api/v1/credentials", headers=bearer(token))
    single = await client.get(f"/api/v1/credentials/{created['id']}", headers=bearer(token))
    assert listing.status_code == 200 and single.status_code == 200
    assert listing.json()["total"] == 2
    for response in (listing, single):
        for secret in [*secret_fragments(root["api_key"]), *secret_fragments(created["raw_key"]), *hashes]:
            assert secret not in response.text
        assert "raw_key" not in response.text and "key_hash" not in response.text


async def test_issuer_private_keys_are_sealed(client: httpx.AsyncClient, services: Services) -> None:
    await quickstart(client, "signer")
    ring = services.keys.ring
    async with services.engine.connect() as conn:
        rows = list(await conn.execute(text("SELECT kid, sealed_private_key, public_jwk FROM signing_keys")))
    assert {r.kid for r in rows} == {k.kid for k in ring.keys}
    assert ring.active.kid in {r.kid for r in rows}
    dump = await dump_database(services)
    files = database_file_bytes(services)
    kek = services.settings.key_encryption_key
    assert kek is not None
    assert kek.get_secret_value() not in dump
    for row in rows:
        assert row.sealed_private_key.startswith("v1.")
        assert "d" not in (row.public_jwk if isinstance(row.public_jwk, dict) else {}), "private member in public_jwk"
    for key in ring.keys:
        d = key.pair.private_jwk()["d"]
        seed = base64.urlsafe_b64decode(d + "=" * (-len(d) % 4))
        assert len(seed) == 32
        for form in (d, seed.hex(), base64.b64encode(seed).decode()):
            assert form not in dump, f"private key of {key.kid} stored in clear"
            assert form.encode() not in files
        assert seed not in files
    active_d = ring.active.pair.private_jwk()["d"]
    assert active_d not in dump
    # The JWKS serves public members only.
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert jwks["keys"] and all("d" not in k for k in jwks["keys"])


async def test_agent_private_keys_are_never_stored(client: httpx.AsyncClient, services: Services) -> None:
    root = await quickstart(client, "keyholder")
    child = ok(
        await client.post(
            "/api/v1/agents", json={"name": "c", "agent_type": "tool"}, headers=bearer(root["access_token"])
        ),
        201,
    )
    dump = await dump_database(services)
    for private in (root["private_key_jwk"], child["private_key_jwk"]):
        assert private is not None and private["d"] not in dump
    # Shown once: reading the agent back does not return it.
    again = await client.get(f"/api/v1/agents/{root['agent']['id']}", headers=bearer(root["access_token"]))
    assert again.status_code == 200 and root["private_key_jwk"]["d"] not in again.text
