"""Helpers for the attack catalogue (issue 8 item 3): a database snapshot that proves "no state change", a world
of two tenants built through the REST API, and raw JWS forging.

Imported as ``security_support`` (tests/security is put on ``sys.path`` by pytest's rootdir-relative import of
the test modules); the suite-wide helpers - the RFC 6749 error-shape check and the app's route table among
them - stay in ``support``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import inspect, text

from agentauth.bootstrap import Services
from agentauth.keys import KeyPair, b64url_encode
from agentauth.vc import create_agent_assertion
from support import ISSUER_URL, bearer, ok, quickstart

TOKEN = "/api/v1/auth/token"
INTROSPECT = "/api/v1/auth/introspect"
REVOKE = "/api/v1/auth/revoke"
TOKEN_ENDPOINT_URL = f"{ISSUER_URL}{TOKEN}"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"

# -- "no state change" -----------------------------------------------------------------------------------------

# May grow on a refused request by design: a failure is audited, a status block may be reserved before refusal.
UNCOUNTED_TABLES = frozenset({"audit_events", "status_blocks"})
# Columns a refused request may legitimately touch: a key's last-use hint (written on successful client
# authentication, at most once a minute) and a status list's allocation counters and publication cache
# (rebuilt when the list is fetched). A status list's ``version`` is compared: every revocation bumps it.
VOLATILE_COLUMNS = {
    "api_keys": {"last_used_at"},
    "status_lists": {
        "allocated",
        "state",
        "published_version",
        "published_jwt",
        "published_at",
        "published_bits",
        "suspension_published_version",
        "suspension_published_jwt",
        "suspension_published_at",
    },
}


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int]
    rows: dict[str, list[str]]


async def snapshot(services: Services) -> Snapshot:
    """Row counts of every table but audit_events/status_blocks, and every row's content (volatile columns left
    out). Tables are read from the live schema, so a table added later is covered without editing this."""
    counts: dict[str, int] = {}
    rows: dict[str, list[str]] = {}
    async with services.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert {"agents", "api_keys", "credentials", "refresh_tokens", "delegations", "policies"} <= set(tables)
        for table in sorted(set(tables) - UNCOUNTED_TABLES - {"alembic_version"}):
            result = await conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 - names from the schema
            skip = VOLATILE_COLUMNS.get(table, set())
            keep = [i for i, name in enumerate(result.keys()) if name not in skip]
            content = sorted(repr(tuple(row[i] for i in keep)) for row in result)
            counts[table], rows[table] = len(content), content
    return Snapshot(counts, rows)


async def assert_unchanged(services: Services, before: Snapshot, what: str = "") -> None:
    after = await snapshot(services)
    assert after.counts == before.counts, f"row counts changed {what}: {before.counts} -> {after.counts}"
    for table, content in before.rows.items():
        assert after.rows[table] == content, f"rows of {table} changed {what}"


# -- tokens in use ---------------------------------------------------------------------------------------------------


async def is_active(client: httpx.AsyncClient, token: str) -> bool:
    """Whether ``token`` (an access token) still authenticates, by using it and by introspecting it with itself."""
    used = await client.get("/api/v1/agents", headers=bearer(token))
    seen = await client.post(INTROSPECT, data={"token": token}, headers=bearer(token))
    return used.status_code == 200 and seen.status_code == 200 and seen.json().get("active") is True


# -- a world of two tenants -----------------------------------------------------------------------------------


@dataclass
class World:
    """Victim tenant A (root, a child with its own key and token, a delegation root -> child) and attacker B.

    ``a``, ``b`` and ``child`` have the quickstart response's shape: agent, api_key, access_token,
    refresh_token, private_key_jwk, identity_credential."""

    a: dict[str, Any]
    child: dict[str, Any]
    delegation: dict[str, Any]
    b: dict[str, Any]

    @property
    def a_token(self) -> str:
        return str(self.a["access_token"])

    @property
    def b_token(self) -> str:
        return str(self.b["access_token"])

    @property
    def child_token(self) -> str:
        return str(self.child["access_token"])

    @property
    def child_id(self) -> str:
        return str(self.child["agent"]["id"])


async def client_credentials(client: httpx.AsyncClient, api_key: str, scope: str | None = None) -> httpx.Response:
    data = {"grant_type": "client_credentials", "client_secret": api_key}
    if scope is not None:
        data["scope"] = scope
    return await client.post(TOKEN, data=data)


async def make_child(
    client: httpx.AsyncClient, token: str, name: str, scopes: list[str] | None = None
) -> dict[str, Any]:
    """A child of the token's agent with its own API key and tokens, in the quickstart response's shape."""
    body: dict[str, Any] = {"name": name, "agent_type": "tool"} | ({"scopes": scopes} if scopes is not None else {})
    created = ok(await client.post("/api/v1/agents", json=body, headers=bearer(token)), 201)
    agent = created["agent"]
    key = ok(await client.post("/api/v1/credentials", json={"agent_id": agent["id"]}, headers=bearer(token)), 201)
    tokens = ok(await client_credentials(client, key["raw_key"]))
    return created | tokens | {"api_key": key["raw_key"], "api_key_id": key["id"]}


async def make_world(client: httpx.AsyncClient) -> World:
    a = await quickstart(client, "victim")
    child = await make_child(client, a["access_token"], "victim-child")
    body = {"delegate_agent_id": child["agent"]["id"], "scopes": ["api.read", "agents.read"]}
    delegation = ok(await client.post("/api/v1/delegations", json=body, headers=bearer(a["access_token"])), 201)
    return World(a, child, delegation, await quickstart(client, "attacker"))


def exchange_data(subject_token: str, actor_token: str | None = None) -> dict[str, str]:
    """A token-exchange request (RFC 8693 section 2.1): ``subject_token`` as a delegation credential and, when
    given, ``actor_token`` as an access token (without one the caller adds its client authentication)."""
    data = {"grant_type": EXCHANGE, "subject_token": subject_token, "subject_token_type": JWT_TYPE}
    if actor_token is not None:
        data |= {"actor_token": actor_token, "actor_token_type": ACCESS_TYPE}
    return data


def assertion_for(agent: dict[str, Any], now: datetime | None = None) -> str:
    """A jwt-bearer assertion signed with a quickstart agent's own private key."""
    pair = KeyPair.from_jwk(agent["private_key_jwk"])
    return create_agent_assertion(pair, audience=TOKEN_ENDPOINT_URL, now=now or datetime.now(UTC))


# -- raw JWS ---------------------------------------------------------------------------------------------------


def segment(value: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode())


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a compact JWS, signature not checked."""

    def part(s: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
        return loaded

    head, body, _ = token.split(".")
    return part(head), part(body)


def sign_ed25519(header: dict[str, Any], payload: dict[str, Any], key: KeyPair) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}"
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode()))}"
