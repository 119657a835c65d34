"""Secrets never reach the logs (OWASP ASVS 7.1.1, CWE-532): a full flow runs with every logger at DEBUG -
ours, SQLAlchemy's (statements, parameters and rows), the drivers', httpx's - and the captured records, stdout,
stderr and the audit trail are searched for every secret handed out and for distinctive pieces of each.

Secrets: API keys (their random tail; the lookup prefix is published by design as ``prefix``), refresh tokens,
access tokens (whole, and their signature), the agents' private keys (JWK ``d``), the issuer's private signing
key and the key-encryption key. uvicorn's access log is not involved: these requests go over ASGI in-process
(and no secret travels in a URL)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from security_support import (
    ACCESS_TYPE,
    INTROSPECT,
    JWT_BEARER,
    REVOKE,
    TOKEN,
    TOKEN_ENDPOINT_URL,
    assertion_for,
    client_credentials,
    exchange_data,
    make_child,
    segment,
    sign_ed25519,
)
from sqlalchemy import text

from agentauth.bootstrap import Services
from agentauth.did import encode_did_key
from agentauth.issuer.secrets import API_KEY_LOOKUP_CHARS, API_KEY_PREFIX, REFRESH_TOKEN_PREFIX
from agentauth.keys import KeyPair, b64url_encode
from agentauth.vc.presentation import holder_kid
from support import bearer, ok, quickstart

pytestmark = pytest.mark.anyio

WINDOW = 12  # characters of base64url: 72 bits - a chance match in the logs is out of the question


def pieces(secret: str, skip: int = 0) -> list[str]:
    """The secret and overlapping windows of its random part (from ``skip`` on)."""
    body = secret[skip:]
    return [secret, *(body[i : i + WINDOW] for i in range(0, max(1, len(body) - WINDOW + 1), WINDOW // 2))]


class Secrets:
    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def api_key(self, label: str, key: str) -> None:
        self.items[label] = pieces(key, len(API_KEY_PREFIX) + API_KEY_LOOKUP_CHARS)

    def refresh(self, label: str, token: str) -> None:
        self.items[label] = pieces(token, len(REFRESH_TOKEN_PREFIX))

    def access(self, label: str, token: str) -> None:
        self.items[label] = [token, token.rsplit(".", 1)[0], *pieces(token.rsplit(".", 1)[1])]

    def raw(self, label: str, value: str) -> None:
        self.items[label] = pieces(value)

    def of_tokens(self, label: str, response: dict[str, Any]) -> None:
        self.access(f"{label} access token", response["access_token"])
        if response.get("refresh_token"):
            self.refresh(f"{label} refresh token", response["refresh_token"])


def altered(key: str) -> str:
    """The key with its last character changed - always changed: a fixed replacement equals the original one
    time in 64 (this test once failed that way, the "wrong" key being the right one)."""
    return key[:-1] + ("B" if key.endswith("A") else "A")


async def full_flow(client: httpx.AsyncClient, found: Secrets) -> None:
    """Everything a client does, including the failures that make the service log."""
    a, b = await quickstart(client, "logged-a"), await quickstart(client, "logged-b")
    for label, agent in (("A", a), ("B", b)):
        found.api_key(f"{label} api key", agent["api_key"])
        found.of_tokens(f"{label} quickstart", agent)
        found.raw(f"{label} private key", agent["private_key_jwk"]["d"])
    child = await make_child(client, a["access_token"], "logged-child")
    found.api_key("child api key", child["api_key"])
    found.of_tokens("child", child)
    found.raw("child private key", child["private_key_jwk"]["d"])
    issued = ok(await client_credentials(client, a["api_key"]))
    found.of_tokens("client_credentials", issued)
    rotated = ok(await client.post("/api/v1/agents/quickstart", json={"name": "extra", "agent_type": "tool"}), 201)
    found.api_key("extra api key", rotated["api_key"])
    found.of_tokens("extra", rotated)
    refreshed = ok(
        await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    )
    found.of_tokens("refreshed", refreshed)
    reuse = await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    assert reuse.status_code == 400
    by_assertion = ok(await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion_for(a)}))
    found.of_tokens("jwt-bearer", by_assertion)
    key = ok(await client.post("/api/v1/credentials", json={"name": "k"}, headers=bearer(a["access_token"])), 201)
    found.api_key("created api key", key["raw_key"])
    new = ok(await client.post(f"/api/v1/credentials/{key['id']}/rotate", headers=bearer(a["access_token"])))
    found.api_key("rotated api key", new["raw_key"])
    assert ok(await client.post(f"/api/v1/credentials/{new['id']}/revoke", headers=bearer(a["access_token"])))
    body = {"delegate_agent_id": child["agent"]["id"], "scopes": ["api.read", "agents.read"]}
    grant = ok(await client.post("/api/v1/delegations", json=body, headers=bearer(a["access_token"])), 201)
    data = exchange_data(grant["credential"])
    exchanged = ok(await client.post(TOKEN, data=exchange_data(grant["credential"], child["access_token"])))
    found.of_tokens("exchanged", exchanged)
    found.of_tokens("exchanged by key", ok(await client.post(TOKEN, data=data | {"client_secret": child["api_key"]})))
    for token in (by_assertion["access_token"], by_assertion["refresh_token"], a["api_key"]):
        assert (
            await client.post(INTROSPECT, data={"token": token}, headers=bearer(a["access_token"]))
        ).status_code == 200
    assert (
        await client.post(INTROSPECT, data={"token": a["access_token"], "client_secret": a["api_key"]})
    ).status_code == 200
    assert (
        await client.post(REVOKE, data={"token": issued["access_token"]}, headers=bearer(a["access_token"]))
    ).status_code == 200
    assert (
        await client.post(REVOKE, data={"token": refreshed["refresh_token"], "client_secret": a["api_key"]})
    ).status_code == 200
    # Failures, each with secret material in the wrong place - the service logs why it refused.
    forged = sign_ed25519({"alg": "EdDSA", "typ": "at+jwt", "kid": "x"}, {"sub": "x"}, KeyPair.generate())
    wrong = [
        ("GET", "/api/v1/agents", {"headers": bearer(issued["access_token"])}),  # revoked
        ("GET", "/api/v1/agents", {"headers": bearer(a["refresh_token"])}),
        ("GET", "/api/v1/agents", {"headers": bearer(a["api_key"])}),
        ("GET", "/api/v1/agents", {"headers": bearer(forged)}),
        ("GET", "/api/v1/agents", {"headers": bearer(f"{segment({'alg': 'none'})}.{segment({'k': a['api_key']})}.")}),
        ("POST", TOKEN, {"data": {"grant_type": "client_credentials", "client_secret": altered(a["api_key"])}}),
        ("POST", TOKEN, {"data": {"grant_type": "client_credentials", "client_secret": new["raw_key"]}}),  # revoked
        ("POST", TOKEN, {"data": {"grant_type": "client_credentials", "client_secret": a["access_token"]}}),
        ("POST", TOKEN, {"data": {"grant_type": "refresh_token", "refresh_token": a["api_key"]}}),
        ("POST", TOKEN, {"data": {"grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"]}}),
        ("POST", TOKEN, {"data": {"grant_type": JWT_BEARER, "assertion": a["access_token"]}}),
        ("POST", TOKEN, {"data": data | {"subject_token": a["access_token"], "client_secret": child["api_key"]}}),
        ("POST", TOKEN, {"data": data | {"actor_token": a["refresh_token"], "actor_token_type": ACCESS_TYPE}}),
        ("POST", INTROSPECT, {"data": {"token": a["access_token"], "client_secret": altered(b["api_key"])}}),
        ("POST", "/api/v1/agents", {"json": {"name": "x", "agent_type": "tool", "public_key": a["private_key_jwk"]},
                                    "headers": bearer(a["access_token"])}),
    ]  # fmt: skip
    for method, url, kwargs in wrong:
        response = await client.request(method, url, **kwargs)
        assert 400 <= response.status_code < 500, (url, response.text)


async def issuer_and_kek_secrets(services: Services, found: Secrets) -> None:
    for signing_key in services.keys.ring.jwks()["keys"]:
        pair = services.keys.ring.get(signing_key["kid"])
        assert pair is not None
        found.raw(f"issuer key {signing_key['kid'][-8:]}", b64url_encode(pair.pair.seed()))
        found.raw(f"issuer key hex {signing_key['kid'][-8:]}", pair.pair.seed().hex())
    kek = services.settings.key_encryption_key
    assert kek is not None
    found.raw("key-encryption key", kek.get_secret_value())


async def test_no_secret_appears_in_any_log(
    client: httpx.AsyncClient, services: Services, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.disable(logging.NOTSET)
    for name in list(logging.root.manager.loggerDict):
        # Whatever an earlier test in this process did to a logger (pytest-xdist runs many in one), capture all.
        logger = logging.getLogger(name)
        logger.disabled, logger.propagate = False, True
        caplog.set_level(logging.DEBUG, logger=name)
    for name in ("sqlalchemy.engine", "sqlalchemy.pool", "aiosqlite", "asyncpg", "httpx", "httpcore", "agentauth"):
        caplog.set_level(logging.DEBUG, logger=name)
    found = Secrets()
    await full_flow(client, found)
    await issuer_and_kek_secrets(services, found)
    captured = capsys.readouterr()
    async with services.engine.connect() as conn:
        audit_rows = [repr(tuple(r)) for r in await conn.execute(text("SELECT * FROM audit_events"))]
    records = caplog.records
    haystacks = {
        "log records": "\n".join(
            f"{r.name} {r.levelname} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in records
        ),
        "formatted log": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
        "audit trail": "\n".join(audit_rows),
    }
    # The capture is live and reached every layer: our refusals, SQL with its parameters, the HTTP client.
    names = {r.name for r in records}
    assert any(n.startswith("agentauth") for n in names) and any(n.startswith("sqlalchemy.engine") for n in names)
    assert "httpx" in names and len(records) > 200 and len(audit_rows) > 20
    assert any("invalid_grant" in r.getMessage() for r in records), "the refusals were logged"
    leaks = [
        f"{label} (piece {piece[:6]}...) in {where}"
        for label, candidates in found.items.items()
        for piece in candidates
        for where, haystack in haystacks.items()
        if piece in haystack
    ]
    assert len(found.items) >= 30
    assert leaks == [], "\n".join(leaks)


async def test_logged_request_paths_cannot_forge_log_lines(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """CWE-117: what the service writes about a refused request cannot start a new line of the log."""
    caplog.set_level(logging.DEBUG, logger="agentauth")
    fake = f"\r\n{datetime.now(UTC).isoformat()} CRITICAL agentauth forged entry"
    response = await client.get(f"/api/v1/agents/agt{quote(fake)}", headers=bearer("not.a.token"))
    assert response.status_code in (401, 404)
    forged_jti = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": f"a.b{fake}.c"})
    assert forged_jti.status_code == 400
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("agentauth")]
    assert any("forged entry" in m for m in lines), "the path of the refused request was logged"
    assert not [m for m in lines if "\n" in m or "\r" in m], lines


async def test_agent_chosen_claims_cannot_forge_log_lines(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentauth")
    agent = await quickstart(client, "log-forger")
    pair = KeyPair.from_jwk(agent["private_key_jwk"])
    did = encode_did_key(pair.public.raw)
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": did, "sub": did, "aud": TOKEN_ENDPOINT_URL, "iat": now, "exp": now + 60,
              "jti": f"urn:uuid:1\r\n{datetime.now(UTC).isoformat()} CRITICAL agentauth forged entry"}  # fmt: skip
    assertion = sign_ed25519({"alg": "EdDSA", "typ": "JWT", "kid": holder_kid(did)}, claims, pair)
    first = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion})
    replay = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion})
    assert first.status_code == 200 and replay.status_code == 400
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("agentauth")]
    assert any("forged entry" in m for m in lines), "the refusal was logged with the jti"
    assert not [m for m in lines if "\n" in m or "\r" in m], lines
