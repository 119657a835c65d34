"""The product document's Python example runs verbatim against ``agentauth serve`` (issue 12, item 19):
examples/mcp_client_v1.py with the mcp 1.x client it was written for (``streamablehttp_client``), in a venv of
its own (cached in .venv/mcp-v1: pip install takes a while), and examples/mcp_client.py, its mcp 2.x spelling
(``streamable_http_client``), with the project's own venv."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mcp_support import RunningServer

from live_server import REPO

# Pinned so the run is reproducible; the document names the 1.x line. A change here rebuilds the venv.
MCP_V1 = "mcp==1.30.0"
V1_VENV = REPO / ".venv" / "mcp-v1"
INSTALL_SECONDS = 600
RUN_SECONDS = 60
OFFLINE_SIGNS = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """One installer at a time (pytest-xdist workers share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def mcp_v1_python() -> Path:
    python = V1_VENV / "bin" / "python"
    stamp = V1_VENV / f".installed-{MCP_V1}"
    with locked(V1_VENV.parent / "mcp-v1.lock"):
        if not stamp.exists():
            shutil.rmtree(V1_VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(V1_VENV)], check=True, timeout=120)
            install = subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", MCP_V1],
                check=False,
                capture_output=True,
                text=True,
                timeout=INSTALL_SECONDS,
            )
            if install.returncode != 0:
                shutil.rmtree(V1_VENV, ignore_errors=True)
                if not in_ci() and any(sign in install.stderr for sign in OFFLINE_SIGNS):
                    pytest.skip(f"PyPI is unreachable, so {MCP_V1} cannot be installed: {install.stderr[-300:]}")
                pytest.fail(f"pip install {MCP_V1} failed:\n{install.stderr[-3000:]}")
            stamp.touch()
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('mcp'))"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.stdout.strip().startswith("1."), version.stdout
    return python


def run_example(python: Path, script: str, server: RunningServer) -> dict[str, object]:
    """The example as a user runs it (only the URL differs: the server is on a free port), and what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    env["AGENTAUTH_MCP_URL"] = f"{server.url}/mcp"
    done = subprocess.run(
        [str(python), str(REPO / "examples" / script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed: dict[str, object] = json.loads(done.stdout)  # list_agents' answer: the JSON of the agent page
    return printed


def assert_listed_itself(printed: dict[str, object]) -> None:
    assert printed["total"] == 1, printed
    items = printed["items"]
    assert isinstance(items, list) and items[0]["name"] == "my-agent" and items[0]["is_root"] is True


def test_documented_example_runs_with_mcp_v1(mcp_v1_python: Path, server: RunningServer) -> None:
    assert_listed_itself(run_example(mcp_v1_python, "mcp_client_v1.py", server))


def test_documented_example_runs_with_mcp_v2(server: RunningServer) -> None:
    assert_listed_itself(run_example(Path(sys.executable), "mcp_client.py", server))
