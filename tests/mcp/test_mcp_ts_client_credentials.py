"""SEP-1046 (OAuth client credentials for MCP) with the official TypeScript MCP client's ready-made providers,
against third-party MCP servers built on the official Python MCP SDK (tests/mcp/third_party_mcp_server.py under
uvicorn) and registered with AgentAuth as resource servers; ``agentauth serve`` on SQLite and on PostgreSQL.

``ClientCredentialsProvider`` (client_secret_basic with the agent id and its API key) and ``PrivateKeyJwtProvider``
(private_key_jwt, RFC 7523, EdDSA with the agent's Ed25519 key) each discover AgentAuth from the server's RFC 9728
metadata, get a token whose ``aud`` is that server (RFC 8707), and call its tool; the same token replayed at the
second server gets 401 ``invalid_token``. The script is tests/mcp/ts/client_credentials_flow.mjs.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp_support import RunningServer, run_ts, start_server, ts_node

from live_server import LiveServer, free_port, start_uvicorn, wait_until_up
from support import BACKENDS, POSTGRES_URL, bearer, reset_postgres

HERE = Path(__file__).parent
SCOPES = [{"name": "files.read", "description": "Read files"}, {"name": "files.write"}]


@dataclass
class Deployment:
    issuer: RunningServer
    servers: list[LiveServer]  # two third-party MCP servers
    agent: dict[str, Any]  # quickstart's answer: agent, api_key, private_key_jwk, access_token

    def resource(self, index: int) -> str:
        return f"{self.servers[index].url}/mcp"


def quickstart(issuer: LiveServer, name: str) -> dict[str, Any]:
    response = httpx.post(f"{issuer.url}/api/v1/agents/quickstart", json={"name": name, "agent_type": "tool"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module", params=BACKENDS)
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp(f"sep1046-{request.param}")
    settings = {}
    if request.param == "postgres":
        asyncio.run(reset_postgres())
        settings["AGENTAUTH_DATABASE_URL"] = POSTGRES_URL
    issuer = start_server(tmp, **settings)
    servers: list[LiveServer] = []
    try:
        for index in range(2):
            port = free_port()
            env = {"AGENTAUTH_ISSUER_URL": issuer.url, "MCP_RESOURCE_URL": f"http://127.0.0.1:{port}/mcp"}
            workdir = tmp / f"mcp-server-{index}"  # a log each
            workdir.mkdir()
            servers.append(start_uvicorn(workdir, HERE, "third_party_mcp_server:app", env, port=port, wait=False))
        for server in servers:
            wait_until_up(server, "/.well-known/oauth-protected-resource/mcp")
        agent = quickstart(issuer, "sep-1046 agent")
        issuer.secrets += [agent["api_key"], agent["access_token"], agent["private_key_jwk"]["d"]]
        for server in servers:
            registration = {"identifier": f"{server.url}/mcp", "name": "files", "kind": "mcp", "scopes": SCOPES}
            created = httpx.post(
                f"{issuer.url}/api/v1/resource-servers", json=registration, headers=bearer(agent["access_token"])
            )
            assert created.status_code == 201, created.text
        yield Deployment(issuer, servers, agent)
    finally:
        for server in servers:
            server.stop()
        issuer.stop()
    log = issuer.log_text()
    assert not [s for s in issuer.secrets if s in log], "a secret reached the server log"


def run_flow(deployment: Deployment, method: str, **credentials: str) -> dict[str, Any]:
    ts_node()
    metadata = httpx.get(f"{deployment.issuer.url}/.well-known/oauth-authorization-server").json()
    # Both official MCP SDKs parse RFC 8414 metadata with authorization_endpoint required (TypeScript
    # OAuthMetadataSchema, Python OAuthMetadata), also before a client_credentials token request: without it the
    # TypeScript client stops at discovery with a ZodError.
    assert "authorization_endpoint" in metadata, "no authorization_endpoint: the MCP SDKs cannot discover AgentAuth"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    env |= {"AGENT_ID": deployment.agent["agent"]["id"], **credentials}
    flow = run_ts(
        "client_credentials_flow.mjs",
        method,
        deployment.issuer.url,
        deployment.resource(0),
        deployment.resource(1),
        env=env,
    )
    report: dict[str, Any] = json.loads(flow.stdout.strip().splitlines()[-1]) if flow.stdout.strip() else {}
    deployment.issuer.secrets += report.get("secrets", [])
    logs = "\n".join(s.log.read_text(errors="replace")[-2000:] for s in deployment.servers)
    assert flow.returncode == 0, f"{flow.stderr}\nsteps done: {report.get('steps')}\n{logs}"
    assert report["steps"] == ["connect", "token", "whoami", "replay"]
    return report


def assert_audience_bound(deployment: Deployment, report: dict[str, Any]) -> None:
    agent_id = deployment.agent["agent"]["id"]
    # The token the SDK obtained names the first server only, carries that server's scopes, and is the agent's.
    assert report["token"]["aud"] == deployment.resource(0), report["token"]
    assert report["token"]["client_id"] == agent_id
    assert sorted(report["token"]["scope"].split()) == ["files.read", "files.write"]
    # The server accepted it and saw the same.
    assert report["whoami"]["aud"] == deployment.resource(0)
    assert report["whoami"]["client_id"] == agent_id
    assert report["whoami"]["scopes"] == ["files.read", "files.write"]
    # RFC 8707 / the MCP spec's token audience binding: the second server refuses the replayed token.
    assert report["replay"]["status"] == 401, report["replay"]
    assert 'error="invalid_token"' in report["replay"]["www_authenticate"]


def test_client_credentials_provider(deployment: Deployment) -> None:
    report = run_flow(deployment, "client_secret", AGENT_API_KEY=deployment.agent["api_key"])
    assert_audience_bound(deployment, report)


def private_key_jwt_supported(issuer: LiveServer) -> bool:
    metadata = httpx.get(f"{issuer.url}/.well-known/oauth-authorization-server").json()
    return "private_key_jwt" in metadata.get("token_endpoint_auth_methods_supported", [])


def test_private_key_jwt_provider(deployment: Deployment) -> None:
    if not private_key_jwt_supported(deployment.issuer):
        # RFC 8414: a method the server accepts is listed in its metadata
        pytest.skip("private_key_jwt is not in the metadata's token_endpoint_auth_methods_supported")
    jwk = json.dumps(deployment.agent["private_key_jwk"])
    report = run_flow(deployment, "private_key_jwt", AGENT_PRIVATE_JWK=jwk)
    assert_audience_bound(deployment, report)
