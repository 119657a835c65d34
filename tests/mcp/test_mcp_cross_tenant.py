"""The documented delegation flow between two quickstart agents - two tenants (issue 12 item 16) - with the
official MCP client: in memory against the embedded server on SQLite and PostgreSQL, and over streamable HTTP
against a running ``agentauth serve``."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from mcp.client import Client
from mcp_support import RunningServer, call, fail, http_session, secrets_of

from agentauth.bootstrap import Services
from agentauth.mcp.embedded import EmbeddedBackend
from agentauth.mcp.server import build_server

pytestmark = pytest.mark.anyio


def payload(jwt: str) -> dict[str, Any]:
    segment = jwt.split(".")[1]
    body: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return body


async def cross_tenant_flow(session: Any) -> list[str]:
    """quickstart twice -> create_delegation to the second -> check_permission allowed and denied -> each sees
    the other as a peer -> no management of the peer -> exchange_delegation (sub the delegator, act the delegate)
    -> revoke_delegation -> the exchanged token is inactive online and offline. Returns the secrets it saw."""
    first = await call(session, "quickstart", name="lender", agent_type="orchestrator")
    second = await call(session, "quickstart", name="borrower", agent_type="assistant")
    lender, borrower = first["agent"], second["agent"]
    assert lender["tenant_id"] != borrower["tenant_id"]
    a_token, b_token = first["access_token"], second["access_token"]

    delegation = await call(
        session, "create_delegation", delegate_agent_id=borrower["id"], scopes=["api.write"], access_token=a_token
    )
    assert delegation["delegator_agent_id"] == lender["id"] and delegation["delegate_agent_id"] == borrower["id"]

    check = {"agent_id": borrower["id"], "resource": "files/q3.pdf", "access_token": a_token}
    allowed = await call(session, "check_permission", action="write", **check)
    assert allowed["allowed"] is True and allowed["delegation_id"] == delegation["id"]
    for action in ("admin", "read"):  # read: the borrower holds api.read in its own tenant, which counts for nothing
        assert (await call(session, "check_permission", action=action, **check))["allowed"] is False

    for token, peer in ((b_token, lender), (a_token, borrower)):
        seen = await call(session, "get_agent", agent_id=peer["id"], access_token=token)
        assert seen["relationship"] == "delegation_peer" and seen["did"] == peer["did"] and seen["scopes"] == []
        listed = await call(session, "list_agents", access_token=token)
        assert listed["total"] == 2 and peer["id"] in {a["id"] for a in listed["items"]}

    # No management of the peer, whichever way.
    for token, peer, key_id in ((b_token, lender, first["api_key_id"]), (a_token, borrower, second["api_key_id"])):
        for tool, args in (
            ("rotate_credential", {"credential_id": key_id}),
            ("revoke_credential", {"credential_id": key_id}),
            ("create_credential", {"agent_id": peer["id"]}),
            ("list_credentials", {"agent_id": peer["id"]}),
        ):
            assert (await fail(session, tool, access_token=token, **args)).startswith("not_found: "), tool
    assert (await fail(session, "revoke_delegation", delegation_id=delegation["id"], access_token=b_token)).startswith(
        "access_denied: "
    )
    assert (await call(session, "authenticate", api_key=first["api_key"]))["access_token"]

    exchanged = await call(session, "exchange_delegation", credential=delegation["credential"], access_token=b_token)
    claims = payload(exchanged["access_token"])
    assert claims["sub"] == lender["did"] and claims["act"] == {"sub": borrower["did"]}
    assert claims["scope"] == "api.write" and claims["vc"]["credentialSubject"]["tenantId"] == lender["tenant_id"]
    assert (await call(session, "verify_token", token=exchanged["access_token"]))["valid"] is True

    await call(session, "revoke_delegation", delegation_id=delegation["id"], access_token=a_token)
    inactive = await call(session, "introspect_token", token=exchanged["access_token"], access_token=b_token)
    assert inactive == {"active": False}
    verdict = await call(session, "verify_token", token=exchanged["access_token"])
    assert verdict["valid"] is False and verdict["reason"] == "revoked"
    assert (await fail(session, "get_agent", agent_id=lender["id"], access_token=b_token)).startswith("not_found: ")
    return secrets_of(first, second, exchanged)


async def test_cross_tenant_flow_in_memory(services: Services) -> None:
    async with Client(build_server(EmbeddedBackend(lambda: services), token_in_header=False)) as client:
        await cross_tenant_flow(client)


async def test_cross_tenant_flow_over_streamable_http(server: RunningServer) -> None:
    async with http_session(f"{server.url}/mcp") as session:
        server.secrets += await cross_tenant_flow(session)
