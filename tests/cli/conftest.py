"""CLI tests run the installed ``agentauth`` command in subprocesses, against a real `agentauth serve`.

Every command gets the server's environment (``AGENTAUTH_*``), so `keys` and `jwks export` work on the very data
directory the server uses - as an operator would on the same machine.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from live_server import BIN, LiveServer, start_issuer

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_issuer(tmp_path_factory.mktemp("cli-issuer"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cli(issuer: LiveServer) -> Cli:
    def run(
        *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "agentauth"), *args],
            check=False,
            capture_output=True,
            text=True,
            input=stdin,
            env=env if env is not None else issuer.env,
            timeout=60,
        )

    return run


@pytest.fixture(scope="module")
def agent(issuer: LiveServer) -> dict[str, Any]:
    """A registered agent (quickstart response), with an api.read token under ``token``."""
    response = httpx.post(f"{issuer.url}/api/v1/agents/quickstart", json={"name": "cli", "agent_type": "tool"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    body["token"] = issue_token(issuer, body["api_key"])
    return body


@pytest.fixture(scope="module")
def token_factory(issuer: LiveServer) -> Callable[[str], str]:
    """A fresh access token of the given API key."""
    return lambda api_key: issue_token(issuer, api_key)


def issue_token(issuer: LiveServer, api_key: str, scope: str = "api.read") -> str:
    response = httpx.post(
        f"{issuer.url}/api/v1/auth/token",
        data={"grant_type": "client_credentials", "client_secret": api_key, "scope": scope},
    )
    assert response.status_code == 200, response.text
    value: str = response.json()["access_token"]
    return value
