"""The examples against real servers: `agentauth serve` and examples/resource_server.py, each under uvicorn in its
own process, talking HTTP over loopback. The status-list ttl is the shortest allowed (10 s)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentauth.did import decode_did_key
from agentauth.keys import KeyPair, PublicKey
from agentauth.sdk import AgentClient, DPoPAuth
from live_server import REPO, STATUS_TTL_SECONDS, LiveServer, free_port, start_issuer, start_uvicorn, wait_until_up

EXAMPLES = REPO / "examples"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    tmp = tmp_path_factory.mktemp("examples")
    issuer = start_issuer(tmp, wait=False)
    port = free_port()
    env = {"AGENTAUTH_ISSUER_URL": issuer.url, "RESOURCE_SERVER_URL": f"http://127.0.0.1:{port}"}
    # Both start at once: the resource server fetches the issuer's keys only when the first token arrives.
    resource = start_uvicorn(tmp, EXAMPLES, "resource_server:app", env, port=port, wait=False)
    try:
        wait_until_up(issuer, "/health")
        wait_until_up(resource, "/")
        # The resource server is registered (by a tenant of its own), open to every agent, with its scopes.
        publisher = register(issuer, "publisher")
        server = {
            "identifier": resource.url, "name": "reports", "kind": "rest", "access": "any_agent",
            "scopes": [{"name": "api.read"}, {"name": "api.write"}],
        }  # fmt: skip
        created = httpx.post(
            f"{issuer.url}/api/v1/resource-servers", json=server, headers=bearer(publisher["access_token"])
        )
        assert created.status_code == 201, created.text
    except BaseException:
        resource.stop()
        issuer.stop()
        raise
    yield issuer, resource
    resource.stop()
    issuer.stop()


def register(issuer: LiveServer, name: str) -> dict[str, Any]:
    response = httpx.post(f"{issuer.url}/api/v1/agents/quickstart", json={"name": name, "agent_type": "tool"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def token(issuer: LiveServer, api_key: str, scope: str, resource: str | None = None) -> str:
    data = {"grant_type": "client_credentials", "client_secret": api_key, "scope": scope}
    if resource is not None:
        data["resource"] = resource
    response = httpx.post(f"{issuer.url}/api/v1/auth/token", data=data)
    assert response.status_code == 200, response.text
    value: str = response.json()["access_token"]
    return value


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def run_agent(issuer: LiveServer, resource: LiveServer, *flags: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "agent.py"), "--issuer", issuer.url, "--resource", resource.url, *flags],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    assert summary["agent_did"].startswith("did:key:z6Mk")
    assert summary["scope"] == "api.read"
    assert summary["api_saw_agent"] == summary["agent_did"] == summary["presentation_holder"]
    assert summary["presented"][0]["name"] == "example-agent"
    assert summary["reports_seen"] >= 1
    return summary


def test_agent_script_quickstart_token_call_present(servers: tuple[LiveServer, LiveServer]) -> None:
    summary = run_agent(*servers)
    assert summary["token_type"] == "Bearer" and summary["api_saw_binding"] is None


def test_agent_script_with_dpop_binds_the_token_to_its_did_key(servers: tuple[LiveServer, LiveServer]) -> None:
    summary = run_agent(*servers, "--dpop")
    assert summary["token_type"] == "DPoP"
    # The resource server accepted a token bound (cnf.jkt) to the key of the agent's own did:key.
    did_key = PublicKey.from_bytes(decode_did_key(summary["agent_did"]))
    assert summary["api_saw_binding"] == summary["key_thumbprint"] == did_key.thumbprint()


def test_agent_script_keeps_its_credentials_for_the_next_run(
    servers: tuple[LiveServer, LiveServer], tmp_path: Path
) -> None:
    issuer, resource = servers
    file = tmp_path / "agent.json"
    summary = run_agent(issuer, resource, "--credentials-file", str(file))
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    # The next run of the agent starts from the file: the refresh token there is its token family's newest.
    with AgentClient(file, scope="api.read", resource=resource.url) as agent:
        assert agent.did == summary["agent_did"]
        with httpx.Client(auth=agent.auth()) as http:
            assert http.get(f"{resource.url}/reports").json()["agent"] == summary["agent_did"]
        assert agent.token_requests == {"refresh_token": 1}


def test_resource_server_allows_and_refuses(servers: tuple[LiveServer, LiveServer]) -> None:
    issuer, resource = servers
    agent = register(issuer, "caller")
    reader = token(issuer, agent["api_key"], "api.read", resource.url)

    allowed = httpx.get(f"{resource.url}/reports", headers=bearer(reader))
    assert allowed.status_code == 200 and allowed.json()["agent"] == agent["agent"]["did"]

    anonymous = httpx.get(f"{resource.url}/reports")
    assert anonymous.status_code == 401
    # RFC 6750 section 3.1: no error code without credentials; RFC 9449 section 7.1: DPoP offered next to Bearer.
    assert anonymous.headers["www-authenticate"] == (
        'Bearer realm="agentauth", DPoP realm="agentauth", algs="EdDSA Ed25519 ES256"'
    )

    forged = httpx.get(f"{resource.url}/reports", headers=bearer(reader[:-4] + "AAAA"))
    assert forged.status_code == 401 and 'error="invalid_token"' in forged.headers["www-authenticate"]

    # RFC 8707: a token for AgentAuth's own API (aud = the issuer) is not one for this server.
    own = httpx.get(f"{resource.url}/reports", headers=bearer(token(issuer, agent["api_key"], "api.read")))
    assert own.status_code == 401 and 'error="invalid_token"' in own.headers["www-authenticate"]

    writer = token(issuer, agent["api_key"], "api.write", resource.url)
    lacking = httpx.get(f"{resource.url}/reports", headers=bearer(writer))
    assert lacking.status_code == 403
    challenge = lacking.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="api.read"' in challenge
    assert lacking.json()["error"] == "insufficient_scope"

    no_write = httpx.post(f"{resource.url}/reports", json={"title": "x"}, headers=bearer(reader))
    assert no_write.status_code == 403 and 'scope="api.write"' in no_write.headers["www-authenticate"]


def test_resource_server_takes_a_dpop_bound_token_only_with_its_proof(servers: tuple[LiveServer, LiveServer]) -> None:
    issuer, resource = servers
    agent = register(issuer, "dpop caller")
    auth = DPoPAuth(KeyPair.from_jwk(agent["private_key_jwk"]))
    form = {"grant_type": "client_credentials", "client_secret": agent["api_key"], "scope": "api.read"}
    issued = httpx.post(f"{issuer.url}/api/v1/auth/token", data=form | {"resource": resource.url}, auth=auth)
    assert issued.status_code == 200 and issued.json()["token_type"] == "DPoP", issued.text
    auth.token = issued.json()["access_token"]

    allowed = httpx.get(f"{resource.url}/reports", auth=auth)
    assert allowed.status_code == 200 and allowed.json()["bound_to"] == auth.key.public.thumbprint(), allowed.text
    # RFC 9449 section 7.2: the bound token sent as a bearer token is refused; DPoP is offered next to Bearer.
    stolen = httpx.get(f"{resource.url}/reports", headers=bearer(auth.token))
    assert stolen.status_code == 401
    challenge = stolen.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="agentauth", error="invalid_token"'), challenge
    assert challenge.endswith(', DPoP realm="agentauth", algs="EdDSA Ed25519 ES256"'), challenge


def test_revoked_token_is_refused_once_the_status_list_ttl_has_passed(servers: tuple[LiveServer, LiveServer]) -> None:
    issuer, resource = servers
    agent = register(issuer, "to-be-revoked")
    doomed = token(issuer, agent["api_key"], "api.read", resource.url)
    assert httpx.get(f"{resource.url}/reports", headers=bearer(doomed)).status_code == 200

    revoked = httpx.post(f"{issuer.url}/api/v1/auth/revoke", data={"token": doomed, "client_secret": agent["api_key"]})
    assert revoked.status_code == 200
    revoked_at = time.monotonic()
    # Offline verification trades immediacy for independence: the revocation shows within one ttl.
    while True:
        answer = httpx.get(f"{resource.url}/reports", headers=bearer(doomed))
        if answer.status_code == 401:
            break
        assert answer.status_code == 200
        assert time.monotonic() - revoked_at < STATUS_TTL_SECONDS + 5, "revocation not visible after the ttl"
        time.sleep(0.5)
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    # Other tokens of the same agent are unaffected.
    fresh = token(issuer, agent["api_key"], "api.read", resource.url)
    assert httpx.get(f"{resource.url}/reports", headers=bearer(fresh)).status_code == 200
