"""One MCP tool registry (issue 13 item 5): a tool's function, schema, order, hints and error hints are registered
in one place (``mcp/registry.py``), and what the server serves is derived from it. Once the served list was a
separate ``TOOL_ORDER`` and a tool missing from it was silently not served.

Fails when an operation the REST API runs has no tool, when a registered tool is not served, or when a tool
names an operation that its call does not run (``tests/api/test_operations.py`` runs every tool and counts).
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp.client import Client
from mcp_support import text_of
from test_mcp_inprocess import ONE_CALL_EACH, Broken

from agentauth.errors import NotFound
from agentauth.issuer.operations import OPENAPI_EXTENSION, OPERATIONS
from agentauth.mcp.registry import TOOLS, ToolRegistry
from agentauth.mcp.remote import RestBackend
from agentauth.mcp.server import build_server, tool_set
from support import app_route_table

pytestmark = pytest.mark.anyio

# The tools of an agent's own identity and tokens: they call the grant, introspection and revocation endpoints or
# verify offline, never an operation of issuer/operations.py; the approval tools call the backchannel
# authentication endpoint (CIBA) and the grant.
IDENTITY_TOOLS = {
    "discover", "quickstart", "authenticate", "refresh_token", "introspect_token", "revoke_token",
    "exchange_delegation", "verify_token", "request_approval", "approval_status",
}  # fmt: skip


def rest_operations() -> set[str]:
    """The operations the REST API runs, as its routes describe them."""
    found = set()
    for _, _, route in app_route_table():
        declared = (route.openapi_extra or {}).get(OPENAPI_EXTENSION)
        if declared is not None:
            found.add(declared["name"])
    return found


def test_every_operation_exposed_over_rest_has_exactly_one_tool() -> None:
    by_operation: dict[str, list[str]] = {}
    for entry in TOOLS.entries():
        if entry.operation is not None:
            by_operation.setdefault(entry.operation, []).append(entry.name)
    missing = sorted(rest_operations() - set(by_operation))
    assert not missing, f"operations of the REST API without an MCP tool: {missing}"
    assert rest_operations() == set(OPERATIONS) == set(by_operation)
    assert all(len(tools) == 1 for tools in by_operation.values()), by_operation
    assert {e.name for e in TOOLS.entries() if e.operation is None} == IDENTITY_TOOLS


@pytest.mark.parametrize("token_in_header", [False, True])
async def test_every_registered_tool_is_served_in_the_registrys_order(token_in_header: bool) -> None:
    registered = [e.name for e in TOOLS.entries()]
    assert [t.name for t in tool_set(token_in_header)] == registered
    server = build_server(RestBackend("http://127.0.0.1:9"), token_in_header=token_in_header)
    async with Client(server) as client:
        listed = (await client.list_tools()).tools
    assert [t.name for t in listed] == registered
    orders = [e.order for e in TOOLS.entries()]
    assert orders == sorted(set(orders))
    for tool, entry in zip(listed, TOOLS.entries(), strict=True):
        assert tool.title == entry.hints.title and tool.annotations is not None
        assert tool.annotations.read_only_hint == entry.hints.read_only_hint, tool.name


def test_a_registration_mistake_fails_at_once() -> None:
    registry = ToolRegistry()
    hints = TOOLS.entries()[0].hints

    async def some_tool() -> None: ...

    registry.tool(order=1, hints=hints)(some_tool)
    with pytest.raises(ValueError, match="registered twice"):
        registry.tool(order=2, hints=hints)(some_tool)

    async def other_tool() -> None: ...

    with pytest.raises(ValueError, match="order 1 is some_tool's"):
        registry.tool(order=1, hints=hints)(other_tool)
    with pytest.raises(LookupError, match=r"no operation named .agents\.fly."):
        registry.tool(order=3, hints=hints, operation="agents.fly")(other_tool)
    assert [e.name for e in registry.entries()] == ["some_tool"]


async def test_a_tools_own_error_hint_replaces_the_general_one() -> None:
    async with Client(build_server(Broken(NotFound("no such policy")), token_in_header=False)) as client:
        policy = text_of(await client.call_tool("get_policy", ONE_CALL_EACH["get_policy"]))
        agent = text_of(await client.call_tool("get_agent", ONE_CALL_EACH["get_agent"]))
    assert (
        policy
        == "not_found: no such policy. No such policy in your tenant: list_policies shows the policy ids you can use."
    )
    assert agent.startswith("not_found: no such policy. The id does not exist in your part of the tenant: list_agents")


def test_tool_names_and_operations_match_the_contract() -> None:
    # The 19 documented tools keep their names (tests/mcp/test_mcp_tool_list.py checks their parameters).
    names: dict[str, Any] = {e.name: e.operation for e in TOOLS.entries()}
    assert names["get_agent"] == "agents.get" and names["check_permission"] == "policies.evaluate"
    assert names["revoke_credential"] == "credentials.revoke" and names["delete_policy"] == "policies.delete"
