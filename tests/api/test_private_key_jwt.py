"""``private_key_jwt`` client authentication for ``client_credentials`` (RFC 7523 section 2.2, issue 14 item 2),
with assertions built by joserfc and by Authlib (third-party clients), on SQLite and PostgreSQL; and the API-key
methods' client_id rule. Every refusal is 401 invalid_client and issues nothing."""

from __future__ import annotations

import base64
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey
from sqlalchemy import func, select

from agentauth import paths
from agentauth.bootstrap import Services
from agentauth.keys import generate_kek
from agentauth.storage.models import CredentialRow
from live_server import free_port, server_env, spawn
from support import ISSUER_URL, assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def assertion(jwk: dict[str, str], claims: dict[str, Any], alg: str = "Ed25519") -> str:
    """Signed by joserfc: ``Ed25519`` (RFC 9864's fully-specified name) or ``EdDSA`` (what the MCP SDKs send)."""
    key = OKPKey.import_key(jwk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc flags EdDSA as superseded by RFC 9864's Ed25519
        return jwt.encode({"alg": alg, "typ": "JWT"}, claims, key, algorithms=[alg])


def claims_for(client_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": client_id, "sub": client_id, "aud": ISSUER_URL, "iat": now, "exp": now + 300,
            "jti": str(uuid.uuid4())}  # fmt: skip
    return {k: v for k, v in (base | changes).items() if v is not None}


def form(signed: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed} | extra  # fmt: skip


async def access_tokens(services: Services) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(select(func.count()).where(CredentialRow.kind == "access")) or 0)


async def test_private_key_jwt_issues_for_the_agent(client: httpx.AsyncClient, services: Services) -> None:
    made = await quickstart(client, "pkj")
    agent, jwk = made["agent"], made["private_key_jwk"]
    for client_id, aud in ((agent["id"], ISSUER_URL), (agent["id"], f"{ISSUER_URL}{paths.TOKEN}"),
                           (agent["did"], [ISSUER_URL, "https://other.example"])):  # fmt: skip
        for alg in ("Ed25519", "EdDSA"):
            signed = assertion(jwk, claims_for(client_id, aud=aud), alg)
            tokens = ok(await client.post(paths.TOKEN, data=form(signed)))
            claims = services.tokens.self_verifier().verify_access_token(tokens["access_token"]).claims
            assert claims["sub"] == agent["did"] and claims["client_id"] == agent["id"]
            assert set(tokens["scope"].split()) == set(agent["scopes"])
    narrowed = await client.post(
        paths.TOKEN, data=form(assertion(jwk, claims_for(agent["id"])), scope="agents.read", client_id=agent["id"])
    )
    assert ok(narrowed)["scope"] == "agents.read"


async def test_private_key_jwt_refusals_issue_nothing(client: httpx.AsyncClient, services: Services) -> None:
    made, other = await quickstart(client, "pkj"), await quickstart(client, "other")
    agent, jwk = made["agent"], made["private_key_jwk"]
    used = claims_for(agent["id"])
    ok(await client.post(paths.TOKEN, data=form(assertion(jwk, used))))
    before = await access_tokens(services)
    now = int(time.time())
    secret = base64.urlsafe_b64decode(jwk["x"] + "==")
    cases = {
        "replayed jti": form(assertion(jwk, used)),
        "another agent's key": form(assertion(other["private_key_jwk"], claims_for(agent["id"]))),
        "expired": form(assertion(jwk, claims_for(agent["id"], iat=now - 900, exp=now - 600))),
        "exp too far": form(assertion(jwk, claims_for(agent["id"], exp=now + 7200))),
        "iss != sub": form(assertion(jwk, claims_for(agent["id"], sub=other["agent"]["id"]))),
        "client_id mismatch": form(assertion(jwk, claims_for(agent["id"])), client_id=other["agent"]["id"]),
        "unknown agent": form(assertion(jwk, claims_for("agt_unknown"))),
        "wrong aud": form(assertion(jwk, claims_for(agent["id"], aud="https://elsewhere.example"))),
        "no jti": form(assertion(jwk, claims_for(agent["id"], jti=None))),
        "no exp": form(assertion(jwk, claims_for(agent["id"], exp=None))),
        "wrong assertion type": form(assertion(jwk, claims_for(agent["id"])))
        | {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"},
        "not a JWT": form("not.a.jwt"),
        "alg none": form(
            base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
            + "."
            + base64.urlsafe_b64encode(str(claims_for(agent["id"])).encode()).decode().rstrip("=")
            + "."
        ),
    }
    from joserfc.jwk import OctKey

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short HMAC key
        hs256 = jwt.encode({"alg": "HS256"}, claims_for(agent["id"]), OctKey.import_key(secret), algorithms=["HS256"])
    cases["HS256 with the public key as secret"] = form(hs256)
    for name, data in cases.items():
        refused = await client.post(paths.TOKEN, data=data)
        assert refused.status_code == 401, (name, refused.text)
        assert_error(refused, 401, "invalid_client")
    assert await access_tokens(services) == before
    both = form(assertion(jwk, claims_for(agent["id"])), client_secret=made["api_key"])
    assert_error(await client.post(paths.TOKEN, data=both), 400, "invalid_request")
    basic = httpx.BasicAuth(agent["id"], made["api_key"])
    assert_error(await client.post(paths.TOKEN, data=form(assertion(jwk, claims_for(agent["id"]))), auth=basic),
                 400, "invalid_request")  # fmt: skip
    # A deactivated agent's assertion: refused too.
    gone = await quickstart(client, "gone")
    deactivated = await client.post(f"{paths.AGENTS}/{gone['agent']['id']}/deactivate",
                                    headers={"Authorization": f"Bearer {gone['access_token']}"})  # fmt: skip
    assert deactivated.status_code in (200, 204), deactivated.text
    assert_error(await client.post(paths.TOKEN, data=form(assertion(gone["private_key_jwk"],
                                                                   claims_for(gone["agent"]["id"])))),
                 401, "invalid_client")  # fmt: skip
    assert await access_tokens(services) == before + 1  # gone's quickstart token only


async def test_a_changed_agent_is_judged_on_a_fresh_read(client: httpx.AsyncClient, services: Services) -> None:
    """An agent that authenticated with its key a moment ago is not read again (``issuer/agent_snapshots.py``), so
    the write round re-checks it is unchanged: a change right after a token (trust level, then deactivation)
    shows in the very next request, for both assertion grants, with nothing issued from the old state."""
    root = await quickstart(client, "snap")
    child = {"name": "c", "agent_type": "tool", "trust_level": "untrusted"}
    made = ok(await client.post("/api/v1/agents", json=child, headers=bearer(root["access_token"])), 201)
    agent, jwk = made["agent"], made["private_key_jwk"]
    verifier = services.tokens.self_verifier()

    def jwt_bearer(signed: str) -> dict[str, str]:
        return {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": signed}

    bodies = (lambda: form(assertion(jwk, claims_for(agent["id"]))),
              lambda: jwt_bearer(assertion(jwk, claims_for(agent["did"]))))  # fmt: skip
    for body in bodies:
        token = ok(await client.post(paths.TOKEN, data=body()))["access_token"]
        assert verifier.verify_access_token(token).claims["vc"]["credentialSubject"]["trustLevel"] == "untrusted"
    url = f"/api/v1/agents/{agent['id']}"
    ok(await client.patch(url, json={"trust_level": "basic"}, headers=bearer(root["access_token"])))
    for body in bodies:
        token = ok(await client.post(paths.TOKEN, data=body()))["access_token"]
        assert verifier.verify_access_token(token).claims["vc"]["credentialSubject"]["trustLevel"] == "basic"
    ok(await client.delete(url, headers=bearer(root["access_token"])))
    before = await access_tokens(services)
    assert_error(await client.post(paths.TOKEN, data=bodies[0]()), 401, "invalid_client")
    assert_error(await client.post(paths.TOKEN, data=bodies[1]()), 400, "invalid_grant")
    assert await access_tokens(services) == before


async def test_api_key_client_id_must_be_its_agent(client: httpx.AsyncClient) -> None:
    made, other = await quickstart(client, "key"), await quickstart(client, "other")
    good = {"grant_type": "client_credentials", "client_secret": made["api_key"]}
    ok(await client.post(paths.TOKEN, data=good | {"client_id": made["agent"]["id"]}))
    assert_error(await client.post(paths.TOKEN, data=good | {"client_id": other["agent"]["id"]}), 401,
                 "invalid_client")  # fmt: skip
    basic = {"grant_type": "client_credentials"}
    ok(await client.post(paths.TOKEN, data=basic, auth=httpx.BasicAuth(made["agent"]["id"], made["api_key"])))
    wrong = httpx.BasicAuth(other["agent"]["id"], made["api_key"])
    assert_error(await client.post(paths.TOKEN, data=basic, auth=wrong), 401, "invalid_client")


def test_authlib_private_key_jwt_client(tmp_path: Path) -> None:
    """Authlib's own ``private_key_jwt`` client authentication (RFC 7523) with the agent's Ed25519 JWK, against a
    real server over HTTP (Authlib brings its own HTTP client)."""
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc7523 import PrivateKeyJWT

    port = free_port()
    server = spawn(server_env(tmp_path / "data", port, generate_kek(), None), port, tmp_path / "server.log")
    try:
        made = httpx.post(f"{server.url}{paths.QUICKSTART}", json={"name": "authlib", "agent_type": "tool"}).json()
        agent = made["agent"]
        token_url = f"{server.url}{paths.TOKEN}"
        with OAuth2Session(
            client_id=agent["id"], client_secret=OKPKey.import_key(made["private_key_jwk"]),
            token_endpoint_auth_method=PrivateKeyJWT(token_url, alg="Ed25519"),
        ) as oauth:  # fmt: skip
            token = oauth.fetch_token(token_url, grant_type="client_credentials", scope="agents.read")
        assert token["scope"] == "agents.read" and token["token_type"].lower() == "bearer"
        asked = {"token": token["access_token"], "client_secret": made["api_key"]}
        seen = httpx.post(f"{server.url}{paths.INTROSPECT}", data=asked).json()
        assert seen["active"] is True and seen["sub"] == agent["did"] and seen["client_id"] == agent["id"]
    finally:
        server.stop()


async def test_per_client_rate_limit_applies_without_a_client_id(settings_factory: Any, backend: str) -> None:
    """Leaving client_id out is no way around the per-client limit: the bucket is the assertion's iss."""
    from agentauth.api.app import create_app
    from agentauth.bootstrap import build_services
    from support import reset_postgres

    if backend == "postgres":
        await reset_postgres()
    services = await build_services(settings_factory(token_rate_per_client=3))
    app = create_app(services=services)
    app.state.services = services
    try:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as http:
            made, other = await quickstart(http, "limited"), await quickstart(http, "other")
            jwk, agent_id = made["private_key_jwk"], made["agent"]["id"]
            statuses = [(await http.post(paths.TOKEN, data=form(assertion(jwk, claims_for(agent_id))))).status_code
                        for _ in range(2)]  # fmt: skip
            with_id = form(assertion(jwk, claims_for(agent_id)), client_id=agent_id)
            statuses.append((await http.post(paths.TOKEN, data=with_id)).status_code)
            assert statuses == [200, 200, 200]
            refused = await http.post(paths.TOKEN, data=form(assertion(jwk, claims_for(agent_id))))
            assert_error(refused, 429, "rate_limited")
            ok(await http.post(paths.TOKEN, data=form(assertion(other["private_key_jwk"],
                                                                claims_for(other["agent"]["id"])))))  # fmt: skip
    finally:
        await services.close()
