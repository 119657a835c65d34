"""LangChain's MCP adapters (``langchain-mcp-adapters``, the official MCP client it is built on) over
``agentauth-mcp`` with a credentials file (issue 16 must show): no secret argument is required of the model and no
tool result LangChain passes it holds a secret. The adapters pin mcp < 2, so they run in a venv of their own made
here from the package index (``probe``); the server is this checkout's ``agentauth-mcp``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_support import hermetic_env

from live_server import BIN

ADAPTERS = "langchain-mcp-adapters==0.3.2"
PROBE = Path(__file__).with_name("langchain_probe.py")
SECRET_ARGUMENTS = {"access_token", "api_key", "refresh_token_value"}


@pytest.fixture(scope="module")
def langchain_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    venv = tmp_path_factory.mktemp("langchain") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", ADAPTERS],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    yield venv / "bin" / "python"


def test_langchain_sees_no_required_secret_and_no_secret_in_results(langchain_python: Path, tmp_path: Path) -> None:
    file = tmp_path / "agent" / "credentials.json"
    env = hermetic_env(AGENTAUTH_DATA_DIR=str(tmp_path / "data"), AGENTAUTH_CREDENTIALS_FILE=str(file))
    ran = subprocess.run(
        [str(langchain_python), str(PROBE), str(BIN / "agentauth-mcp")],
        capture_output=True, text=True, timeout=180, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    schemas, results = report["schemas"], report["results"]
    assert len(schemas) >= 40 and "quickstart" in schemas
    for name, schema in schemas.items():
        required = set(schema.get("required", []))
        assert not required & SECRET_ARGUMENTS, (name, required)
        for argument in required:
            assert "Secret" not in json.dumps(schema["properties"][argument]), (name, argument)
    assert all(not text.startswith("ERROR") for text in results.values()), results
    held = json.loads(file.read_text())
    secrets = [held["api_key"], held["private_key_jwk"]["d"], held["refresh_token"]]
    secrets += [json.loads(p.read_text()).get("access_token") for p in file.parent.glob("*.secrets/*.json")]
    for name, text in results.items():
        for secret in filter(None, secrets):
            assert secret not in text, f"{name} showed a secret to the model"
    assert f"<secret stored in {file}>" in results["quickstart"]
    assert "langchain-agent" in results["list_agents"]
