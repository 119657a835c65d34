"""The official MCP conformance suite's authorization-server scenarios against a real ``agentauth serve``, on
SQLite and on PostgreSQL (tests/conformance/conformance_support.py runs it; CONFORMANCE_NOTES.md says what it checks):

* ``authorization-server-metadata-endpoint`` - RFC 8414 metadata as the MCP authorization spec needs it
  (issuer, authorization and token endpoints, response type ``code``, PKCE ``S256``, CIMD support);
* ``authorization-code-grant`` - a real authorization code flow with PKCE (RFC 6749 section 4.1, RFC 7636) for
  an RFC 7591 public client: the suite prints the authorization URL and waits on its loopback callback; headless
  Chromium (tests/browser_support.py) logs an owner in and allows; the suite redeems the code at the token endpoint.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conformance_support import (
    CODE_GRANT,
    METADATA,
    SCENARIO_LINE,
    SUITE,
    SUMMARY,
    checks_of,
    failures,
    pinned_version,
    run_code_grant,
    run_metadata_scenario,
    suite_cli,
)

import owner_support
from agentauth.keys import generate_kek
from browser_support import require_browser
from live_server import LiveServer, free_port, server_env, spawn
from support import BACKENDS, POSTGRES_URL, reset_postgres

NODE_MAJOR = 22
METADATA_PATH = "/.well-known/oauth-authorization-server"


@pytest.fixture(scope="module", params=BACKENDS)
def issuer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``agentauth serve`` on a fresh database of the backend, for the tests of this module."""
    workdir = tmp_path_factory.mktemp(f"conformance-{request.param}")
    port = free_port()
    database_url = None
    if request.param == "postgres":
        asyncio.run(reset_postgres())
        database_url = POSTGRES_URL
    server = spawn(server_env(workdir / "data", port, generate_kek(), database_url), port, workdir / "server.log")
    try:
        yield server
    finally:
        server.stop()


def test_suite_is_installed() -> None:
    node, _ = suite_cli()
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True, timeout=30)
    assert int(version.stdout.strip().lstrip("v").split(".")[0]) >= NODE_MAJOR, version.stdout
    assert json.loads((SUITE / "package.json").read_text())["version"] == pinned_version()


def test_authorization_server_metadata_endpoint(issuer: LiveServer, tmp_path: Path) -> None:
    run, output = run_metadata_scenario(issuer.url, tmp_path)
    checks = checks_of(tmp_path, METADATA)
    assert run.returncode == 0, f"{failures(checks)}\n{output}\n{run.stderr}"
    # RFC 8414 metadata, and the SHOULD-level CIMD flag (a WARNING would not fail the suite's exit code)
    assert {c["id"]: c["status"] for c in checks} == {
        "authorization-server-metadata": "SUCCESS",
        "authorization-server-metadata-cimd": "SUCCESS",
    }, failures(checks)
    assert SUMMARY.findall(output) == [("2", "2", "0", "0")], output  # passed/of, failed, warnings
    metadata = checks[0]["details"]["body"]
    assert metadata["issuer"] == issuer.url
    assert metadata == httpx.get(issuer.url + METADATA_PATH).json()


# -- the authorization code grant ---------------------------------------------------------------------------------


def sign_up_owner(issuer: LiveServer) -> tuple[str, str]:
    """An owner (a person with an account and a tenant) who can log in at ``GET /login``: (email, password)."""
    email = "conformance@example.com"
    owner_support.sign_up_owner(issuer.url, email)
    return email, owner_support.PASSWORD


def register_public_client(issuer: LiveServer, redirect_uri: str) -> str:
    """An RFC 7591 public client (PKCE, no secret) whose one redirect URI is the suite's callback."""
    metadata = httpx.get(issuer.url + METADATA_PATH).json()
    response = httpx.post(
        metadata["registration_endpoint"],
        json={
            "client_name": "MCP conformance suite",
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        },
    )
    assert response.status_code == 201, response.text
    client_id: str = response.json()["client_id"]
    return client_id


def test_authorization_code_grant(issuer: LiveServer, tmp_path: Path) -> None:
    metadata = httpx.get(issuer.url + METADATA_PATH).json()
    suite_cli()
    require_browser()
    login = sign_up_owner(issuer)
    callback_port = free_port()
    client_id = register_public_client(issuer, f"http://127.0.0.1:{callback_port}/callback")

    run = run_code_grant(issuer.url, client_id, callback_port, tmp_path, login, resource=f"{issuer.url}/mcp")

    assert run.returncode == 0, f"{failures(run.checks)}\n{run.output}"
    assert {c["id"]: c["status"] for c in run.checks} == {
        "authorization-server-metadata": "SUCCESS",
        "authorization-server-metadata-cimd": "SUCCESS",
        "authorization-code-grant": "SUCCESS",
    }, failures(run.checks)
    assert SCENARIO_LINE.findall(run.output) == [("✓", METADATA, "2", "0"), ("✓", CODE_GRANT, "1", "0")], run.output
    assert run.authorization_url.startswith(metadata["authorization_endpoint"] + "?")
    grant = run.checks[-1]["details"]
    assert grant["authorizationResponseUrl"] == run.visit.final_url
    # RFC 9207: advertised in the metadata, so the authorization response carries iss (the suite only checks it
    # when present)
    assert httpx.URL(run.visit.final_url).params.get_list("iss") == [issuer.url], run.visit.final_url
    assert grant["body"]["token_type"] in ("Bearer", "DPoP"), grant["body"]
