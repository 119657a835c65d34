"""The approval tools (issue 17 item 2) through the official MCP client: ``request_approval`` and
``approval_status`` of ``agentauth-mcp`` pointed at a running server (AGENTAUTH_URL), the API key from the
environment (no secret argument): pending, then - once the owner approved in the console - approved, with the
token carrying the requested authorization_details."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_support import hermetic_env, stdio_session, text_of

from agentauth.sdk import OnlineVerifier
from live_server import LiveServer, free_port, issuer_env, spawn
from owner_support import ConsoleOwner

pytestmark = pytest.mark.slow
INTERVAL = 1
EMAIL = "mcp-payer@example.com"
PAYMENT = {"type": "payment", "amount": "12.50", "currency": "EUR", "creditor": "Bakery"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    env = issuer_env(tmp_path / "data", port) | {"AGENTAUTH_APPROVAL_INTERVAL_SECONDS": str(INTERVAL)}
    live = spawn(env, port, tmp_path / "issuer.log", log_level="warning")
    try:
        yield live
    finally:
        live.stop()


def test_the_mcp_approval_tools_over_stdio(server: LiveServer, tmp_path: Path) -> None:
    owner = ConsoleOwner(server.url, EMAIL, "mcp tenant")
    env = hermetic_env(AGENTAUTH_URL=server.url, AGENTAUTH_API_KEY=owner.root_key)

    async def run() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with stdio_session(env, tmp_path / "mcp.log") as session:
            asked = await session.call_tool("request_approval", {
                "login_hint": EMAIL, "binding_message": "Pay invoice 3001", "authorization_details": [PAYMENT],
            })  # fmt: skip
            assert not asked.is_error, text_of(asked)
            auth_req_id = asked.structured_content["auth_req_id"]
            waiting = await session.call_tool("approval_status", {"auth_req_id": auth_req_id})
            await anyio.to_thread.run_sync(
                lambda: owner.post(f"/console/{owner.tenant}/approvals/{owner.pending_approval()}/approve")
            )
            await anyio.sleep(INTERVAL + 0.2)
            done = await session.call_tool("approval_status", {"auth_req_id": auth_req_id})
            assert not done.is_error, text_of(done)
            return asked.structured_content or {}, waiting.structured_content or {}, done.structured_content or {}

    asked, waiting, done = anyio.run(run)
    assert asked["interval"] == INTERVAL and waiting["status"] == "pending"
    assert done["status"] == "approved" and done["token"]["access_token"].count(".") == 2
    with OnlineVerifier(server.url) as verifier:
        claims = verifier.verify_access_token(done["token"]["access_token"], audience=server.url).claims
    assert claims["authorization_details"] == [PAYMENT]
    owner.http.close()
