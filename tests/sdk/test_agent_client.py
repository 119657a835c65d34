"""The agent client SDK (``agentauth.sdk.agent``) against a live `agentauth serve`: the refresh schedule, single
flight, falling back from a refused refresh token, every way to authenticate, httpx and requests auth renewing a
refused token, resource-bound tokens, token exchange, DPoP, presentations, and its errors.

The client's clock is a real one that a test may move forward (``Clock``): what the client believes about its
tokens moves, the server's does not. (The 3-lifetimes run, in real time, is test_agent_client_run.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from agentauth.sdk import (
    AgentClient,
    AgentClientError,
    AsyncAgentClient,
    OnlineVerifier,
    TokenError,
)
from agentauth.sdk.credentials import Credentials, load
from agentauth.vc.jws import parse_compact
from live_server import LiveServer, free_port, start_issuer

RESOURCE = "https://reports.example.test"


class Clock:
    """The wall clock, plus however far a test has moved it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_issuer(tmp_path_factory.mktemp("agent-client"))
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def agent(issuer: LiveServer, tmp_path: Path, clock: Clock) -> Iterator[AgentClient]:
    client = AgentClient.quickstart(issuer.url, "sdk agent", credentials_file=tmp_path / "agent.json", clock=clock)
    yield client
    client.close()


def claims(token: str) -> dict[str, Any]:
    return parse_compact(token).payload


def me(issuer: LiveServer, agent: AgentClient | AsyncAgentClient) -> str:
    return f"{issuer.url}/api/v1/agents/{agent.agent_id}"


def stored_refresh_token(path: Path) -> str:
    refresh = load(path).refresh_token
    assert refresh is not None
    return refresh


def spend(issuer: LiveServer, refresh_token: str) -> None:
    """Use a refresh token behind the client's back (a copy of it leaked and was used)."""
    response = httpx.post(
        f"{issuer.url}/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )
    assert response.status_code == 200, response.text


# -- the refresh schedule ---------------------------------------------------------------------------------


def test_refresh_happens_at_refresh_before_and_rotates_the_file(
    agent: AgentClient, clock: Clock, tmp_path: Path
) -> None:
    file = tmp_path / "agent.json"
    first = agent.token()
    assert first.grant == "quickstart" and agent.token_requests == {}  # quickstart's own pair, no request
    # refresh_before is 80 % into the lifetime (900 s): the client holds on until then, measured on its clock.
    assert first.refresh_at - first.received_at == pytest.approx(720, abs=2)
    assert first.expires_at - first.received_at == pytest.approx(900, abs=2)

    clock.offset = first.refresh_at - time.time() - 5
    assert agent.token() is first and agent.token_requests == {}

    before = stored_refresh_token(file)
    clock.offset = first.refresh_at - time.time() + 1
    renewed = agent.token()
    assert renewed.grant == "refresh_token" and agent.token_requests == {"refresh_token": 1}
    assert renewed.access_token != first.access_token
    # Rotation written back: the file holds the new refresh token (0600, replaced whole), not the spent one.
    after = stored_refresh_token(file)
    assert after != before and after == agent.credentials.refresh_token == renewed.refresh_token
    assert stat.S_IMODE(os.stat(file).st_mode) == 0o600
    assert agent.token() is renewed  # not due again until its own refresh_before
    assert httpx.get(me_url(agent), headers={"Authorization": f"Bearer {renewed.access_token}"}).status_code == 200


def me_url(agent: AgentClient) -> str:
    return f"{agent.issuer}/api/v1/agents/{agent.agent_id}"


def test_a_narrower_default_token_starts_a_family_of_its_own(issuer: LiveServer, tmp_path: Path) -> None:
    """quickstart's pair has every scope; a client whose default token is narrower does not refresh that one
    (its family would not narrow to the request's resources) but authenticates, and the file follows it."""
    file = tmp_path / "narrow.json"
    client = AgentClient.quickstart(issuer.url, "narrow", credentials_file=file, scope="agents.read")
    token = client.token()
    assert client.token_requests == {"api_key": 1} and token.scope == "agents.read"
    assert stored_refresh_token(file) == token.refresh_token
    client.close()


def test_a_skewed_client_clock_does_not_shift_the_schedule(issuer: LiveServer, tmp_path: Path) -> None:
    """refresh_before is the server's time; the client applies how long before expiry it lies to its own."""
    skewed = Clock()
    skewed.offset = -3600.0  # an hour slow
    client = AgentClient.quickstart(issuer.url, "slow clock", credentials_file=tmp_path / "a.json", clock=skewed)
    token = client.token()
    assert token.refresh_at - token.received_at == pytest.approx(720, abs=2)
    client.close()


def test_concurrent_callers_share_one_refresh(agent: AgentClient, clock: Clock) -> None:
    clock.offset = agent.token().refresh_at - time.time() + 1
    start = threading.Barrier(16)
    seen: list[str] = []

    def call() -> None:
        start.wait()
        seen.append(agent.token().access_token)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # One refresh for all of them (a second use of the rotated token would have revoked the family).
    assert agent.token_requests == {"refresh_token": 1}
    assert len(seen) == 16 and len(set(seen)) == 1


@pytest.mark.anyio
async def test_concurrent_tasks_share_one_refresh(issuer: LiveServer, tmp_path: Path, clock: Clock) -> None:
    file = tmp_path / "async.json"
    async with await AsyncAgentClient.quickstart(issuer.url, "async", credentials_file=file, clock=clock) as agent:
        clock.offset = (await agent.token()).refresh_at - time.time() + 1
        tokens = await asyncio.gather(*(agent.token() for _ in range(16)))
        assert agent.token_requests == {"refresh_token": 1}
        assert len({token.access_token for token in tokens}) == 1
        assert stored_refresh_token(file) == tokens[0].refresh_token
        async with httpx.AsyncClient(auth=agent.auth()) as http:
            assert (await http.get(me(issuer, agent))).status_code == 200


# -- falling back ----------------------------------------------------------------------------------------


def test_a_refused_refresh_falls_back_to_the_api_key(
    issuer: LiveServer, agent: AgentClient, clock: Clock, tmp_path: Path
) -> None:
    spent = stored_refresh_token(tmp_path / "agent.json")
    spend(issuer, spent)  # the client's refresh token is used up elsewhere
    clock.offset = agent.token().refresh_at - time.time() + 1
    token = agent.token()
    # Refused (a reused token revokes its family), then the API key; the new family's token goes to the file.
    assert agent.token_requests == {"refresh_token": 1, "api_key": 1}
    assert token.grant == "api_key"
    assert stored_refresh_token(tmp_path / "agent.json") == token.refresh_token != spent
    assert httpx.get(me_url(agent), headers={"Authorization": f"Bearer {token.access_token}"}).status_code == 200


def test_a_refused_refresh_without_another_credential_is_a_clear_error(issuer: LiveServer, tmp_path: Path) -> None:
    registered = AgentClient.quickstart(issuer.url, "refresh only")
    refresh = registered.credentials.refresh_token
    assert refresh is not None
    registered.close()
    spend(issuer, refresh)
    client = AgentClient(Credentials(agent_id=registered.agent_id, issuer=issuer.url, refresh_token=refresh))
    with pytest.raises(TokenError) as refused:
        client.token()
    assert refused.value.error == "invalid_grant" and refused.value.status_code == 400
    assert refused.value.grant == "refresh_token" and not refused.value.transient
    assert refresh not in str(refused.value) + repr(refused.value)
    client.close()


def test_a_transient_failure_keeps_the_valid_token_until_it_expires(
    issuer: LiveServer, agent: AgentClient, clock: Clock
) -> None:
    held = agent.token()
    down = f"http://127.0.0.1:{free_port()}/api/v1/auth/token"  # nothing listens there
    client = AgentClient(agent.credentials, clock=clock, token_endpoint=down)
    client._core.tokens[client._core.default] = held  # the same agent, restarted with the token it held
    clock.offset = held.refresh_at - time.time() + 1
    assert client.token() is held  # due, the issuer unreachable: the token still works, so it is kept
    clock.offset = held.expires_at - time.time()
    with pytest.raises(httpx.ConnectError):
        client.token()
    client.close()


# -- ways to authenticate --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["private_key_jwt", "jwt_bearer"])
def test_the_did_key_authenticates_with_a_fresh_assertion_each_time(
    issuer: LiveServer, agent: AgentClient, method: str
) -> None:
    jwk = agent.credentials.private_key_jwk
    assert jwk is not None
    client = AgentClient.from_key(issuer.url, agent.agent_id, jwk, method=method)
    read, write = client.token(scope="agents.read"), client.token(scope="agents.write")
    # Two assertions, both accepted: each has its own jti (the issuer takes one only once).
    assert client.token_requests == {method: 2}
    assert read.scope == "agents.read" and write.scope == "agents.write"
    assert claims(read.access_token)["sub"] == agent.did
    with httpx.Client(auth=client.auth(scope="agents.read")) as http:
        assert http.get(me(issuer, agent)).status_code == 200
    client.close()


def test_an_api_key_alone_is_enough(issuer: LiveServer, agent: AgentClient) -> None:
    api_key = agent.credentials.api_key
    assert api_key is not None
    client = AgentClient.from_api_key(issuer.url, api_key)
    assert client.token().grant == "api_key"
    assert client.agent_id == agent.agent_id  # learnt from the token
    client.close()


# -- auth objects renew a refused token -------------------------------------------------------------------


def revoke(issuer: LiveServer, token: str, api_key: str) -> None:
    revoked = httpx.post(f"{issuer.url}/api/v1/auth/revoke", data={"token": token, "client_secret": api_key})
    assert revoked.status_code == 200


def test_httpx_auth_renews_once_on_invalid_token(issuer: LiveServer, agent: AgentClient) -> None:
    assert agent.credentials.api_key is not None
    old = agent.token().access_token
    revoke(issuer, old, agent.credentials.api_key)
    with httpx.Client(auth=agent.auth()) as http:
        response = http.get(me(issuer, agent))
    assert response.status_code == 200
    assert response.request.headers["Authorization"] != f"Bearer {old}"
    # Revoking the access token revoked its refresh family too: the refresh is refused, the API key answers.
    assert agent.token_requests == {"refresh_token": 1, "api_key": 1}


def test_requests_auth_attaches_and_renews(issuer: LiveServer, agent: AgentClient) -> None:
    assert agent.credentials.api_key is not None
    with requests.Session() as session:
        session.auth = agent.requests_auth()
        assert session.get(me(issuer, agent), timeout=10).status_code == 200
        old = agent.token().access_token
        revoke(issuer, old, agent.credentials.api_key)
        response = session.get(me(issuer, agent), timeout=10)
    assert response.status_code == 200
    assert [answer.status_code for answer in response.history] == [401]  # refused once, then the new token
    assert response.request.headers["Authorization"] == f"Bearer {agent.token().access_token}" != f"Bearer {old}"


def test_a_second_refusal_is_returned_not_retried_forever(issuer: LiveServer, agent: AgentClient) -> None:
    """An agent deactivated meanwhile: renewal fails, and that failure is the caller's answer."""
    deactivated = httpx.delete(me(issuer, agent), headers={"Authorization": f"Bearer {agent.token().access_token}"})
    assert deactivated.status_code in (200, 204), deactivated.text
    with httpx.Client(auth=agent.auth()) as http, pytest.raises(TokenError) as refused:
        http.get(me(issuer, agent))
    assert refused.value.error in ("invalid_grant", "invalid_client")


# -- resource-bound tokens, delegation, DPoP, presentations ------------------------------------------------


def test_tokens_per_resource(issuer: LiveServer, agent: AgentClient) -> None:
    server = {"identifier": RESOURCE, "name": "reports", "kind": "rest", "scopes": [{"name": "reports.read"}]}
    with httpx.Client(auth=agent.auth()) as http:
        assert http.post(f"{issuer.url}/api/v1/resource-servers", json=server).status_code == 201
    bound = agent.token(scope="reports.read", resource=RESOURCE)
    # RFC 8707: the token names that server in aud; the default token stays AgentAuth's own.
    assert claims(bound.access_token)["aud"] in (RESOURCE, [RESOURCE])
    assert claims(agent.token().access_token)["aud"] != claims(bound.access_token)["aud"]
    assert agent.token(scope="reports.read", resource=RESOURCE) is bound  # held per (scope, resource)
    with pytest.raises(TokenError) as refused:
        agent.token(resource="https://unknown.example.test")
    assert refused.value.error == "invalid_target"


def test_token_exchange_under_a_delegation(issuer: LiveServer, agent: AgentClient, tmp_path: Path) -> None:
    helper = AgentClient.quickstart(issuer.url, "helper", credentials_file=tmp_path / "helper.json")
    delegated = httpx.post(
        f"{issuer.url}/api/v1/delegations",
        json={"delegate_agent_id": helper.agent_id, "scopes": ["agents.read"]},
        headers={"Authorization": f"Bearer {agent.token().access_token}"},
    )
    assert delegated.status_code == 201, delegated.text
    delegation = delegated.json()["credential"]
    token = helper.exchange(delegation)
    acting = claims(token.access_token)
    assert token.grant == "token_exchange" and token.scope == "agents.read"
    assert acting["sub"] == agent.did and acting["act"]["sub"] == helper.did  # RFC 8693 section 4.1
    with httpx.Client(auth=helper.auth(delegation=delegation)) as http:
        assert http.get(me(issuer, agent)).status_code == 200  # reads the delegator under the delegation
    assert "token_exchange" in helper.token_requests
    helper.close()


def test_dpop_binds_every_token_to_the_agent_key(issuer: LiveServer, agent: AgentClient, clock: Clock) -> None:
    client = AgentClient(agent.credentials, dpop=True, clock=clock)
    assert client.key is not None
    token = client.token()
    assert token.token_type == "DPoP" and claims(token.access_token)["cnf"]["jkt"] == client.key.public.thumbprint()
    with httpx.Client(auth=client.auth()) as http:
        response = http.get(me(issuer, agent))
        assert response.status_code == 200 and response.request.headers["DPoP"]
        # The bound family refreshes only with a proof by the key - the client sends one.
        clock.offset = token.refresh_at - time.time() + 1
        assert http.get(me(issuer, agent)).status_code == 200
    assert client.token_requests == {"refresh_token": 2} and client.token().token_type == "DPoP"
    # Without its proof, the bound token is refused.
    stolen = httpx.get(me(issuer, agent), headers={"Authorization": f"Bearer {client.token().access_token}"})
    assert stolen.status_code == 401
    with requests.Session() as session:  # requests sends the proof too
        assert session.get(me(issuer, agent), auth=client.requests_auth(), timeout=10).status_code == 200
    client.close()


def test_a_presentation_of_the_identity_credential(issuer: LiveServer, agent: AgentClient) -> None:
    presentation = agent.present(audience="https://verifier.example.test", nonce="n-1234")
    with OnlineVerifier(issuer.url) as verifier:
        verified = verifier.verify_presentation(presentation, audience="https://verifier.example.test", nonce="n-1234")
    assert verified.holder == agent.did
    assert verified.credentials[0]["sub"] == agent.did


# -- errors and what they show ----------------------------------------------------------------------------


def test_refusals_carry_the_rfc_error_code_and_no_secret(issuer: LiveServer, agent: AgentClient) -> None:
    wrong = AgentClient.from_api_key(issuer.url, "ak_live_" + "x" * 43)
    with pytest.raises(TokenError) as refused:
        wrong.token()
    assert refused.value.error == "invalid_client" and refused.value.status_code == 401
    assert "x" * 43 not in str(refused.value) + repr(refused.value)
    wrong.close()
    with pytest.raises(TokenError) as narrow:
        agent.token(scope="no.such.scope")
    assert narrow.value.error == "invalid_scope"

    token = agent.token()
    secrets = [agent.credentials.api_key, agent.credentials.refresh_token, token.access_token]
    shown = " ".join(repr(value) for value in (agent, token, agent.auth(), agent.credentials, agent.requests_auth()))
    for secret in secrets:
        assert secret is not None and secret not in shown
    assert json.dumps(agent.credentials.private_key_jwk) not in shown


def test_a_method_without_its_credential_is_refused_up_front(issuer: LiveServer) -> None:
    with pytest.raises(AgentClientError, match="needs credentials holding private_key_jwk"):
        AgentClient.from_api_key(issuer.url, "ak_live_" + "y" * 43, method="jwt_bearer")
    with pytest.raises(AgentClientError, match="dpop=True needs"):
        AgentClient.from_api_key(issuer.url, "ak_live_" + "y" * 43, dpop=True)
    with pytest.raises(AgentClientError, match="no issuer"):
        AgentClient(Credentials(agent_id="agt_x", api_key="ak_live_" + "y" * 43))
    agent = AgentClient.from_api_key(issuer.url, "ak_live_" + "y" * 43)
    with pytest.raises(AgentClientError, match="signed by the agent's private key"):
        agent.present(audience="a", nonce="b")
    with pytest.raises(TypeError, match="AgentClient"):
        asyncio.run(_async_get(agent, issuer.url))
    agent.close()


async def _async_get(agent: AgentClient, url: str) -> None:
    async with httpx.AsyncClient(auth=agent.auth()) as http:
        await http.get(url)
