"""The issuer judges its own access tokens without leeway on ``exp`` (issue 12, item 10).

A third-party verifier tolerates clock skew (the SDK's ``leeway_seconds``, 30 s by default); the issuer does not
need to, and must not: introspection answers ``active: false`` from ``exp`` on, so every protected REST route and
every MCP tool refuses the token from that same second, including a token whose verification is already cached.
The service's clock (``services.core.clock``) is moved; nothing waits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from mcp.client import Client
from mcp_types import CallToolResult, TextContent
from security_support import decode

from agentauth.bootstrap import Services
from agentauth.mcp.embedded import EmbeddedBackend
from agentauth.mcp.server import build_server
from agentauth.vc import VerificationError, Verifier
from support import assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio

INTROSPECT = "/api/v1/auth/introspect"


def _text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


@pytest.fixture
async def mcp(services: Services) -> AsyncIterator[Client]:
    async with Client(build_server(EmbeddedBackend(lambda: services), token_in_header=False)) as client:
        yield client


def at(services: Services, monkeypatch: pytest.MonkeyPatch, moment: float) -> None:
    monkeypatch.setattr(services.core, "clock", lambda: datetime.fromtimestamp(moment, UTC))


@pytest.mark.parametrize("after", [0, 1, 29])
async def test_own_token_is_refused_from_exp_on_everywhere(
    client: httpx.AsyncClient, services: Services, mcp: Client, monkeypatch: pytest.MonkeyPatch, after: int
) -> None:
    tenant = await quickstart(client, "expiring")
    token, key = tenant["access_token"], tenant["api_key"]
    payload = _claims(token)

    # One second before exp: accepted on a route and through MCP, which also fills the verified-token cache.
    at(services, monkeypatch, payload["exp"] - 1)
    assert ok(await client.get("/api/v1/agents", headers=bearer(token)))["total"] == 1
    listed = await mcp.call_tool("list_agents", {"access_token": token})
    assert not listed.is_error, _text(listed)
    assert ok(await client.post(INTROSPECT, data={"token": token, "client_secret": key}))["active"] is True

    # At exp and within the 30 s a third-party verifier would tolerate: refused as introspection says.
    at(services, monkeypatch, payload["exp"] + after)
    seen = ok(await client.post(INTROSPECT, data={"token": token, "client_secret": key}))
    assert seen == {"active": False}
    assert_error(await client.get("/api/v1/agents", headers=bearer(token)), 401, "invalid_token", "route")
    assert_error(
        await client.get(f"/api/v1/agents/{tenant['agent']['id']}", headers=bearer(token)), 401, "invalid_token"
    )
    refused = await mcp.call_tool("list_agents", {"access_token": token})
    assert refused.is_error and _text(refused).startswith("invalid_token: "), _text(refused)
    # The token cannot vouch for itself either (introspect_token / revoke_token without access_token).
    itself = await mcp.call_tool("introspect_token", {"token": token})
    assert not itself.is_error and itself.structured_content == {"active": False}


async def test_exp_leeway_is_the_issuers_choice_not_a_third_partys(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The SDK keeps its documented, configurable leeway for tokens it did not sign: the same token 10 s after
    exp verifies for a third party with the default 30 s and fails with ``leeway_seconds=0``."""
    tenant = await quickstart(client, "third party")
    token = tenant["access_token"]
    later = datetime.fromtimestamp(_claims(token)["exp"] + 10, UTC)
    jwks = services.jwks()
    lenient = Verifier(issuer_url=services.settings.issuer_url, jwks=jwks, check_status=False)
    assert lenient.verify_access_token(token, now=later).claims["jti"] == _claims(token)["jti"]
    strict = Verifier(issuer_url=services.settings.issuer_url, jwks=jwks, check_status=False, leeway_seconds=0)
    with pytest.raises(VerificationError, match="expired"):
        strict.verify_access_token(token, now=later)


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = decode(token)[1]
    return claims
