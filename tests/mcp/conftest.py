"""One real ``agentauth serve`` for the MCP tests of a run (started once: spawning costs about a second), and
one per backend (SQLite, and PostgreSQL when enabled) for a module that runs the documented flow on each."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from mcp_support import RunningServer, start_server

from support import BACKENDS, POSTGRES_URL, reset_postgres


def assert_no_secret_logged(running: RunningServer) -> None:
    """Tokens, API keys and private keys never appear in the server's log, whatever the tests did."""
    log = running.log_text()
    leaked = [s[:12] + "..." for s in running.secrets if s in log]
    assert not leaked, f"secrets in the server log: {leaked}"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("mcp-server"))
    try:
        yield running
    finally:
        running.stop()
    assert_no_secret_logged(running)


@pytest.fixture(scope="module", params=BACKENDS)
def backend_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``agentauth serve`` on a fresh database of the backend, for the tests of one module."""
    settings = {}
    if request.param == "postgres":
        asyncio.run(reset_postgres())
        settings["AGENTAUTH_DATABASE_URL"] = POSTGRES_URL
    running = start_server(tmp_path_factory.mktemp(f"mcp-{request.param}"), **settings)
    try:
        yield running
    finally:
        running.stop()
    assert_no_secret_logged(running)
