"""``list_tools`` shows every tool with the documented parameter names, types, required flags and defaults.

Over HTTP an access token may come from the Authorization header, so ``access_token`` is optional there; over
stdio (no headers) the schema marks it required, as the MCP issue documents it.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp.client import Client
from mcp_support import RunningServer, http_session
from mcp_types import Tool

from agentauth.mcp.remote import RestBackend
from agentauth.mcp.server import build_server

pytestmark = pytest.mark.anyio

REQUIRED = object()  # no default: the caller must give it
S, INT, N, OBJ, B = "string", "integer", "null", "object", "boolean"
STRINGS = ("array", "string")
AGENT_TYPES = ("enum", ("orchestrator", "autonomous", "assistant", "tool"))
TRUST = ("enum", ("untrusted", "basic", "verified", "trusted"))
ACTIONS = ("enum", ("read", "write", "delete", "execute", "delegate", "admin"))
TOKEN = "<access_token>"  # resolved per transport
PAGE = {"limit": ([INT], 50), "offset": ([INT], 0)}
POLICY = {
    "name": ([S], REQUIRED),
    "effect": ([("enum", ("allow", "deny", "require_approval"))], REQUIRED),
    "subjects": ([OBJ], REQUIRED),
    "actions": ([STRINGS], REQUIRED),
    "resources": ([STRINGS], REQUIRED),
    "access_token": TOKEN,
    "description": ([S, N], None),
    "conditions": ([OBJ, N], None),
    "priority": ([INT], 0),
    "enabled": (["boolean"], True),
}
RESOURCE_SERVER = {
    "name": ([S], REQUIRED),
    "access_token": TOKEN,
    "kind": ([("enum", ("rest", "mcp", "cli"))], "rest"),
    "scopes": ([("array", "#/$defs/ResourceScope"), N], None),
    "access": ([("enum", ("own_tenant", "any_agent", "tenants"))], "own_tenant"),
    "allowed_tenants": ([STRINGS, N], None),
}

# tool -> parameter -> (types, default or REQUIRED)
EXPECTED: dict[str, dict[str, Any]] = {
    "discover": {},
    "quickstart": {
        "name": ([S], REQUIRED),
        "agent_type": ([AGENT_TYPES], REQUIRED),
        "description": ([S, N], None),
        "public_key": ([S, OBJ, N], None),
        "registration_token": ([S, N], None),
    },
    "authenticate": {"api_key": ([S, N], None), "scopes": ([STRINGS, N], None)},
    "refresh_token": {"refresh_token_value": ([S, N], None)},
    "introspect_token": {"token": ([S], REQUIRED), "access_token": ([S, N], None)},
    "revoke_token": {"token": ([S], REQUIRED), "access_token": ([S, N], None)},
    "create_credential": {
        "agent_id": ([S], REQUIRED),
        "access_token": TOKEN,
        "scopes": ([STRINGS, N], None),
        "name": ([S, N], None),
        "expires_in_days": ([INT, N], None),
    },
    "rotate_credential": {"credential_id": ([S], REQUIRED), "access_token": TOKEN},
    "revoke_credential": {"credential_id": ([S], REQUIRED), "access_token": TOKEN},
    "create_delegation": {
        "delegate_agent_id": ([S], REQUIRED),
        "scopes": ([STRINGS], REQUIRED),
        "access_token": TOKEN,
        "max_chain_depth": ([INT], 3),
        "expires_in_hours": ([INT, N], None),
    },
    "check_permission": {
        "agent_id": ([S], REQUIRED),
        "action": ([ACTIONS], REQUIRED),
        "resource": ([S], REQUIRED),
        "access_token": TOKEN,
    },
    "list_agents": {"access_token": TOKEN, **PAGE},
    "get_agent": {"agent_id": ([S], REQUIRED), "access_token": TOKEN},
    "list_credentials": {"access_token": TOKEN, "agent_id": ([S, N], None), **PAGE},
    "list_delegations": {"access_token": TOKEN, "role": ([("enum", ("delegator", "delegate")), N], None), **PAGE},
    "revoke_delegation": {"delegation_id": ([S], REQUIRED), "access_token": TOKEN},
    "create_agent": {
        "name": ([S], REQUIRED),
        "agent_type": ([AGENT_TYPES], REQUIRED),
        "access_token": TOKEN,
        "description": ([S, N], None),
        "scopes": ([STRINGS, N], None),
        "trust_level": ([TRUST, N], None),
        "public_key": ([S, OBJ, N], None),
        # Issue 15 item 2: added after the documented parameters, optional, so the contract holds.
        "require_dpop": ([B, N], None),
        "bind_to_agent_key": ([B, N], None),
        "backchannel_token_delivery_mode": ([("enum", ("poll", "ping")), N], None),
        "backchannel_client_notification_endpoint": ([S, N], None),
    },
    "verify_token": {"token": ([S], REQUIRED), "audience": ([S, N], None)},
    "exchange_delegation": {"credential": ([S], REQUIRED), "access_token": TOKEN, "scopes": ([STRINGS, N], None)},
    # Issue 13 item 5: every operation of the REST API has a tool; these were added after the documented ones.
    "update_agent": {
        "agent_id": ([S], REQUIRED),
        "access_token": TOKEN,
        "name": ([S, N], None),
        "description": ([S, N], None),
        "trust_level": ([TRUST, N], None),
        "require_dpop": ([B, N], None),
        "bind_to_agent_key": ([B, N], None),
        "backchannel_token_delivery_mode": ([("enum", ("poll", "ping")), N], None),
        "backchannel_client_notification_endpoint": ([S, N], None),
    },
    "deactivate_agent": {"agent_id": ([S], REQUIRED), "access_token": TOKEN},
    "get_credential": {"credential_id": ([S], REQUIRED), "access_token": TOKEN},
    "get_delegation": {"delegation_id": ([S], REQUIRED), "access_token": TOKEN},
    "get_delegation_chain": {"delegation_id": ([S], REQUIRED), "access_token": TOKEN},
    "create_policy": POLICY,
    "list_policies": {"access_token": TOKEN},
    "get_policy": {"policy_id": ([S], REQUIRED), "access_token": TOKEN},
    "replace_policy": {"policy_id": ([S], REQUIRED), **POLICY},
    "delete_policy": {"policy_id": ([S], REQUIRED), "access_token": TOKEN},
    "list_audit_events": {
        "access_token": TOKEN,
        "limit": ([INT], 50),
        "cursor": ([S, N], None),
        "action": ([S, N], None),
        "outcome": ([("enum", ("success", "failure")), N], None),
        "actor": ([S, N], None),
        "target_id": ([S, N], None),
        "since": ([S, N], None),
    },
    "register_resource_server": {"identifier": ([S], REQUIRED), **RESOURCE_SERVER},
    "list_resource_servers": {"access_token": TOKEN, **PAGE},
    "get_resource_server": {"server_id": ([S], REQUIRED), "access_token": TOKEN},
    "update_resource_server": {"server_id": ([S], REQUIRED), **RESOURCE_SERVER},
    "delete_resource_server": {"server_id": ([S], REQUIRED), "access_token": TOKEN},
    "create_webhook": {
        "url": ([S], REQUIRED), "access_token": TOKEN, "events": ([STRINGS, N], None), "description": ([S, N], None),
    },
    "list_webhooks": {"access_token": TOKEN, **PAGE},
    "get_webhook": {"webhook_id": ([S], REQUIRED), "access_token": TOKEN},
    "update_webhook": {
        "webhook_id": ([S], REQUIRED), "access_token": TOKEN, "url": ([S, N], None), "events": ([STRINGS, N], None),
        "description": ([S, N], None), "active": ([B, N], None),
    },
    "delete_webhook": {"webhook_id": ([S], REQUIRED), "access_token": TOKEN},
    "list_webhook_deliveries": {
        "webhook_id": ([S], REQUIRED), "access_token": TOKEN, "limit": ([INT], 50), "before": ([INT, N], None),
    },
    "retry_webhook_delivery": {"webhook_id": ([S], REQUIRED), "delivery_id": ([INT], REQUIRED), "access_token": TOKEN},
    "request_approval": {
        "login_hint": ([S], REQUIRED), "authorization_details": ([("array", "object"), N], None),
        "binding_message": ([S, N], None), "scopes": ([STRINGS, N], None), "requested_expiry": ([INT, N], None),
        "single_use": ([B], False), "api_key": ([S, N], None),
    },
    "approval_status": {"auth_req_id": ([S], REQUIRED), "api_key": ([S, N], None)},
    "get_audit_activity": {"access_token": TOKEN, "hours": ([INT], 24)},
    "suspend_agent": {"agent_id": ([S], REQUIRED), "access_token": TOKEN},
    "resume_agent": {"agent_id": ([S], REQUIRED), "access_token": TOKEN},
}  # fmt: skip
READ_ONLY = {
    "discover",
    "introspect_token",
    "check_permission",
    "list_agents",
    "get_agent",
    "list_credentials",
    "list_delegations",
    "verify_token",
    "get_credential",
    "get_delegation",
    "get_delegation_chain",
    "list_policies",
    "get_policy",
    "list_audit_events",
    "list_resource_servers",
    "get_resource_server",
    "list_webhooks",
    "get_webhook",
    "list_webhook_deliveries",
    "approval_status",
    "get_audit_activity",
}
DESTRUCTIVE = {
    "revoke_token", "rotate_credential", "revoke_credential", "revoke_delegation", "deactivate_agent", "delete_policy",
    "delete_resource_server", "delete_webhook", "suspend_agent",
}  # fmt: skip
SHOWN_ONCE = {"quickstart", "create_credential", "rotate_credential", "create_agent", "create_webhook"}


def kind(schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return ("enum", tuple(schema["enum"]))
    if schema.get("type") == "array":
        return ("array", schema["items"].get("type", schema["items"].get("$ref")))
    return schema["type"]


def parameters(tool: Tool) -> dict[str, Any]:
    schema = tool.input_schema
    required = set(schema.get("required", []))
    found = {}
    for name, prop in schema["properties"].items():
        types = [kind(v) for v in prop.get("anyOf", [prop])]
        if name in required:
            assert "default" not in prop, (tool.name, name)
            found[name] = (types, REQUIRED)
        else:
            found[name] = (types, prop.get("default"))
    return found


def check(tools: list[Tool], token_in_header: bool) -> None:
    token = ([S, N], None) if token_in_header else ([S], REQUIRED)
    assert [t.name for t in tools] == list(EXPECTED)
    for tool in tools:
        expected = {name: token if spec == TOKEN else spec for name, spec in EXPECTED[tool.name].items()}
        assert parameters(tool) == expected, tool.name
        assert tool.annotations is not None and tool.description and tool.title
        assert tool.annotations.read_only_hint is (tool.name in READ_ONLY), tool.name
        if tool.name in DESTRUCTIVE:
            assert tool.annotations.destructive_hint is True, tool.name
        elif tool.name not in READ_ONLY:
            assert tool.annotations.destructive_hint is False, tool.name
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        # Descriptions written for a model: what to save, where something is shown only once.
        if tool.name in SHOWN_ONCE:
            assert "SAVE" in tool.description and "once" in tool.description, tool.name


async def test_tools_over_http(server: RunningServer) -> None:
    async with http_session(f"{server.url}/mcp") as session:
        listed = await session.list_tools()
    check(listed.tools, token_in_header=True)
    assert listed.tools[0].input_schema["properties"] == {}


async def test_tools_over_stdio() -> None:
    # The server object `agentauth-mcp` builds (the stdio flow test checks the same over a real subprocess).
    server = build_server(RestBackend("http://127.0.0.1:9"), token_in_header=False)
    async with Client(server) as client:
        listed = await client.list_tools()
    check(listed.tools, token_in_header=False)
    quickstart = next(t for t in listed.tools if t.name == "quickstart")
    assert quickstart.output_schema is not None
    assert {"api_key", "private_key_jwk", "identity_credential", "access_token", "refresh_token", "agent"} <= set(
        quickstart.output_schema["properties"]
    )
