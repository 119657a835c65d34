"""RFC 7662 introspection: the active answer field by field, exactly ``{"active": false}`` for everything
inactive or not the caller's, and 503 - never ``active: false`` - when the database is away (issue 4)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from lifecycle_support import (
    INACTIVE,
    INTROSPECT,
    child_with_key,
    client_token,
    delegate,
    exchange,
    introspect,
    jwt_payload,
    revoke,
)
from sqlalchemy import event

from agentauth.bootstrap import Services
from agentauth.storage.db import SqliteSessionMaker
from support import ISSUER_URL, bearer, quickstart

pytestmark = pytest.mark.anyio
PATHS = [INTROSPECT, "/api/v1/auth/token/introspect"]


@pytest.mark.parametrize("path", PATHS)
async def test_active_access_token_field_by_field(client: httpx.AsyncClient, path: str) -> None:
    agent = await quickstart(client, "fields", agent_type="orchestrator")
    issued = await client_token(client, agent["api_key"], scope="agents.read tokens.introspect")
    token = issued["access_token"]
    claims = jwt_payload(token)
    for caller in (agent["access_token"], token, agent["api_key"]):
        body = await introspect(client, caller, token, path=path)
        assert body["active"] is True
        assert body["scope"] == "agents.read tokens.introspect" == claims["scope"]
        assert body["client_id"] == agent["agent"]["id"] == claims["client_id"]
        assert body["sub"] == agent["agent"]["did"] == claims["sub"]
        assert body["aud"] == ISSUER_URL == claims["aud"]
        assert body["iss"] == ISSUER_URL == claims["iss"]
        assert body["exp"] == claims["exp"] and body["iat"] == claims["iat"] and body["nbf"] == claims["nbf"]
        assert body["exp"] - body["iat"] == issued["expires_in"] == 900
        assert body["jti"] == claims["jti"] and body["jti"].startswith("urn:uuid:")
        assert body["token_type"] == "Bearer"
        assert body["agent_type"] == "orchestrator" == agent["agent"]["agent_type"]
        assert body["trust_level"] == "basic" == agent["agent"]["trust_level"]
        assert "act" not in body and "delegation_chain" not in body
        assert all(isinstance(body[k], int) for k in ("exp", "iat", "nbf"))
    response = await client.post(path, data={"token": token}, headers=bearer(agent["access_token"]))
    assert response.headers["cache-control"] == "no-store"
    # RFC 7662 section 2.1: an unknown or wrong hint does not stop the search.
    hinted = await introspect(client, agent["access_token"], token, path=path, token_type_hint="refresh_token")
    assert hinted["active"] is True and hinted["jti"] == claims["jti"]


@pytest.mark.parametrize("path", PATHS)
async def test_refresh_token_introspection(client: httpx.AsyncClient, path: str) -> None:
    agent = await quickstart(client, "refresh")
    body = await introspect(client, agent["access_token"], agent["refresh_token"], path=path)
    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["scope"] == agent["scope"]
    assert body["client_id"] == agent["agent"]["id"]
    assert body["sub"] == agent["agent"]["did"]
    assert body["iss"] == ISSUER_URL
    assert body["exp"] - body["iat"] == 7 * 86_400
    assert body["agent_type"] == "assistant" and body["trust_level"] == "basic"
    await revoke(client, agent["api_key"], agent["refresh_token"])
    assert await introspect(client, agent["api_key"], agent["refresh_token"], path=path) == INACTIVE


async def test_delegated_token_carries_act_and_chain_summary(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "root")
    helper, _, helper_token = await child_with_key(client, root["access_token"], "helper")
    grant = await delegate(client, root["access_token"], helper["id"], ["agents.read"])
    exchanged = await exchange(client, grant["credential"], helper_token)
    assert exchanged.status_code == 200, exchanged.text
    token = exchanged.json()["access_token"]
    body = await introspect(client, root["access_token"], token)
    assert body["active"] is True and body["sub"] == root["agent"]["did"] and body["scope"] == "agents.read"
    assert body["client_id"] == helper["id"]
    assert body["act"] == {"sub": helper["did"]} == jwt_payload(token)["act"]
    credential = jwt_payload(grant["credential"])
    assert body["delegation_chain"] == [
        {
            "id": credential["jti"],
            "delegator": root["agent"]["did"],
            "delegate": helper["did"],
            "scopes": ["agents.read"],
            "remaining_depth": credential["vc"]["credentialSubject"]["remainingDepth"],
            "exp": credential["exp"],
        }
    ]
    # The delegate may introspect the token it holds.
    assert (await introspect(client, token, token))["active"] is True


async def test_expired_token_is_exactly_inactive(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        services.core, "settings", services.settings.model_copy(update={"access_token_ttl_seconds": 60})
    )
    agent = await quickstart(client, "expiring")
    token = (await client_token(client, agent["api_key"]))["access_token"]
    assert jwt_payload(token)["exp"] - jwt_payload(token)["iat"] == 60
    assert (await introspect(client, agent["api_key"], token))["active"] is True
    real_clock = services.core.clock
    monkeypatch.setattr(services.core, "clock", lambda: real_clock() + timedelta(minutes=2))
    # The caller authenticates with its API key (its own tokens expired too); the answer has no other member.
    assert await introspect(client, agent["api_key"], token) == INACTIVE
    assert await introspect(client, agent["api_key"], agent["access_token"]) == INACTIVE


@pytest.mark.parametrize("path", PATHS)
async def test_inactive_answers_have_no_other_member(client: httpx.AsyncClient, path: str) -> None:
    owner = await quickstart(client, "owner")
    foreign = await quickstart(client, "foreign")
    revoked = (await client_token(client, owner["api_key"]))["access_token"]
    await revoke(client, owner["access_token"], revoked)
    cases = {
        "revoked": revoked,
        "unknown": secrets.token_urlsafe(32),
        "unknown-refresh": "rt_" + secrets.token_urlsafe(32),
        "malformed": "a.b.c",
        "malformed-jwt-shape": "eyJhbGciOiJFZERTQSJ9.e30.AAAA",
        "identity-credential": owner["identity_credential"],
    }
    for name, token in cases.items():
        assert await introspect(client, owner["access_token"], token, path=path) == INACTIVE, name
    # Foreign: tenant B holds tokens.introspect, but tenant A's tokens are not B's to see.
    # (Not the refresh token: holding one is enough to see its state, issue 12 item 18 - test_token_pairs.py.)
    for token in (owner["access_token"], revoked):
        assert await introspect(client, foreign["access_token"], token, path=path) == INACTIVE
        assert await introspect(client, foreign["api_key"], token, path=path) == INACTIVE
    assert (await introspect(client, owner["access_token"], owner["access_token"], path=path))["active"] is True


async def test_without_introspect_scope_only_own_token_is_visible(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "scoped")
    own = (await client_token(client, root["api_key"], scope="agents.read"))["access_token"]
    sibling = (await client_token(client, root["api_key"], scope="agents.read"))["access_token"]
    assert "tokens.introspect" not in jwt_payload(own)["scope"].split()
    assert (await introspect(client, own, own))["active"] is True
    assert await introspect(client, own, sibling) == INACTIVE
    assert (await introspect(client, sibling, sibling))["active"] is True
    assert await introspect(client, sibling, own) == INACTIVE
    # With the scope: an agent sees its subtree's tokens, never a parent's or a sibling agent's.
    _, _, kid_a = await child_with_key(client, root["access_token"], "kid-a")
    _, _, kid_b = await child_with_key(client, root["access_token"], "kid-b")
    assert "tokens.introspect" in jwt_payload(kid_a)["scope"].split()
    assert (await introspect(client, root["access_token"], sibling))["active"] is True
    assert (await introspect(client, root["access_token"], kid_a))["active"] is True
    for hidden in (own, root["access_token"], kid_b):  # a refresh token shows itself to its holder (item 18)
        assert await introspect(client, kid_a, hidden) == INACTIVE


async def test_introspection_requires_an_authenticated_caller(client: httpx.AsyncClient) -> None:
    agent = await quickstart(client, "anon")
    for path in PATHS:
        response = await client.post(path, data={"token": agent["access_token"]})
        assert response.status_code == 401 and "www-authenticate" in response.headers
        assert "active" not in response.json()
        response = await client.post(path, data={"token": agent["access_token"]}, headers=bearer("a.b.c"))
        assert response.status_code == 401 and "active" not in response.json()
        missing = await client.post(path, data={}, headers=bearer(agent["access_token"]))
        assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


# -- the database goes away -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database_outage(services: Services, backend: str, tmp_path: Path) -> AsyncIterator[None]:
    """Every new connection of the real engines (writes and reads) goes to a database that is not there - a
    closed port for PostgreSQL, a file in a directory that does not exist for SQLite - after the pools' open
    connections are closed, so nothing is answered from a connection opened before the outage. On SQLite the
    hot paths' own connections (``SqliteSessionMaker.read``/``write``) are reopened onto the missing file too."""
    engines = {id(e): e for e in (services.engine, services.read_engine)}.values()
    makers = [m for m in (services.sessions, services.core.reads) if isinstance(m, SqliteSessionMaker)]
    for maker in makers:
        await maker.reopen(str(tmp_path / "gone" / "agentauth.db"))

    def redirect(dialect: Any, record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        if backend == "postgres":
            cparams.update(host="127.0.0.1", port=1)
        else:
            cargs[:] = [str(tmp_path / "gone" / "agentauth.db"), *cargs[1:]]

    for engine in engines:
        event.listen(engine.sync_engine, "do_connect", redirect)
        await engine.dispose()
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine.sync_engine, "do_connect", redirect)
            await engine.dispose()
        for maker in makers:
            await maker.reopen()


async def test_database_outage_answers_503_never_inactive(
    client: httpx.AsyncClient, services: Services, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    agent = await quickstart(client, "outage")
    other = (await client_token(client, agent["api_key"]))["access_token"]
    assert (await introspect(client, agent["access_token"], other))["active"] is True
    async with database_outage(services, backend, tmp_path):
        for path in PATHS:
            for token in (other, agent["refresh_token"]):
                response = await client.post(path, data={"token": token}, headers=bearer(agent["access_token"]))
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"].isdecimal()
                assert response.json()["error"] == "temporarily_unavailable"
                assert "active" not in response.json()
            keyed = await client.post(path, data={"token": other, "client_secret": agent["api_key"]})
            assert keyed.status_code == 503 and "active" not in keyed.json()
    # The database is back: the same question gets its true answer again.
    assert (await introspect(client, agent["access_token"], other))["active"] is True
