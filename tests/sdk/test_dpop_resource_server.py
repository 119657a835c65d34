"""DPoP-bound tokens at a third-party resource server (RFC 9449 sections 7 and 8), through a real uvicorn server on
127.0.0.1: the FastAPI dependency (``install(..., dpop=...)``, online verifier fetching the issuer's keys and list)
and the ASGI middleware (offline verifier, behind a proxy: ``public_url``). Proofs come from ``create_proof`` and
from joserfc (Ed25519 and ES256 keys). Every refusal is checked for its status, its exact ``WWW-Authenticate``
and its body.

No ``from __future__ import annotations`` here: FastAPI resolves route annotations, and these use locals.
"""

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import orjson
import pytest
from dpop_support import bound_token, dpop_headers, joserfc_proof, serve
from fastapi import Depends, FastAPI
from joserfc.jwk import ECKey, OKPKey
from sdk_support import ISSUER_URL, LIST_URL, RESOURCE, FakeIssuer

from agentauth.did import encode_did_key
from agentauth.keys import KeyPair
from agentauth.sdk import AsyncOnlineVerifier, DPoPSettings, offline_verifier
from agentauth.sdk.asgi import BearerAuthMiddleware
from agentauth.sdk.bearer import (
    AGENT_KEY_DESCRIPTION,
    DPOP_ONLY_DESCRIPTION,
    INVALID_PROOF_DESCRIPTION,
    INVALID_TOKEN_DESCRIPTION,
    USE_NONCE_DESCRIPTION,
)
from agentauth.sdk.fastapi import install, require_scopes
from agentauth.vc import StaticStatusLists, VerifiedToken
from agentauth.vc.dpop import create_proof
from agentauth.vc.dpop_nonces import DPoPNonces

ALGS = 'algs="EdDSA Ed25519 ES256"'
BOTH = f'Bearer realm="agentauth", DPoP realm="agentauth", {ALGS}'
# The public URL the ASGI server is reached under, through a proxy (the client's htu names it, not 127.0.0.1).
PUBLIC_URL = "https://api.test"


def dpop_refusal(error: str, description: str, extra: str = "") -> str:
    return f'DPoP realm="agentauth", error="{error}", error_description="{description}"{extra}, {ALGS}'


def fastapi_app(issuer: FakeIssuer, settings: DPoPSettings | None) -> FastAPI:
    verifier = AsyncOnlineVerifier(
        ISSUER_URL,
        resource=RESOURCE,
        http=issuer.async_client(),
        clock=issuer.time.now,
        monotonic=issuer.time.monotonic,
    )
    app = FastAPI()
    install(app, verifier, dpop=settings)

    @app.get("/read")
    async def read(token: Annotated[VerifiedToken, Depends(require_scopes("api.read"))]) -> dict[str, Any]:
        return {"sub": token.subject}

    return app


def asgi_app(issuer: FakeIssuer, settings: DPoPSettings | None) -> BearerAuthMiddleware:
    lists = StaticStatusLists({LIST_URL: issuer.list_jwt})
    verifier = offline_verifier(issuer.ring.jwks(), resource=RESOURCE, issuer_url=ISSUER_URL, status_source=lists)

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        token: VerifiedToken = scope["state"]["agentauth_token"]
        body = orjson.dumps({"sub": token.subject})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return BearerAuthMiddleware(bare, verifier, required_scopes=["api.read"], dpop=settings)


class Server:
    """A running resource server: where to send requests (``url``) and the URI its clients' proofs name (``htu``)."""

    def __init__(self, issuer: FakeIssuer, url: str, htu: str, http: httpx.Client) -> None:
        self.issuer, self.url, self.htu, self.http = issuer, url, htu, http

    def get(self, headers: Any, path: str = "/read") -> httpx.Response:
        return self.http.get(f"{self.url}{path}", headers=headers)


@contextlib.contextmanager
def running(adapter: str, settings: DPoPSettings | None) -> Iterator[Server]:
    issuer = FakeIssuer()
    if adapter == "asgi" and settings is not None:
        settings = dataclasses.replace(settings, public_url=PUBLIC_URL)
    app = fastapi_app(issuer, settings) if adapter == "fastapi" else asgi_app(issuer, settings)
    with serve(app) as url, httpx.Client(timeout=10) as http:
        yield Server(issuer, url, f"{url}/read" if adapter == "fastapi" else f"{PUBLIC_URL}/read", http)


@pytest.fixture(scope="module", params=["fastapi", "asgi"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with running(request.param, DPoPSettings()) as started:
        yield started


@pytest.mark.parametrize("maker", ["create_proof", "joserfc Ed25519", "joserfc ES256"])
def test_a_bound_token_with_a_valid_proof_is_accepted(server: Server, maker: str) -> None:
    if maker == "create_proof":
        pair = KeyPair.generate()
        token, claims = bound_token(server.issuer, pair.public.thumbprint())
        proof = create_proof(pair, "GET", server.htu, access_token=token)
    else:
        key = OKPKey.generate_key("Ed25519") if maker.endswith("Ed25519") else ECKey.generate_key("P-256")
        token, claims = bound_token(server.issuer, key.thumbprint())
        proof = joserfc_proof(key, "GET", server.htu, token)
    response = server.get(dpop_headers(token, proof))
    assert response.status_code == 200, response.headers.get("www-authenticate")
    assert response.json() == {"sub": claims["sub"]}
    assert "dpop-nonce" not in response.headers  # no nonces required here


def test_the_first_request_of_a_cold_online_verifier_passes_its_proof_once() -> None:
    # The online verifier fetches the status list after the core has checked (and recorded) the proof, then runs
    # the core again: its own proof must not count as replayed the second time - but a real replay still does.
    with running("fastapi", DPoPSettings()) as cold:
        key = OKPKey.generate_key("Ed25519")
        token, _ = bound_token(cold.issuer, key.thumbprint())
        proof = joserfc_proof(key, "GET", cold.htu, token)
        assert cold.issuer.requests[LIST_URL] == 0
        first = cold.get(dpop_headers(token, proof))
        assert first.status_code == 200, first.headers.get("www-authenticate")
        assert cold.issuer.requests[LIST_URL] == 1
        again = cold.get(dpop_headers(token, proof))
        assert again.status_code == 401
        assert again.headers["www-authenticate"] == dpop_refusal("invalid_dpop_proof", INVALID_PROOF_DESCRIPTION)


def test_refusals_carry_the_rfc_9449_challenges(server: Server) -> None:
    key = OKPKey.generate_key("Ed25519")
    token, _ = bound_token(server.issuer, key.thumbprint())
    other_token, _ = bound_token(server.issuer, key.thumbprint())
    invalid_proof = dpop_refusal("invalid_dpop_proof", INVALID_PROOF_DESCRIPTION)
    invalid_token = dpop_refusal("invalid_token", INVALID_TOKEN_DESCRIPTION)

    def proof(method: str = "GET", uri: str = server.htu, of: str = token, iat: float | None = None) -> str:
        return joserfc_proof(key, method, uri, of, iat=iat)

    used = proof()
    assert server.get(dpop_headers(token, used)).status_code == 200
    cases: dict[str, tuple[Any, str]] = {
        "no proof": (dpop_headers(token), invalid_proof),
        "two DPoP headers": (dpop_headers(token, proof(), proof()), invalid_proof),
        "proof replayed": (dpop_headers(token, used), invalid_proof),
        "wrong htu": (dpop_headers(token, proof(uri=server.htu.replace("/read", "/other"))), invalid_proof),
        "wrong htm": (dpop_headers(token, proof(method="POST")), invalid_proof),
        "wrong ath": (dpop_headers(token, proof(of=other_token)), invalid_proof),
        "expired iat": (dpop_headers(token, proof(iat=time.time() - 300)), invalid_proof),
        "proof by another key": (
            dpop_headers(token, joserfc_proof(OKPKey.generate_key("Ed25519"), "GET", server.htu, token)),
            invalid_token,
        ),
        # Section 7.2: a bound token is not a bearer token (the downgrade DPoP -> Bearer is refused).
        "bound token as Bearer": (
            {"Authorization": f"Bearer {token}", "DPoP": proof()},
            f'Bearer realm="agentauth", error="invalid_token", error_description="{INVALID_TOKEN_DESCRIPTION}", '
            f'DPoP realm="agentauth", {ALGS}',
        ),
        "garbage token with a proof": (dpop_headers("not.a.token", proof(of="not.a.token")), invalid_token),
        # Section 7.1 allows several challenges: a server accepting both schemes offers both.
        "no credentials": ({}, BOTH),
    }
    for case, (headers, challenge) in cases.items():
        response = server.get(headers)
        assert response.status_code == 401, case
        assert response.headers["www-authenticate"] == challenge, case
        assert response.headers["cache-control"] == "no-store", case
        error = challenge.split('error="', 1)[1].split('"', 1)[0] if "error=" in challenge else "invalid_token"
        assert response.json()["error"] == error, case
        assert "dpop-nonce" not in response.headers, case


def test_an_unbound_token_works_as_bearer_but_not_with_a_proof(server: Server) -> None:
    token, claims = server.issuer.token(("api.read",))
    ok = server.get({"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json() == {"sub": claims["sub"]}
    # An unbound token sent as DPoP: its proof binds nothing (RFC 9449 section 7.1 checks the token's cnf.jkt).
    proof = create_proof(KeyPair.generate(), "GET", server.htu, access_token=token)
    refused = server.get(dpop_headers(token, proof))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == dpop_refusal("invalid_token", INVALID_TOKEN_DESCRIPTION)


def test_a_bound_token_without_the_scope_is_403_in_the_dpop_challenge(server: Server) -> None:
    pair = KeyPair.generate()
    token, _ = bound_token(server.issuer, pair.public.thumbprint(), scopes=("agents.read",))
    response = server.get(dpop_headers(token, create_proof(pair, "GET", server.htu, access_token=token)))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        f'DPoP realm="agentauth", error="insufficient_scope", '
        f'error_description="this request needs the scope api.read", scope="api.read", {ALGS}'
    )
    assert response.json()["error"] == "insufficient_scope"


@pytest.mark.parametrize("adapter", ["fastapi", "asgi"])
def test_nonces_required_first_call_gets_one_and_the_retry_with_it_passes(adapter: str) -> None:
    nonces = DPoPNonces(os.urandom(32))
    with running(adapter, DPoPSettings(nonces=nonces)) as server:
        pair = KeyPair.generate()
        token, claims = bound_token(server.issuer, pair.public.thumbprint())
        first = server.get(dpop_headers(token, create_proof(pair, "GET", server.htu, access_token=token)))
        assert first.status_code == 401
        assert first.headers["www-authenticate"] == dpop_refusal("use_dpop_nonce", USE_NONCE_DESCRIPTION)
        assert first.json() == {"error": "use_dpop_nonce", "error_description": USE_NONCE_DESCRIPTION}
        nonce = first.headers["dpop-nonce"]
        assert nonces.accepts(nonce, time.time())

        wrong = create_proof(pair, "GET", server.htu, access_token=token, nonce="made-up")
        refused = server.get(dpop_headers(token, wrong))
        assert refused.status_code == 401 and 'error="use_dpop_nonce"' in refused.headers["www-authenticate"]

        retry = server.get(dpop_headers(token, create_proof(pair, "GET", server.htu, access_token=token, nonce=nonce)))
        assert retry.status_code == 200, retry.headers.get("www-authenticate")
        assert retry.json() == {"sub": claims["sub"]}
        assert nonces.accepts(retry.headers["dpop-nonce"], time.time())  # section 8.2: kept current

        # The nonce is for DPoP proofs: an unbound bearer token needs none.
        bearer, _ = server.issuer.token(("api.read",))
        assert server.get({"Authorization": f"Bearer {bearer}"}).status_code == 200


@pytest.mark.parametrize("adapter", ["fastapi", "asgi"])
def test_require_dpop_refuses_bearer_tokens(adapter: str) -> None:
    with running(adapter, DPoPSettings(require_dpop=True)) as server:
        token, _ = server.issuer.token(("api.read",))
        bearer = server.get({"Authorization": f"Bearer {token}"})
        assert bearer.status_code == 401
        assert bearer.headers["www-authenticate"] == dpop_refusal("invalid_token", DPOP_ONLY_DESCRIPTION)
        anonymous = server.get({})
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == f'DPoP realm="agentauth", {ALGS}'  # no Bearer challenge
        key = ECKey.generate_key("P-256")
        bound, claims = bound_token(server.issuer, key.thumbprint())
        ok = server.get(dpop_headers(bound, joserfc_proof(key, "GET", server.htu, bound)))
        assert ok.status_code == 200 and ok.json() == {"sub": claims["sub"]}


@pytest.mark.parametrize("adapter", ["fastapi", "asgi"])
def test_require_agent_key_accepts_only_tokens_bound_to_the_holders_did_key(adapter: str) -> None:
    """What AgentAuth issues with ``bind_to_agent_key``: ``cnf.jkt`` is the thumbprint of ``sub``'s did:key (of
    ``act.sub``'s for a delegated token), so the verifier - holding only the issuer's keys - checks identity and
    possession with one key; a token bound to any other key, with a valid proof by that key, is refused."""
    with running(adapter, DPoPSettings(require_agent_key=True)) as server:
        agent = KeyPair.generate()
        did = encode_did_key(agent.public.raw)
        own, _ = bound_token(server.issuer, agent.public.thumbprint(), subject_did=did)
        accepted = server.get(dpop_headers(own, create_proof(agent, "GET", server.htu, access_token=own)))
        assert accepted.status_code == 200 and accepted.json() == {"sub": did}

        other = KeyPair.generate()
        foreign, _ = bound_token(server.issuer, other.public.thumbprint(), subject_did=did)
        refused = server.get(dpop_headers(foreign, create_proof(other, "GET", server.htu, access_token=foreign)))
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == dpop_refusal("invalid_token", AGENT_KEY_DESCRIPTION)

        # A delegated token's holder is the acting delegate (act.sub, the current actor outermost), not the subject.
        delegate = encode_did_key(other.public.raw)
        lent = {"sub": did, "act": {"sub": delegate, "act": {"sub": "did:key:z6Mkearlier"}},
                "cnf": {"jkt": other.public.thumbprint()}}  # fmt: skip
        assert VerifiedToken(lent, "kid").holder == delegate and VerifiedToken(lent, "kid").bound_to_holder_key
        assert not VerifiedToken(lent | {"cnf": {"jkt": agent.public.thumbprint()}}, "kid").bound_to_holder_key
        assert not VerifiedToken({"sub": "did:web:example.com", "cnf": {"jkt": "x"}}, "kid").bound_to_holder_key

        # It implies require_dpop: bearer tokens are refused, and only the DPoP challenge is offered.
        unbound, _ = server.issuer.token(("api.read",))
        bearer = server.get({"Authorization": f"Bearer {unbound}"})
        assert bearer.status_code == 401
        assert bearer.headers["www-authenticate"] == dpop_refusal("invalid_token", DPOP_ONLY_DESCRIPTION)


@pytest.mark.parametrize("adapter", ["fastapi", "asgi"])
def test_without_dpop_settings_only_bearer_tokens_are_accepted(adapter: str) -> None:
    with running(adapter, None) as server:
        pair = KeyPair.generate()
        token, _ = bound_token(server.issuer, pair.public.thumbprint())
        proof = create_proof(pair, "GET", server.htu, access_token=token)
        refused = server.get(dpop_headers(token, proof))
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="agentauth"'
        as_bearer = server.get({"Authorization": f"Bearer {token}", "DPoP": proof})
        assert as_bearer.status_code == 401
        assert as_bearer.headers["www-authenticate"] == (
            f'Bearer realm="agentauth", error="invalid_token", error_description="{INVALID_TOKEN_DESCRIPTION}"'
        )
        unbound, _ = server.issuer.token(("api.read",))
        assert server.get({"Authorization": f"Bearer {unbound}"}).status_code == 200
