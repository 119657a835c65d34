"""``agentauth.sdk.DPoPAuth`` (RFC 9449, the agent's side) with ``httpx.Client`` and ``httpx.AsyncClient`` against a
real ``agentauth serve`` on 127.0.0.1: the token request carries a proof signed by the agent's own did:key and
gets a DPoP-bound token; AgentAuth's own API takes it with ``Authorization: DPoP`` and a proof with ``ath``. Against
a server started with ``AGENTAUTH_DPOP_NONCE_REQUIRED=true`` the token request (400 ``use_dpop_nonce``, section 8)
and an API call (401 ``DPoP error="use_dpop_nonce"``, section 9) each pass after exactly one retry, whose proof
carries the nonce the refusal brought. Every request is seen by an httpx event hook: what was sent, how often.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentauth.keys import KeyPair, b64url_decode
from agentauth.sdk import DPoPAuth
from agentauth.vc.dpop import access_token_hash
from live_server import LiveServer, free_ports, issuer_env, spawn

TOKEN_PATH = "/api/v1/auth/token"


def start(tmp: Path, **settings: str) -> LiveServer:
    (port,) = free_ports(1)
    return spawn(issuer_env(tmp / "data", port) | settings, port, tmp / "issuer.log", log_level="warning")


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start(tmp_path_factory.mktemp("dpop-client"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nonce_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start(tmp_path_factory.mktemp("dpop-client-nonce"), AGENTAUTH_DPOP_NONCE_REQUIRED="true")
    yield server
    server.stop()


@dataclass
class Seen:
    """Every request a client sent (after ``DPoPAuth`` added its headers) and every response it got."""

    requests: list[httpx.Request] = field(default_factory=list)
    responses: list[httpx.Response] = field(default_factory=list)

    def _request(self, request: httpx.Request) -> None:
        # A copy: the retry is the same request object, its headers replaced.
        self.requests.append(snapshot(request))

    def hooks(self) -> dict[str, list[Any]]:
        return {"request": [self._request], "response": [self.responses.append]}

    async def _arequest(self, request: httpx.Request) -> None:
        self._request(request)

    async def _aresponse(self, response: httpx.Response) -> None:
        self.responses.append(response)

    def async_hooks(self) -> dict[str, list[Any]]:
        return {"request": [self._arequest], "response": [self._aresponse]}

    def take(self) -> list[tuple[httpx.Request, httpx.Response]]:
        """The exchanges since the last ``take``."""
        pairs = list(zip(self.requests, self.responses, strict=True))
        self.requests.clear()
        self.responses.clear()
        return pairs


def snapshot(request: httpx.Request) -> httpx.Request:
    return httpx.Request(request.method, request.url, headers=request.headers.multi_items(), content=request.content)


def quickstart(issuer: LiveServer) -> dict[str, Any]:
    response = httpx.post(f"{issuer.url}/api/v1/agents/quickstart", json={"name": "dpop client", "agent_type": "tool"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def token_form(agent: dict[str, Any]) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_secret": agent["api_key"], "scope": "agents.read"}


def jwt_part(token: str, index: int) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(b64url_decode(token.split(".")[index], canonical=False))
    return value


def proof_of(request: httpx.Request, key: KeyPair, token: str | None) -> dict[str, Any]:
    """The claims of the request's one proof, after checking it names this request, this key and this token."""
    proofs = request.headers.get_list("DPoP")
    assert len(proofs) == 1, proofs
    header, claims = jwt_part(proofs[0], 0), jwt_part(proofs[0], 1)
    assert header == {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": key.public.jwk()}
    assert claims["htm"] == request.method
    assert claims["htu"] == str(request.url.copy_with(query=None, fragment=None))
    if token is None:
        assert "ath" not in claims and "authorization" not in request.headers
    else:
        assert claims["ath"] == access_token_hash(token)
        assert request.headers["authorization"] == f"DPoP {token}"
    return claims


def assert_bound(body: dict[str, Any], key: KeyPair) -> str:
    assert body["token_type"] == "DPoP", body
    token: str = body["access_token"]
    assert jwt_part(token, 1)["cnf"] == {"jkt": key.public.thumbprint()}
    return token


def test_sync_client_gets_a_bound_token_and_calls_the_own_api(issuer: LiveServer) -> None:
    agent = quickstart(issuer)
    key = KeyPair.from_jwk(agent["private_key_jwk"])
    auth, seen = DPoPAuth(key), Seen()
    with httpx.Client(base_url=issuer.url, auth=auth, event_hooks=seen.hooks()) as http:
        issued = http.post(TOKEN_PATH, data=token_form(agent))
        assert issued.status_code == 200, issued.text
        token = assert_bound(issued.json(), key)
        ((request, _),) = seen.take()  # no nonce required: one request, no retry
        assert "nonce" not in proof_of(request, key, None)

        auth.token = token
        own = http.get(f"/api/v1/agents/{agent['agent']['id']}", params={"ignored": "query"})
        assert own.status_code == 200, own.text
        assert own.json()["id"] == agent["agent"]["id"]
        ((request, _),) = seen.take()
        claims = proof_of(request, key, token)
        assert "nonce" not in claims and "?" not in claims["htu"]

    # The bound token is worth nothing as a bearer token (section 7.1).
    as_bearer = httpx.get(
        f"{issuer.url}/api/v1/agents/{agent['agent']['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert as_bearer.status_code == 401, as_bearer.text


@pytest.mark.anyio
async def test_async_client_gets_a_bound_token_and_calls_the_own_api(issuer: LiveServer) -> None:
    agent = quickstart(issuer)
    key = KeyPair.from_jwk(agent["private_key_jwk"])
    auth, seen = DPoPAuth(key), Seen()
    async with httpx.AsyncClient(base_url=issuer.url, event_hooks=seen.async_hooks()) as http:
        issued = await http.post(TOKEN_PATH, data=token_form(agent), auth=auth)
        assert issued.status_code == 200, issued.text
        token = assert_bound(issued.json(), key)
        ((request, _),) = seen.take()
        proof_of(request, key, None)

        own = await http.get(f"/api/v1/agents/{agent['agent']['id']}", auth=auth.with_token(token))
        assert own.status_code == 200, own.text
        assert own.json()["id"] == agent["agent"]["id"]
        ((request, _),) = seen.take()
        proof_of(request, key, token)


def nonce_flow_checks(
    exchanges: list[tuple[httpx.Request, httpx.Response]], key: KeyPair, token: str | None, status: int
) -> str:
    """A request refused for want of a nonce (``status``) and its one retry, which passes: the first proof has no
    nonce, the retry's has the refusal's ``DPoP-Nonce``, and the two are distinct proofs. The nonce, returned."""
    assert [response.status_code for _, response in exchanges] == [status, 200], [r.text for _, r in exchanges]
    (first, refused), (retry, _) = exchanges
    if status == 400:
        assert refused.json()["error"] == "use_dpop_nonce"
    else:
        assert 'DPoP realm="agentauth", error="use_dpop_nonce"' in refused.headers["www-authenticate"]
    nonce = refused.headers["dpop-nonce"]
    before, after = proof_of(first, key, token), proof_of(retry, key, token)
    assert "nonce" not in before and after["nonce"] == nonce
    assert before["jti"] != after["jti"]
    assert retry.content == first.content  # the body sent again, as it was
    return nonce


def test_sync_client_retries_each_nonce_challenge_once(nonce_issuer: LiveServer, issuer: LiveServer) -> None:
    agent = quickstart(nonce_issuer)
    key = KeyPair.from_jwk(agent["private_key_jwk"])
    auth, seen = DPoPAuth(key), Seen()
    agent_url = f"/api/v1/agents/{agent['agent']['id']}"
    with httpx.Client(base_url=nonce_issuer.url, event_hooks=seen.hooks()) as http:
        issued = http.post(TOKEN_PATH, data=token_form(agent), auth=auth)
        assert issued.status_code == 200, issued.text
        token = assert_bound(issued.json(), key)
        exchanges = seen.take()
        nonce_flow_checks(exchanges, key, None, 400)
        # Section 8.2: the token response hands out the next nonce; it is what the next proof here carries.
        latest = issued.headers["dpop-nonce"]
        assert auth.nonce(nonce_issuer.url + agent_url) == latest
        assert auth.nonce(issuer.url) is None  # nonces are per origin

        # The same server's own API: the remembered nonce passes at once.
        own = http.get(agent_url, auth=auth.with_token(token))
        assert own.status_code == 200, own.text
        ((request, _),) = seen.take()
        assert proof_of(request, key, token)["nonce"] == latest

        # A client that has no nonce yet: 401 use_dpop_nonce, then one retry with the nonce.
        fresh = http.get(agent_url, auth=DPoPAuth(key, token))
        assert fresh.status_code == 200 and fresh.json()["id"] == agent["agent"]["id"], fresh.text
        nonce_flow_checks(seen.take(), key, token, 401)


@pytest.mark.anyio
async def test_async_client_retries_each_nonce_challenge_once(nonce_issuer: LiveServer) -> None:
    agent = quickstart(nonce_issuer)
    key = KeyPair.from_jwk(agent["private_key_jwk"])
    seen = Seen()
    agent_url = f"/api/v1/agents/{agent['agent']['id']}"
    async with httpx.AsyncClient(base_url=nonce_issuer.url, event_hooks=seen.async_hooks()) as http:
        issued = await http.post(TOKEN_PATH, data=token_form(agent), auth=DPoPAuth(key))
        assert issued.status_code == 200, issued.text
        token = assert_bound(issued.json(), key)
        nonce_flow_checks(seen.take(), key, None, 400)

        own = await http.get(agent_url, auth=DPoPAuth(key, token))
        assert own.status_code == 200 and own.json()["id"] == agent["agent"]["id"], own.text
        nonce_flow_checks(seen.take(), key, token, 401)


def test_proofs_are_never_reused(nonce_issuer: LiveServer) -> None:
    agent = quickstart(nonce_issuer)
    key = KeyPair.from_jwk(agent["private_key_jwk"])
    auth, seen = DPoPAuth(key), Seen()
    with httpx.Client(base_url=nonce_issuer.url, auth=auth, event_hooks=seen.hooks()) as http:
        auth.token = assert_bound(http.post(TOKEN_PATH, data=token_form(agent)).json(), key)
        for _ in range(5):
            assert http.get(f"/api/v1/agents/{agent['agent']['id']}").status_code == 200
    proofs = [request.headers["DPoP"] for request in seen.requests]
    assert len(proofs) == 7  # the token request and its retry, five calls
    assert len({jwt_part(proof, 1)["jti"] for proof in proofs}) == len(proofs)


def test_a_second_nonce_refusal_is_returned_not_retried_again() -> None:
    """A server that refuses the retry too: the client gives up after one retry and returns that answer. (An
    httpx mock transport: a real AgentAuth accepts a retry with its own nonce.)"""
    sent: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        sent.append(snapshot(request))
        challenge = 'DPoP realm="x", error="use_dpop_nonce", error_description="nonce", algs="EdDSA"'
        headers = {"WWW-Authenticate": challenge, "DPoP-Nonce": f"n{len(sent)}"}
        return httpx.Response(401, headers=headers)

    key = KeyPair.generate()
    with httpx.Client(transport=httpx.MockTransport(refuse), auth=DPoPAuth(key, "tok")) as http:
        answer = http.post("https://rs.example/items", content=b"body")
    assert answer.status_code == 401 and answer.headers["dpop-nonce"] == "n2"
    assert len(sent) == 2
    assert [jwt_part(r.headers["DPoP"], 1).get("nonce") for r in sent] == [None, "n1"]
    assert all(r.content == b"body" for r in sent)
