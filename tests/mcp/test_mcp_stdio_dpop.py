"""``agentauth-mcp`` in remote mode with ``AGENTAUTH_AGENT_KEY`` (DPoP, RFC 9449), spoken to by the official MCP
client over stdio, against a real ``agentauth serve``: ``authenticate`` returns a token bound to the agent's key
(``token_type: DPoP``, ``cnf.jkt`` = the key's thumbprint, also by introspection), tools work with it (the backend
sends ``Authorization: DPoP`` and a proof), the same token sent as a bearer straight to the REST API is refused,
with nonces required it all still works (one retry per refusal), and a key file others can read stops the server
before it starts. No secret - API key, tokens, the key's ``d`` - reaches either log.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp_support import RunningServer, call, hermetic_env, secrets_of, start_server, stdio_session

from agentauth.keys import KeyPair, b64url_decode
from live_server import BIN

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def nonce_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("mcp-dpop-nonce"), AGENTAUTH_DPOP_NONCE_REQUIRED="true")
    try:
        yield running
    finally:
        running.stop()
    leaked = [s[:12] for s in running.secrets if s in running.log_text()]
    assert not leaked, leaked


def quickstart(server: RunningServer) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/v1/agents/quickstart", json={"name": "mcp dpop", "agent_type": "tool"})
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()
    server.secrets += secrets_of(agent)
    return agent


def key_file(tmp_path: Path, agent: dict[str, Any], mode: int = 0o600) -> Path:
    path = tmp_path / "agent-key.json"
    path.write_text(json.dumps(agent["private_key_jwk"]), encoding="utf-8")
    path.chmod(mode)
    return path


def claims_of(token: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1], canonical=False))
    return value


def dpop_env(url: str, key: Path) -> dict[str, str]:
    # DEBUG: the most the server ever logs, and still no secret in it.
    return hermetic_env(AGENTAUTH_URL=url, AGENTAUTH_AGENT_KEY=str(key), AGENTAUTH_MCP_LOG_LEVEL="DEBUG")


def assert_bound_to(pair: dict[str, Any], key: KeyPair) -> str:
    assert pair["token_type"] == "DPoP", pair
    token: str = pair["access_token"]
    assert claims_of(token)["cnf"] == {"jkt": key.public.thumbprint()}
    return token


def assert_no_secret_in(log: Path, secrets: list[str]) -> None:
    text = log.read_text(encoding="utf-8")
    assert text  # DEBUG logging did log: the check below looked at something
    assert not [s[:12] for s in secrets if s in text]


async def test_authenticate_binds_the_tokens_and_the_tools_use_them(server: RunningServer, tmp_path: Path) -> None:
    agent = quickstart(server)
    agent_id = agent["agent"]["id"]
    key = KeyPair.from_jwk(agent["private_key_jwk"])
    log = tmp_path / "stdio.log"
    async with stdio_session(dpop_env(server.url, key_file(tmp_path, agent)), log) as session:
        pair = await call(session, "authenticate", api_key=agent["api_key"])
        token = assert_bound_to(pair, key)
        assert (await call(session, "get_agent", agent_id=agent_id, access_token=token))["id"] == agent_id
        listed = await call(session, "list_agents", access_token=token)
        assert [a["id"] for a in listed["items"]] == [agent_id]

        # The refresh family is bound too: refreshing takes a proof by the same key, which the backend sends.
        refreshed = await call(session, "refresh_token", refresh_token_value=pair["refresh_token"])
        fresh = assert_bound_to(refreshed, key)
        assert (await call(session, "get_agent", agent_id=agent_id, access_token=fresh))["id"] == agent_id

        # A token without cnf (quickstart's are bearer tokens) is still sent as a bearer token, and works.
        other = await call(session, "quickstart", name="bearer one", agent_type="tool")
        assert other["token_type"] == "Bearer"
        other_id = other["agent"]["id"]
        as_bearer = await call(session, "get_agent", agent_id=other_id, access_token=other["access_token"])
        assert as_bearer["id"] == other_id
    server.secrets += secrets_of(pair, refreshed, other)

    async with httpx.AsyncClient(base_url=server.url) as rest:
        # Introspection (RFC 7662, with the API key) says so too (RFC 9449 section 6.2).
        seen = await rest.post("/api/v1/auth/introspect", data={"token": token, "client_secret": agent["api_key"]})
        assert seen.status_code == 200, seen.text
        assert seen.json()["active"] is True and seen.json()["token_type"] == "DPoP"
        assert seen.json()["cnf"] == {"jkt": key.public.thumbprint()}
        # Copied out of the MCP session, the token is useless without the key (section 7.1).
        stolen = await rest.get(f"/api/v1/agents/{agent_id}", headers={"Authorization": f"Bearer {token}"})
        assert stolen.status_code == 401, stolen.text
        assert stolen.json()["error"] == "invalid_token"
    assert_no_secret_in(log, [*server.secrets, agent["private_key_jwk"]["d"]])


async def test_with_nonces_required_each_refusal_is_retried(nonce_server: RunningServer, tmp_path: Path) -> None:
    agent = quickstart(nonce_server)
    agent_id = agent["agent"]["id"]
    key = KeyPair.from_jwk(agent["private_key_jwk"])
    log = tmp_path / "stdio.log"
    async with stdio_session(dpop_env(nonce_server.url, key_file(tmp_path, agent)), log) as session:
        # The first token request cannot carry a nonce yet: it is refused (400 use_dpop_nonce) and retried with
        # the nonce, invisibly to the tool.
        pair = await call(session, "authenticate", api_key=agent["api_key"])
        token = assert_bound_to(pair, key)
        # The token response handed out the next nonce (section 8.2); the API call's proof carries it.
        assert (await call(session, "get_agent", agent_id=agent_id, access_token=token))["id"] == agent_id
        refreshed = await call(session, "refresh_token", refresh_token_value=pair["refresh_token"])
        assert_bound_to(refreshed, key)
    nonce_server.secrets += secrets_of(pair, refreshed)
    assert_no_secret_in(log, [*nonce_server.secrets, agent["private_key_jwk"]["d"]])


async def test_proofs_name_the_issuer_url_when_reached_under_another(server: RunningServer, tmp_path: Path) -> None:
    """Configured with http://localhost:PORT, the server's public URL being http://127.0.0.1:PORT: proofs must
    name the latter, which is what the server checks htu against (RFC 9449 section 4.3)."""
    agent = quickstart(server)
    agent_id = agent["agent"]["id"]
    key = KeyPair.from_jwk(agent["private_key_jwk"])
    other_url = server.url.replace("127.0.0.1", "localhost")
    async with stdio_session(dpop_env(other_url, key_file(tmp_path, agent)), tmp_path / "stdio.log") as session:
        pair = await call(session, "authenticate", api_key=agent["api_key"])
        token = assert_bound_to(pair, key)
        assert (await call(session, "get_agent", agent_id=agent_id, access_token=token))["id"] == agent_id
    server.secrets += secrets_of(pair)


def run_refused(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``agentauth-mcp`` that must not start: it exits before reading any of the protocol."""
    return subprocess.run(
        [str(BIN / "agentauth-mcp")],
        env=env,
        cwd=cwd,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_is_refused(server: RunningServer, tmp_path: Path, mode: int) -> None:
    agent = quickstart(server)
    path = key_file(tmp_path, agent, mode)
    refused = run_refused(dpop_env(server.url, path), tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip() == (
        f"agentauth-mcp: AGENTAUTH_AGENT_KEY: {path} is accessible to group or others (mode {mode:03o}); "
        f"a private key must be readable by its owner only: chmod 600 {path}"
    )
    assert agent["private_key_jwk"]["d"] not in refused.stderr


def test_an_unusable_key_setting_is_refused_without_quoting_the_key(server: RunningServer, tmp_path: Path) -> None:
    agent = quickstart(server)
    jwk = agent["private_key_jwk"]
    public = tmp_path / "public.json"
    public.write_text(json.dumps({k: v for k, v in jwk.items() if k != "d"}), encoding="utf-8")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(jwk)[:-3], encoding="utf-8")  # cut: the parser would quote what it read
    missing = tmp_path / "nowhere.json"
    for path in (public, broken):
        path.chmod(0o600)
    cases = {
        public: f"{public} is no private Ed25519 JWK: JWK member 'd' is missing",
        broken: f"{broken} does not hold a JSON private JWK",
        missing: f"cannot read {missing}: No such file or directory",
    }
    for path, message in cases.items():
        refused = run_refused(dpop_env(server.url, path), tmp_path)
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.strip() == f"agentauth-mcp: AGENTAUTH_AGENT_KEY: {message}"
        assert jwk["d"] not in refused.stderr
    # Embedded mode issues its tokens in process: a key there would bind nothing, so it is refused, not ignored.
    path = key_file(tmp_path, agent)
    embedded = {k: v for k, v in dpop_env(server.url, path).items() if k != "AGENTAUTH_URL"}
    embedded["AGENTAUTH_DATA_DIR"] = str(tmp_path / "data")
    refused = run_refused(embedded, tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "agentauth-mcp: AGENTAUTH_AGENT_KEY needs AGENTAUTH_URL: DPoP proofs are for a remote AgentAuth"
    )
    assert not (tmp_path / "data").exists()


async def test_revoke_token_revokes_a_bound_token(server: RunningServer, tmp_path: Path) -> None:
    agent = quickstart(server)
    async with stdio_session(dpop_env(server.url, key_file(tmp_path, agent)), tmp_path / "stdio.log") as session:
        pair = await call(session, "authenticate", api_key=agent["api_key"])
        server.secrets += secrets_of(pair)
        assert (await call(session, "revoke_token", token=pair["access_token"]))["success"] is True
    async with httpx.AsyncClient(base_url=server.url) as rest:
        seen = await rest.post(
            "/api/v1/auth/introspect", data={"token": pair["access_token"], "client_secret": agent["api_key"]}
        )
    assert seen.json() == {"active": False}, seen.text
