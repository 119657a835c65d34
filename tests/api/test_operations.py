"""The action of an operation is a property of the operation (issue 12, item 3): every authenticated REST route and
every MCP tool names exactly one operation of ``issuer/operations.py``; twins (``DELETE /agents/{id}`` and
``POST /agents/{id}/deactivate``, ...) and the MCP tools name the same one; and a deny policy on ``delete``
refuses every way of running a delete operation, changing nothing. Once the POST twins and the MCP revoke tools
counted as ``write`` and went through.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from api_support import assert_unchanged, snapshot
from fastapi.routing import APIRoute
from mcp.client import Client
from mcp.types import TextContent

from agentauth.api.deps import Authorized
from agentauth.bootstrap import Services
from agentauth.errors import NotFound
from agentauth.issuer.context import RequestContext
from agentauth.issuer.operations import OPERATIONS, ApiOperation
from agentauth.issuer.schemas import QuickstartRequest, QuickstartResponse, TokenResponse
from agentauth.mcp.backend import Operation, R, VerificationMaterial
from agentauth.mcp.embedded import EmbeddedBackend
from agentauth.mcp.server import build_server
from support import app_route_table, assert_error, bearer, ok, path_params, quickstart, requires_principal

pytestmark = pytest.mark.anyio

# Routes that authenticate nobody, or authenticate the caller themselves for their own token (RFC 7662 / 7009):
# no operation of the policy engine. A new route must be added here or declare an operation.
UNJUDGED_ROUTES = {
    ("GET", "/.well-known/agent-configuration"), ("GET", "/.well-known/did.json"),
    ("GET", "/.well-known/jwks.json"), ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/.well-known/oauth-protected-resource"), ("GET", "/.well-known/oauth-protected-resource/mcp"),
    ("GET", "/health"), ("GET", "/api/v1/agents/{agent_id}/did.json"), ("POST", "/api/v1/agents/quickstart"),
    ("GET", "/api/v1/auth/jwks"), ("POST", "/api/v1/auth/token"), ("POST", "/api/v1/auth/introspect"),
    ("POST", "/api/v1/auth/token/introspect"), ("POST", "/api/v1/auth/revoke"), ("POST", "/api/v1/auth/token/revoke"),
    ("GET", "/api/v1/status-lists/{list_id}"),
}  # fmt: skip
# The MCP tools of an agent's own identity and tokens: they call the backend's grant, introspection and
# revocation entry points, never an operation.
IDENTITY_TOOLS = {
    "discover", "quickstart", "authenticate", "refresh_token", "introspect_token", "revoke_token",
    "exchange_delegation", "verify_token",
}  # fmt: skip
TWINS = {
    "agents.deactivate": {("DELETE", "/api/v1/agents/{agent_id}"), ("POST", "/api/v1/agents/{agent_id}/deactivate")},
    "credentials.revoke": {
        ("DELETE", "/api/v1/credentials/{credential_id}"),
        ("POST", "/api/v1/credentials/{credential_id}/revoke"),
    },
    "delegations.revoke": {
        ("DELETE", "/api/v1/delegations/{delegation_id}"),
        ("POST", "/api/v1/delegations/{delegation_id}/revoke"),
    },
}


def declared(route: APIRoute) -> list[ApiOperation]:
    """The operations a route's dependencies (at any depth) declare."""
    found, pending = [], list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if isinstance(dependency.call, Authorized):
            found.append(dependency.call.operation)
        pending.extend(dependency.dependencies)
    return found


def operations_of_routes() -> dict[tuple[str, str], ApiOperation]:
    table: dict[tuple[str, str], ApiOperation] = {}
    for method, path, route in app_route_table():
        operations = declared(route)
        if (method, path) in UNJUDGED_ROUTES:
            assert not operations and not requires_principal(route), (method, path)
            continue
        assert requires_principal(route), f"{method} {path} authenticates nobody and is not listed as such"
        assert len(operations) == 1, f"{method} {path} declares {len(operations)} operations: {operations}"
        assert operations[0].params == set(path_params(path)), f"{method} {path}: ids of {operations[0]}"
        table[method, path] = operations[0]
    return table


def test_every_route_declares_exactly_one_operation() -> None:
    table = operations_of_routes()
    assert {op.name for op in table.values()} == set(OPERATIONS), "an operation no route runs, or one undeclared"
    for name, twins in TWINS.items():
        assert {key for key, op in table.items() if op.name == name} == twins
        assert OPERATIONS[name].action == "delete"
    # Where the verb says delete, the operation says so too; the twins above are the POSTs that also delete.
    for (method, _), op in table.items():
        assert (method == "DELETE") <= (op.action == "delete"), (method, op)
        assert (method == "GET") <= (op.action == "read"), (method, op)


class Recorder:
    """A backend that records the operation a tool runs, then answers not_found."""

    def __init__(self) -> None:
        self.operations: list[Operation[Any]] = []

    async def call(self, operation: Operation[R], access_token: str, ctx: RequestContext) -> R:
        self.operations.append(operation)
        raise NotFound("recorded")

    async def discover(self) -> dict[str, Any]:
        raise NotFound("recorded")

    async def quickstart(self, request: QuickstartRequest, ctx: RequestContext) -> QuickstartResponse:
        raise NotFound("recorded")

    async def token(self, params: dict[str, str], ctx: RequestContext) -> TokenResponse:
        raise NotFound("recorded")

    async def introspect(self, caller: str, token: str, ctx: RequestContext) -> dict[str, Any]:
        raise NotFound("recorded")

    async def revoke(self, caller: str, token: str, ctx: RequestContext) -> None:
        raise NotFound("recorded")

    async def verification_material(self) -> VerificationMaterial:
        raise NotFound("recorded")

    async def status_list(self, url: str) -> str | None:
        return None


def argument(schema: dict[str, Any]) -> Any:
    """A valid value for one parameter of a tool's input schema."""
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return argument(option)
    if "enum" in schema:
        return schema["enum"][0]
    return {"string": "agt_x1", "integer": 1, "boolean": False, "array": ["api.read"]}[schema["type"]]


def route_of(method: str, path: str, table: dict[tuple[str, str], ApiOperation]) -> ApiOperation:
    matching = [
        op
        for (m, template), op in table.items()
        if m == method and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path)
    ]
    assert len(matching) == 1, f"{method} {path} is {len(matching)} routes"
    return matching[0]


async def test_every_mcp_tool_names_the_operation_of_the_route_it_mirrors() -> None:
    routes = operations_of_routes()
    recorder = Recorder()
    async with Client(build_server(recorder, token_in_header=False)) as client:
        tools = (await client.list_tools()).tools
        assert len(tools) > 15
        for tool in tools:
            schema = tool.input_schema
            arguments = {name: argument(schema["properties"][name]) for name in schema.get("required", [])}
            arguments.setdefault("access_token", "t")
            arguments = {k: v for k, v in arguments.items() if k in schema["properties"]}
            before = len(recorder.operations)
            result = await client.call_tool(tool.name, arguments)
            assert result.is_error, tool.name
            ran = recorder.operations[before:]
            if tool.name in IDENTITY_TOOLS:
                assert not ran, tool.name
                continue
            text = " ".join(b.text for b in result.content if isinstance(b, TextContent))
            assert len(ran) == 1, f"{tool.name} ran {len(ran)} operations: {text}"
            op = OPERATIONS[ran[0].name]
            assert route_of(ran[0].method, ran[0].path, routes) == op, tool.name  # the REST route's operation
            assert op.resource_for(ran[0].ids)  # exactly the ids its resource takes
    by_tool = {o.name for o in recorder.operations}
    assert {"credentials.revoke", "delegations.revoke"} <= by_tool


# -- a deny on delete refuses every twin and tool, and nothing changes ----------------------------------------------


async def test_a_deny_on_delete_refuses_every_twin_and_mcp_tool(client: httpx.AsyncClient, services: Services) -> None:
    root = await quickstart(client, "root")
    auth = bearer(root["access_token"])
    created = ok(await client.post("/api/v1/agents", json={"name": "c", "agent_type": "tool"}, headers=auth), 201)
    child = created["agent"]["id"]
    key = ok(await client.post("/api/v1/credentials", json={"agent_id": child}, headers=auth), 201)["id"]
    grant = {"delegate_agent_id": child, "scopes": ["agents.read"]}
    delegation = ok(await client.post("/api/v1/delegations", json=grant, headers=auth), 201)["id"]
    deny = {
        "name": "nothing is deleted",
        "effect": "deny",
        "subjects": {"all": True},
        "actions": ["delete"],
        "resources": ["**"],
        "priority": 0,
    }
    ok(await client.post("/api/v1/policies", json=deny, headers=auth), 201)
    before = await snapshot(services)

    for method, path in [
        ("POST", f"/api/v1/agents/{child}/deactivate"),
        ("DELETE", f"/api/v1/agents/{child}"),
        ("POST", f"/api/v1/credentials/{key}/revoke"),
        ("DELETE", f"/api/v1/credentials/{key}"),
        ("POST", f"/api/v1/delegations/{delegation}/revoke"),
        ("DELETE", f"/api/v1/delegations/{delegation}"),
    ]:
        refused = await client.request(method, path, headers=auth)
        body = assert_error(refused, 403, "access_denied", f"{method} {path}")
        assert "nothing is deleted" in body["error_description"]

    async with Client(build_server(EmbeddedBackend(lambda: services), token_in_header=False)) as mcp:
        for tool, arguments in [
            ("revoke_credential", {"credential_id": key}),
            ("revoke_delegation", {"delegation_id": delegation}),
        ]:
            result = await mcp.call_tool(tool, {**arguments, "access_token": root["access_token"]})
            text = " ".join(b.text for b in result.content if isinstance(b, TextContent))
            assert result.is_error and text.startswith("access_denied: denied by policy"), (tool, text)
            assert "nothing is deleted" in text

    await assert_unchanged(services, before, "after refused deletes")
    assert ok(await client.get(f"/api/v1/agents/{child}", headers=auth))["is_active"] is True
    assert ok(await client.get(f"/api/v1/credentials/{key}", headers=auth))["status"] == "active"
    assert ok(await client.get(f"/api/v1/delegations/{delegation}", headers=auth))["status"] == "active"
    # A deny on delete takes nothing else away: writes still go through.
    ok(await client.post("/api/v1/agents", json={"name": "d", "agent_type": "tool"}, headers=auth), 201)
