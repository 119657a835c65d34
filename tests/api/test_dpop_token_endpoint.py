"""DPoP at the token endpoint and on AgentAuth's own API (RFC 9449 sections 5-8, issue 15 items 1, 3, 4, 6), on
SQLite and PostgreSQL, with proofs built by joserfc (a third-party JOSE library: Ed25519 and ES256 keys) and by
the agent's own key (``create_proof``).

Every grant binds what it issues to the proof's key (``token_type: DPoP``, ``cnf.jkt`` = the key's RFC 7638
thumbprint); a bad proof is 400 ``invalid_dpop_proof`` and issues nothing; a proof's ``jti`` is used once, also
by a replica that never saw it (the database records it); a bound refresh family needs a proof by its key; a
bound token is refused as a bearer token."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from api_support import custom_client
from joserfc import jws
from joserfc.jwk import ECKey, OctKey, OKPKey
from sqlalchemy import func, select

from agentauth import paths
from agentauth.bootstrap import Services
from agentauth.keys import KeyPair
from agentauth.storage.models import CredentialRow
from agentauth.vc import NonceRegistry, create_agent_assertion, create_proof
from agentauth.vc.dpop import access_token_hash
from support import ISSUER_URL, assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio
TOKEN_URL = f"{ISSUER_URL}{paths.TOKEN}"
AGENTS = f"{paths.API_V1}/agents"


def proof(
    key: OKPKey | ECKey,
    *,
    htm: str = "POST",
    htu: str = TOKEN_URL,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    alg = "Ed25519" if isinstance(key, OKPKey) else "ES256"
    protected = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)} | (header or {})
    body = {"jti": str(uuid.uuid4()), "htm": htm, "htu": htu, "iat": int(time.time())} | claims
    return jws.serialize_compact(protected, json.dumps(body).encode(), key, algorithms=[alg])


def api_key_form(made: dict[str, Any]) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_secret": made["api_key"]}


async def access_tokens(services: Services) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(select(func.count()).where(CredentialRow.kind == "access")) or 0)


def forget_seen_proofs(services: Services) -> None:
    """What another replica is: a process that has not seen this proof (only the database has)."""
    services.tokens.proofs._local = NonceRegistry()
    services.tokens.resource_replay = NonceRegistry()


@pytest.mark.parametrize("kind", ["Ed25519", "ES256"])
async def test_a_client_credentials_token_is_bound_to_the_proof_key(
    client: httpx.AsyncClient, services: Services, kind: str
) -> None:
    made = await quickstart(client, "dpop")
    me_path = f"{AGENTS}/{made['agent']['id']}"
    key = OKPKey.generate_key("Ed25519") if kind == "Ed25519" else ECKey.generate_key("P-256")
    tokens = ok(await client.post(paths.TOKEN, data=api_key_form(made), headers={"DPoP": proof(key)}))
    assert tokens["token_type"] == "DPoP"
    claims = services.tokens.self_verifier().verify_access_token(tokens["access_token"], proven_jkt=key.thumbprint())
    assert claims.claims["cnf"] == {"jkt": key.thumbprint()}

    token = tokens["access_token"]
    me_url = f"{ISSUER_URL}{me_path}"
    # Our own API: with the DPoP scheme and a proof of this request (ath of this token) it works ...
    dpop = {"Authorization": f"DPoP {token}", "DPoP": proof(key, htm="GET", htu=me_url, ath=access_token_hash(token))}
    assert ok(await client.get(me_path, headers=dpop))["id"] == made["agent"]["id"]
    # ... the same proof again, or as a bearer token, or with another key's proof, it does not.
    replayed = await client.get(me_path, headers=dpop)
    assert_error(replayed, 401, "invalid_dpop_proof")  # RFC 9449 section 7.1: the token is fine, the proof not
    assert replayed.headers["WWW-Authenticate"].startswith("DPoP ") and "algs=" in replayed.headers["WWW-Authenticate"]
    assert_error(await client.get(me_path, headers=bearer(token)), 401, "invalid_token")
    other = OKPKey.generate_key("Ed25519")
    stolen = {
        "Authorization": f"DPoP {token}",
        "DPoP": proof(other, htm="GET", htu=me_url, ath=access_token_hash(token)),
    }
    assert_error(await client.get(me_path, headers=stolen), 401, "invalid_token")
    for wrong in (
        proof(key, htm="POST", htu=me_url, ath=access_token_hash(token)),
        proof(key, htm="GET", htu=f"{ISSUER_URL}{AGENTS}", ath=access_token_hash(token)),
        proof(key, htm="GET", htu=me_url, ath=access_token_hash(token + "x")),
        proof(key, htm="GET", htu=me_url),
        proof(key, htm="GET", htu=me_url, ath=access_token_hash(token), iat=int(time.time()) - 600),
    ):
        refused = await client.get(me_path, headers={"Authorization": f"DPoP {token}", "DPoP": wrong})
        assert_error(refused, 401, "invalid_dpop_proof")
        assert refused.headers["WWW-Authenticate"].startswith("DPoP ")

    # Introspection (RFC 9449 section 6.2) says what the token is bound to.
    seen = ok(await client.post(paths.INTROSPECT, data={"token": token, "client_secret": made["api_key"]}))
    assert seen["active"] is True and seen["token_type"] == "DPoP" and seen["cnf"] == {"jkt": key.thumbprint()}
    refreshed = ok(await client.post(paths.INTROSPECT, data={"token": tokens["refresh_token"]}))
    assert refreshed["cnf"] == {"jkt": key.thumbprint()}


async def test_without_a_proof_tokens_stay_bearer_tokens(client: httpx.AsyncClient) -> None:
    made = await quickstart(client, "bearer")
    me_path = f"{AGENTS}/{made['agent']['id']}"
    tokens = ok(await client.post(paths.TOKEN, data=api_key_form(made)))
    assert tokens["token_type"] == "Bearer"
    assert ok(await client.get(me_path, headers=bearer(tokens["access_token"])))["id"] == made["agent"]["id"]
    # An unbound token with the DPoP scheme is refused too (RFC 9449 section 7.1).
    token = tokens["access_token"]
    key = OKPKey.generate_key("Ed25519")
    sent = {"Authorization": f"DPoP {token}",
            "DPoP": proof(key, htm="GET", htu=f"{ISSUER_URL}{me_path}", ath=access_token_hash(token))}  # fmt: skip
    assert_error(await client.get(me_path, headers=sent), 401, "invalid_token")


async def test_bad_proofs_at_the_token_endpoint_issue_nothing(client: httpx.AsyncClient, services: Services) -> None:
    made = await quickstart(client, "attacks")
    key = OKPKey.generate_key("Ed25519")
    before = await access_tokens(services)
    private = key.as_dict(private=True)
    hmac_key = OctKey.generate_key(256)
    hs256 = jws.serialize_compact(
        {"typ": "dpop+jwt", "alg": "HS256", "jwk": key.as_dict(private=False)},
        json.dumps({"jti": "x", "htm": "POST", "htu": TOKEN_URL, "iat": int(time.time())}).encode(),
        hmac_key, algorithms=["HS256"],
    )  # fmt: skip
    unsigned = ".".join(
        part.rstrip("=")
        for part in (
            _b64({"typ": "dpop+jwt", "alg": "none", "jwk": key.as_dict(private=False)}),
            _b64({"jti": "y", "htm": "POST", "htu": TOKEN_URL, "iat": int(time.time())}),
            "",
        )
    )
    bad = {
        "private jwk": proof(key, header={"jwk": private}),
        "alg none": unsigned,
        "HS256": hs256,
        "wrong htm": proof(key, htm="GET"),
        "wrong htu": proof(key, htu=f"{ISSUER_URL}/api/v1/auth/introspect"),
        "htu with query": proof(key, htu=f"{TOKEN_URL}?grant_type=client_credentials"),
        "htu with fragment": proof(key, htu=f"{TOKEN_URL}#x"),
        "iat too old": proof(key, iat=int(time.time()) - 300),
        "iat in the future": proof(key, iat=int(time.time()) + 300),
        "wrong typ": proof(key, header={"typ": "JWT"}),
        "not a JWS": "not-a-proof",
    }
    for what, value in bad.items():
        refused = await client.post(paths.TOKEN, data=api_key_form(made), headers={"DPoP": value})
        assert_error(refused, 400, "invalid_dpop_proof", what)
    two = httpx.Headers([("DPoP", proof(key)), ("DPoP", proof(key))])
    assert_error(await client.post(paths.TOKEN, data=api_key_form(made), headers=two), 400, "invalid_dpop_proof")
    assert await access_tokens(services) == before


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


async def test_a_proof_is_used_once_also_by_a_replica_that_never_saw_it(
    client: httpx.AsyncClient, services: Services
) -> None:
    made = await quickstart(client, "replay")
    key = OKPKey.generate_key("Ed25519")
    once = proof(key)
    ok(await client.post(paths.TOKEN, data=api_key_form(made), headers={"DPoP": once}))
    before = await access_tokens(services)
    # This replica remembers it ...
    again = await client.post(paths.TOKEN, data=api_key_form(made), headers={"DPoP": once})
    assert_error(again, 400, "invalid_dpop_proof")
    # ... and one that does not finds it in the database, for each kind of grant.
    forget_seen_proofs(services)
    again = await client.post(paths.TOKEN, data=api_key_form(made), headers={"DPoP": once})
    assert_error(again, 400, "invalid_dpop_proof")
    assert await access_tokens(services) == before

    tokens = ok(await client.post(paths.TOKEN, data=api_key_form(made), headers={"DPoP": (second := proof(key))}))
    forget_seen_proofs(services)
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert_error(await client.post(paths.TOKEN, data=refresh, headers={"DPoP": second}), 400, "invalid_dpop_proof")
    assert ok(await client.post(paths.TOKEN, data=refresh, headers={"DPoP": proof(key)}))["token_type"] == "DPoP"


async def test_a_bound_refresh_family_needs_a_proof_by_its_key(client: httpx.AsyncClient, services: Services) -> None:
    made = await quickstart(client, "refresh")
    agent_key = KeyPair.from_jwk(made["private_key_jwk"])
    tokens = ok(
        await client.post(
            paths.TOKEN, data=api_key_form(made), headers={"DPoP": create_proof(agent_key, "POST", TOKEN_URL)}
        )
    )
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert_error(await client.post(paths.TOKEN, data=refresh), 400, "invalid_dpop_proof")
    other = proof(OKPKey.generate_key("Ed25519"))
    assert_error(await client.post(paths.TOKEN, data=refresh, headers={"DPoP": other}), 400, "invalid_grant")
    # Refused, not spent: the holder of the key still refreshes, and stays bound.
    again = ok(
        await client.post(paths.TOKEN, data=refresh, headers={"DPoP": create_proof(agent_key, "POST", TOKEN_URL)})
    )
    assert again["token_type"] == "DPoP"
    claims = services.tokens.self_verifier().verify_access_token(
        again["access_token"], proven_jkt=agent_key.public.thumbprint()
    )
    assert claims.claims["cnf"]["jkt"] == agent_key.public.thumbprint()


async def test_assertion_grants_bind_too(client: httpx.AsyncClient, services: Services) -> None:
    made = await quickstart(client, "assert")
    agent_key = KeyPair.from_jwk(made["private_key_jwk"])
    now = services.core.clock()
    jwt_bearer = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": create_agent_assertion(agent_key, audience=TOKEN_URL, now=now),
    }
    bound = ok(
        await client.post(paths.TOKEN, data=jwt_bearer, headers={"DPoP": create_proof(agent_key, "POST", TOKEN_URL)})
    )
    assert bound["token_type"] == "DPoP"
    pkjwt = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": create_agent_assertion(
            agent_key, audience=TOKEN_URL, now=now, client_id=made["agent"]["id"]
        ),
    }
    bound = ok(await client.post(paths.TOKEN, data=pkjwt, headers={"DPoP": create_proof(agent_key, "POST", TOKEN_URL)}))
    assert bound["token_type"] == "DPoP"


async def test_a_required_nonce_is_handed_out_and_then_accepted(settings_factory: Any, backend: str) -> None:
    async with custom_client(settings_factory, backend, dpop_nonce_required=True) as (services, client):
        made = await quickstart(client, "nonce")
        me_path = f"{AGENTS}/{made['agent']['id']}"
        key = ECKey.generate_key("P-256")
        first = await client.post(paths.TOKEN, data=api_key_form(made), headers={"DPoP": proof(key)})
        assert_error(first, 400, "use_dpop_nonce")
        nonce = first.headers["DPoP-Nonce"]
        wrong = await client.post(paths.TOKEN, data=api_key_form(made), headers={"DPoP": proof(key, nonce="nope")})
        assert_error(wrong, 400, "use_dpop_nonce")
        retried = await client.post(paths.TOKEN, data=api_key_form(made), headers={"DPoP": proof(key, nonce=nonce)})
        assert ok(retried)["token_type"] == "DPoP" and retried.headers["DPoP-Nonce"] == nonce
        token = retried.json()["access_token"]
        # Our own API asks for it the same way (401, RFC 9449 section 9).
        me = {"Authorization": f"DPoP {token}",
              "DPoP": proof(key, htm="GET", htu=f"{ISSUER_URL}{me_path}", ath=access_token_hash(token))}  # fmt: skip
        challenged = await client.get(me_path, headers=me)
        assert_error(challenged, 401, "use_dpop_nonce")
        assert 'DPoP realm="agentauth", error="use_dpop_nonce"' in challenged.headers["WWW-Authenticate"]
        me["DPoP"] = proof(key, htm="GET", htu=f"{ISSUER_URL}{me_path}", ath=access_token_hash(token),
                           nonce=challenged.headers["DPoP-Nonce"])  # fmt: skip
        answered = await client.get(me_path, headers=me)
        assert ok(answered)["id"] == made["agent"]["id"]
        # Section 8.2: every answer to a DPoP request names the current nonce, so the client keeps up with it.
        assert answered.headers["DPoP-Nonce"] == challenged.headers["DPoP-Nonce"]
        assert "DPoP-Nonce" not in (await client.get(me_path, headers=bearer(made["access_token"]))).headers
        assert services.tokens.proofs.nonces is not None


async def test_the_metadata_names_the_proof_algorithms(client: httpx.AsyncClient) -> None:
    metadata = ok(await client.get("/.well-known/oauth-authorization-server"))
    assert metadata["dpop_signing_alg_values_supported"] == ["EdDSA", "Ed25519", "ES256"]


async def test_a_bound_token_authenticates_its_caller_at_introspection_and_revocation(
    client: httpx.AsyncClient,
) -> None:
    """RFC 7662 / RFC 7009 callers authenticate like at any protected route: a DPoP-bound token with this
    request's proof (and not as a bearer token)."""
    made = await quickstart(client, "self-revoke")
    key = OKPKey.generate_key("Ed25519")
    token = ok(await client.post(paths.TOKEN, data=api_key_form(made), headers={"DPoP": proof(key)}))["access_token"]

    def dpop(path: str) -> dict[str, str]:
        return {"Authorization": f"DPoP {token}", "DPoP": proof(key, htu=f"{ISSUER_URL}{path}",
                                                                ath=access_token_hash(token))}  # fmt: skip

    assert_error(
        await client.post(paths.INTROSPECT, data={"token": token}, headers=bearer(token)), 401, "invalid_token"
    )
    seen = ok(await client.post(paths.INTROSPECT, data={"token": token}, headers=dpop(paths.INTROSPECT)))
    assert seen["active"] is True and seen["token_type"] == "DPoP"
    revoked = await client.post(paths.REVOKE, data={"token": token}, headers=dpop(paths.REVOKE))
    assert revoked.status_code == 200, revoked.text
    gone = ok(await client.post(paths.INTROSPECT, data={"token": token, "client_secret": made["api_key"]}))
    assert gone == {"active": False}
