"""One real ``agentauth serve`` for the MCP tests of a run (started once: spawning costs about a second)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mcp_support import RunningServer, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("mcp-server"))
    try:
        yield running
    finally:
        running.stop()
    # Tokens, API keys and private keys never appear in the server's log, whatever the tests did.
    log = running.log_text()
    leaked = [s[:12] + "..." for s in running.secrets if s in log]
    assert not leaked, f"secrets in the server log: {leaked}"
