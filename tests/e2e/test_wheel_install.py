"""Issue 16 item 1: the built wheel of ``agentauth-id`` installs by name in fresh virtualenvs - plain, as the
verifier (pure core + SDK: cryptography, base58, orjson, pybase64, httpx and what they need, no web framework,
database, MCP or pydantic), which imports ``agentauth.sdk`` and verifies a token; and with ``[server]``, which runs
``agentauth serve`` from the installed files alone (migrations and page assets included), outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from live_server import REPO, LiveServer, free_ports, wait_until_up

SERVER_PACKAGES = ("fastapi", "starlette", "sqlalchemy", "mcp", "pydantic", "uvicorn", "typer", "rich", "alembic")
PIP_SECONDS = 600

VERIFY = textwrap.dedent(
    """
    import json, sys
    from datetime import UTC, datetime, timedelta

    from agentauth.did import encode_did_key
    from agentauth.keys import KeyPair, KeyRing
    from agentauth.sdk import offline_verifier
    from agentauth.vc import CredentialIssuer, StaticStatusLists, StatusEntry, StatusList

    for name in SERVER_PACKAGES:
        assert name not in sys.modules, name
    now = datetime.now(UTC)
    url, resource = "https://issuer.example", "https://api.example"
    lst = url + "/api/v1/status-lists/1"
    ring = KeyRing.create("did:web:issuer.example", now)
    issuer = CredentialIssuer(url, ring)
    status = issuer.issue_status_list_credential(
        list_url=lst, encoded_list=StatusList().encode(), now=now, ttl_seconds=60, valid_for_seconds=3600
    )
    token, _ = issuer.issue_access_credential(
        subject_did=encode_did_key(KeyPair.generate().public.raw), client_id="agt_1", scopes=["api.read"],
        audience=resource, now=now, expires_at=now + timedelta(minutes=5), status=StatusEntry(lst, 3),
    )
    verifier = offline_verifier(
        json.loads(json.dumps(ring.jwks())), resource=resource, issuer_url=url,
        status_source=StaticStatusLists({lst: status}),
    )
    verified = verifier.verify_access_token(token)
    print("verified", sorted(verified.scopes), file=sys.stderr)
    """
)


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=PIP_SECONDS, cwd=cwd)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)])
    if built.returncode != 0 and "hatchling" in built.stderr and "No matching distribution" in built.stderr:
        pytest.skip(f"cannot fetch the build backend (offline?): {built.stderr.strip()[-300:]}")
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("agentauth_id-*.whl")
    return found


def venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    return path / "bin"


def install(bin_dir: Path, requirement: str) -> None:
    pip = [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--quiet"]
    installed = run([*pip, requirement])
    if installed.returncode != 0 and "No matching distribution" in installed.stderr:
        pytest.skip(f"cannot reach the package index: {installed.stderr.strip()[-300:]}")
    assert installed.returncode == 0, installed.stderr


def test_the_verifier_install_has_no_server_package_and_verifies(wheel: Path, tmp_path: Path) -> None:
    bin_dir = venv(tmp_path / "verifier")
    install(bin_dir, str(wheel))
    listing = "import importlib.metadata as m; print(sorted(d.metadata['Name'].lower() for d in m.distributions()))"
    names = run([str(bin_dir / "python"), "-c", listing])
    assert "agentauth-id" in names.stdout
    assert not any(f"'{name}'" in names.stdout for name in SERVER_PACKAGES), names.stdout
    # Run from elsewhere than the checkout, so the installed files are what is imported.
    verified = run([str(bin_dir / "python"), "-c", f"SERVER_PACKAGES = {SERVER_PACKAGES!r}\n" + VERIFY], cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert "verified ['api.read']" in verified.stderr
    # The service's command says what to install instead of a traceback.
    command = run([str(bin_dir / "agentauth"), "serve"], cwd=tmp_path)
    assert command.returncode == 1 and "pip install 'agentauth-id[server]'" in command.stderr, command.stderr
    assert "Traceback" not in command.stderr


def test_the_server_install_serves(wheel: Path, tmp_path: Path) -> None:
    bin_dir = venv(tmp_path / "server")
    install(bin_dir, f"{wheel}[server]")
    (port,) = free_ports(1)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "AGENTAUTH_DATA_DIR": str(tmp_path / "data"),
           "AGENTAUTH_ISSUER_URL": f"http://127.0.0.1:{port}"}  # fmt: skip
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [str(bin_dir / "agentauth"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = LiveServer(f"http://127.0.0.1:{port}", process, tmp_path / "serve.log", env)
    try:
        wait_until_up(server, "/health", timeout=90)
        made = httpx.post(f"{server.url}/api/v1/agents/quickstart", json={"name": "wheel", "agent_type": "tool"})
        assert made.status_code == 201, made.text
        assert httpx.get(f"{server.url}/docs").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Traceback" not in (tmp_path / "serve.log").read_text(errors="replace")
