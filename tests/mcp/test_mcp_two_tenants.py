"""The documented MCP flow across two tenants (issue 12, "Must show"), end to end against ``agentauth serve`` on
SQLite and on PostgreSQL, with the official Python client and the official TypeScript client (under Node 22,
installed from the npm registry into the git-ignored tests/mcp/ts/node_modules by ``.ci/run``)."""

from __future__ import annotations

import json
import subprocess

import pytest
from mcp_support import TS_DIR, TS_SDK, RunningServer, http_session, run_ts, ts_node, two_tenant_flow

NODE_MAJOR = 22


def test_typescript_client_is_installed() -> None:
    version = subprocess.run([str(ts_node()), "--version"], capture_output=True, text=True, check=True, timeout=30)
    assert int(version.stdout.strip().lstrip("v").split(".")[0]) >= NODE_MAJOR, version.stdout
    pinned = json.loads((TS_DIR / "package.json").read_text())["dependencies"]["@modelcontextprotocol/sdk"]
    assert json.loads(TS_SDK.read_text())["version"] == pinned


@pytest.mark.anyio
async def test_two_tenant_flow_python_client(backend_server: RunningServer) -> None:
    async with http_session(f"{backend_server.url}/mcp") as session:
        backend_server.secrets += await two_tenant_flow(session)


def test_two_tenant_flow_typescript_client(backend_server: RunningServer) -> None:
    flow = run_ts("two_tenant_flow.mjs", f"{backend_server.url}/mcp")
    report = json.loads(flow.stdout.strip().splitlines()[-1]) if flow.stdout.strip() else {}
    backend_server.secrets += report.get("secrets", [])
    assert flow.returncode == 0, f"{flow.stderr}\nsteps done: {report.get('steps')}"
    assert report["steps"][0] == "quickstart" and report["steps"][-1] == "introspect_token"
