"""Issue 16 must show: the README's Authlib, requests-oauthlib and httpx-auth examples work as written, against a
live server, from a venv made here from the package index that holds those libraries and not AgentAuth (httpx-auth
pins httpx 0.28, this project is on a newer one). Only the server's address is changed. Each example prints what
the README says it does; Authlib's automatic renewal (``token_endpoint``) is shown too, by a refresh that rotates.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentauth import paths
from live_server import LiveServer, start_issuer

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = re.compile(r"^### Standard OAuth client libraries\n(.*?)^##", re.DOTALL | re.MULTILINE)
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
README_SERVER = "http://127.0.0.1:8000"
LIBRARIES = ["Authlib==1.9.10", "requests-oauthlib==2.0.0", "oauthlib==4.0.1", "httpx-auth==0.23.1"]
IMPORTS = ["authlib.integrations.httpx_client", "requests_oauthlib", "httpx_auth"]

RENEWAL = """
import json, time
from authlib.integrations.httpx_client import OAuth2Client

made = json.load(open("agent.json"))
agent_id, token_url = made["agent"]["id"], "{server}/api/v1/auth/token"
with OAuth2Client(agent_id, made["api_key"], scope="agents.read", token_endpoint=token_url) as oauth:
    first = dict(oauth.fetch_token(grant_type="client_credentials"))
    oauth.token["expires_at"] = int(time.time()) - 1  # as if its lifetime were over
    answer = oauth.get("{server}/api/v1/agents/" + agent_id)
    print(json.dumps({{"status": answer.status_code, "first": first, "second": dict(oauth.token)}}))
"""


def examples() -> list[str]:
    section = SECTION.search(README.read_text(encoding="utf-8"))
    assert section is not None, "README.md has no '### Standard OAuth client libraries' section"
    blocks = BLOCK.findall(section.group(1))
    assert len(blocks) == len(IMPORTS), blocks
    for block, module in zip(blocks, IMPORTS, strict=True):
        assert f"from {module} import" in block, (module, block)
    return blocks


@pytest.fixture(scope="module")
def clients_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("oauth-clients") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *LIBRARIES],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    python = venv / "bin" / "python"
    absent = subprocess.run([str(python), "-c", "import agentauth"], capture_output=True, check=False)
    assert absent.returncode != 0, "the clients' venv must not hold AgentAuth"
    return python


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    (tmp_path / "issuer").mkdir()
    live = start_issuer(tmp_path / "issuer")
    try:
        yield live
    finally:
        live.stop()


def run(python: Path, code: str, work: Path) -> str:
    ran = subprocess.run([str(python), "-"], input=code, cwd=work, capture_output=True, text=True, timeout=60,
                         check=False)  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout


def test_the_oauth_client_examples_run_as_written(clients_python: Path, server: LiveServer, tmp_path: Path) -> None:
    work = tmp_path / "checkout"
    work.mkdir()
    made = httpx.post(f"{server.url}{paths.QUICKSTART}", json={"name": "research-bot", "agent_type": "assistant"})
    assert made.status_code == 201, made.text
    (work / "agent.json").write_text(made.text)
    did = made.json()["agent"]["did"]
    authlib, requests_oauthlib, httpx_auth = (run(clients_python, block.replace(README_SERVER, server.url), work)
                                              for block in examples())  # fmt: skip
    assert authlib.splitlines() == [did, "agents.read"], authlib
    assert requests_oauthlib.splitlines() == [did], requests_oauthlib
    assert httpx_auth.splitlines() == [did], httpx_auth


def test_authlib_renews_an_expired_token_by_refresh(clients_python: Path, server: LiveServer, tmp_path: Path) -> None:
    made = httpx.post(f"{server.url}{paths.QUICKSTART}", json={"name": "renewing", "agent_type": "assistant"})
    (tmp_path / "agent.json").write_text(made.text)
    report = json.loads(run(clients_python, RENEWAL.format(server=server.url), tmp_path))
    first, second = report["first"], report["second"]
    assert report["status"] == 200
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]  # rotated (RFC 9700 4.14.2)
    replay = httpx.post(f"{server.url}{paths.TOKEN}", data={"grant_type": "refresh_token",
                        "refresh_token": first["refresh_token"], "client_id": made.json()["agent"]["id"]})  # fmt: skip
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text
