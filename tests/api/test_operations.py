"""Authorization by operation (issue 13 item 4; the action part is issue 12 item 3).

* Every use case of AgentAuth's own API is bound to exactly one operation of ``issuer/operations.py``
  (``issuer/authorization.py: use_case``) and authorizes itself; a public coroutine of a service that is not bound
  must be listed in ``UNBOUND``, with the reason.
* Every authenticated REST route describes the operation it runs (OpenAPI ``x-agentauth-operation``); twins
  (``DELETE /agents/{id}`` and ``POST /agents/{id}/deactivate``, ...) run the same one.
* Whichever adapter calls it - REST, MCP in process, MCP through the REST-backed backend - each operation is
  authorized exactly once (``Authorizer.authorize`` counted), and a deny policy on its action and resource refuses
  it over every adapter and changes nothing. Once the adapters authorized (``api/deps.py``, ``mcp/embedded.py``),
  so an adapter that forgot the call bypassed deny policies; the POST twins and the MCP revoke tools counted as
  ``write`` and went through a deny on ``delete``.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from api_support import assert_unchanged, mcp_client, snapshot
from mcp.client import Client
from mcp.types import TextContent

from agentauth.bootstrap import Services
from agentauth.issuer.agents import AgentService
from agentauth.issuer.apikeys import ApiKeyService
from agentauth.issuer.audit_log import AuditService
from agentauth.issuer.authorization import Authorizer, bound_operation
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.delegations import DelegationService
from agentauth.issuer.lifecycle import LifecycleService
from agentauth.issuer.operations import OPENAPI_EXTENSION, OPERATIONS, ApiOperation
from agentauth.issuer.policies import PolicyService
from agentauth.issuer.resource_servers import ResourceServerService
from agentauth.issuer.webhooks import WebhookService
from agentauth.mcp.embedded import EmbeddedBackend
from agentauth.mcp.server import build_server
from support import app_route_table, assert_error, bearer, ok, path_params, quickstart, requires_principal

pytestmark = pytest.mark.anyio

# Routes that authenticate nobody, or authenticate the caller themselves for their own token (RFC 7662 / 7009):
# no operation of the policy engine. A new route must be added here or run an operation.
UNJUDGED_ROUTES = {
    ("GET", "/.well-known/agent-configuration"), ("GET", "/.well-known/did.json"),
    ("GET", "/.well-known/jwks.json"), ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/.well-known/oauth-protected-resource"), ("GET", "/.well-known/oauth-protected-resource/mcp"),
    ("GET", "/health"), ("GET", "/api/v1/agents/{agent_id}/did.json"), ("POST", "/api/v1/agents/quickstart"),
    ("GET", "/ready"),  # readiness for orchestrators: the database and the key ring, nobody's data
    ("GET", "/api/v1/auth/jwks"), ("POST", "/api/v1/auth/token"), ("POST", "/api/v1/auth/introspect"),
    ("POST", "/api/v1/auth/token/introspect"), ("POST", "/api/v1/auth/revoke"), ("POST", "/api/v1/auth/token/revoke"),
    ("GET", "/api/v1/status-lists/{list_id}"),
    ("GET", "/api/v1/status-lists/{list_id}/suspension"),
    ("POST", "/api/v1/auth/register"),  # RFC 7591: governed by AGENTAUTH_REGISTRATION, like quickstart
    ("POST", "/api/v1/auth/bc-authorize"),  # CIBA: the agent authenticates as a client, as at the token endpoint
    # Pages for people: the owner's session cookie and its CSRF token, not an agent's bearer (issuer/owners.py).
    ("GET", "/authorize"), ("POST", "/authorize"), ("GET", "/login"), ("POST", "/login"), ("GET", "/signup"),
    ("POST", "/signup"), ("POST", "/logout"), ("GET", "/account"), ("POST", "/account/tenants"),
    ("POST", "/account/claim"),
    # The owner console: the owner's session; each action is a use case run as the tenant root (api/console.py).
    ("GET", "/console"), ("GET", "/console/{tenant_id}"), ("POST", "/console/{tenant_id}/agents"),
    ("POST", "/console/{tenant_id}/agents/{agent_id}/stop"), ("POST", "/console/{tenant_id}/agents/{agent_id}/suspend"),
    ("POST", "/console/{tenant_id}/agents/{agent_id}/resume"), ("GET", "/console/{tenant_id}/keys"),
    ("POST", "/console/{tenant_id}/keys"), ("POST", "/console/{tenant_id}/keys/{key_id}/rotate"),
    ("POST", "/console/{tenant_id}/keys/{key_id}/revoke"), ("GET", "/console/{tenant_id}/audit"),
    ("GET", "/console/{tenant_id}/audit.{kind}"), ("GET", "/console/{tenant_id}/policies"),
    ("POST", "/console/{tenant_id}/policies"), ("POST", "/console/{tenant_id}/policies/{policy_id}/delete"),
    ("POST", "/console/{tenant_id}/policies/evaluate"), ("POST", "/console/{tenant_id}/stop"),
    ("GET", "/console/{tenant_id}/delegations"), ("GET", "/console/{tenant_id}/delegations/{delegation_id}/revoke"),
    ("POST", "/console/{tenant_id}/delegations/{delegation_id}/revoke"), ("GET", "/console/{tenant_id}/clients"),
    ("POST", "/console/{tenant_id}/clients/disconnect"), ("GET", "/console/{tenant_id}/approvals"),
    ("POST", "/console/{tenant_id}/approvals/{approval_id}/{verb}"), ("GET", "/console/{tenant_id}/activity"),
    ("GET", "/docs"), ("GET", "/redoc"),  # the API documentation pages (api/docs.py): static, nobody's data
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
# The public coroutines of the use-case services that are not an operation, and why.
UNBOUND = {
    "AgentService.quickstart": "registration: the caller has no identity yet (registration mode and rate limits)",
    "AgentService.did_document": "public: a did:key DID document derives from the DID itself",
    "ApiKeyService.authenticate": "authentication: it makes the principal that operations are authorized for",
    "AgentService.operator_principal": "the CLI's kill switch: it makes the tenant-root principal the operator acts as",
    "AgentService.status_reach": "a report on a kill switch just run (the console's): lists of the caller's subtree",
    "LifecycleService.introspect": "RFC 7662: who may ask is the token's own rule (issuer/lifecycle.py)",
    "LifecycleService.revoke": "RFC 7009: who may revoke is the token's own rule (issuer/lifecycle.py)",
}
SERVICES = (
    AgentService, ApiKeyService, DelegationService, PolicyService, AuditService, LifecycleService,
    ResourceServerService, WebhookService,
)  # fmt: skip


def operations_of_routes() -> dict[tuple[str, str], ApiOperation]:
    table: dict[tuple[str, str], ApiOperation] = {}
    for method, path, route in app_route_table():
        declared = (route.openapi_extra or {}).get(OPENAPI_EXTENSION)
        if (method, path) in UNJUDGED_ROUTES:
            assert declared is None and not requires_principal(route), (method, path)
            continue
        assert requires_principal(route), f"{method} {path} authenticates nobody and is not listed as such"
        assert declared is not None, f"{method} {path} does not say which operation it runs"
        op = OPERATIONS[declared["name"]]
        assert declared == {"name": op.name, "action": op.action, "scopes": list(op.scopes)}
        assert op.params == set(path_params(path)), f"{method} {path}: ids of {op}"
        table[method, path] = op
    return table


def test_every_route_runs_exactly_one_operation() -> None:
    table = operations_of_routes()
    assert {op.name for op in table.values()} == set(OPERATIONS), "an operation no route runs, or one undeclared"
    for name, twins in TWINS.items():
        assert {key for key, op in table.items() if op.name == name} == twins
        assert OPERATIONS[name].action == "delete"
    # Where the verb says delete, the operation says so too; the twins above are the POSTs that also delete.
    for (method, _), op in table.items():
        assert (method == "DELETE") <= (op.action == "delete"), (method, op)
        assert (method == "GET") <= (op.action == "read"), (method, op)


def test_every_use_case_is_bound_to_an_operation() -> None:
    bound: Counter[str] = Counter()
    for service in SERVICES:
        for name, method in inspect.getmembers(service, inspect.iscoroutinefunction):
            if name.startswith("_"):
                continue
            qualified = f"{service.__name__}.{name}"
            op = bound_operation(method)
            if op is None:
                assert qualified in UNBOUND, f"{qualified} is neither bound to an operation nor listed in UNBOUND"
                continue
            assert qualified not in UNBOUND, f"{qualified} is bound and listed in UNBOUND"
            bound[op.name] += 1
    assert set(bound) == set(OPERATIONS), f"operations no use case runs: {sorted(set(OPERATIONS) - set(bound))}"
    assert all(n == 1 for n in bound.values()), f"operations bound twice: {bound}"
    for qualified in UNBOUND:
        service, name = qualified.split(".")
        assert bound_operation(getattr(globals()[service], name)) is None, qualified


# -- each operation is authorized exactly once, over every adapter ---------------------------------------------------

POLICY = {
    "name": "p",
    "effect": "deny",
    "subjects": {"agent_ids": ["agt_none"]},
    "actions": ["read"],
    "resources": ["x"],
}


SERVER = {"name": "s", "kind": "mcp", "scopes": [{"name": "files.read"}]}


@dataclass
class Scene:
    """A fresh tenant: its root's token, a child agent, an API key of the child, a delegation from the root to
    the child and a policy (a deny for nobody, changing nothing)."""

    token: str
    agent: str
    key: str
    delegation: str
    policy: str
    server: str
    webhook: str
    delivery: str

    def ids(self, op: ApiOperation) -> dict[str, str]:
        every = {"agent_id": self.agent, "credential_id": self.key, "delegation_id": self.delegation}
        every |= {"policy_id": self.policy, "server_id": self.server, "webhook_id": self.webhook}
        every |= {"delivery_id": self.delivery}
        return {k: v for k, v in every.items() if k in op.params}


async def scene(client: httpx.AsyncClient) -> Scene:
    root = await quickstart(client, "root")
    auth = bearer(root["access_token"])
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["agent.*"]}
    webhook = ok(await client.post("/api/v1/webhooks", json=hook, headers=auth), 201)["id"]
    created = ok(await client.post("/api/v1/agents", json={"name": "c", "agent_type": "tool"}, headers=auth), 201)
    child = created["agent"]["id"]
    key = ok(await client.post("/api/v1/credentials", json={"agent_id": child}, headers=auth), 201)["id"]
    grant = {"delegate_agent_id": child, "scopes": ["agents.read"]}
    delegation = ok(await client.post("/api/v1/delegations", json=grant, headers=auth), 201)["id"]
    policy = ok(await client.post("/api/v1/policies", json=POLICY, headers=auth), 201)["id"]
    registered = SERVER | {"identifier": f"https://{root['agent']['id']}.example.com/mcp"}
    server = ok(await client.post("/api/v1/resource-servers", json=registered, headers=auth), 201)["id"]
    # The child's agent.created is owed to the webhook: the fan-out puts its delivery in the outbox.
    services: Services = client._transport.app.state.services  # type: ignore[attr-defined]
    await services.webhook_worker.fan_out()
    deliveries = ok(await client.get(f"/api/v1/webhooks/{webhook}/deliveries", headers=auth), 200)["items"]
    delivery = str(deliveries[0]["id"])
    return Scene(root["access_token"], child, key, delegation, policy, server, webhook, delivery)


def new_server(s: Scene) -> dict[str, Any]:
    return SERVER | {"identifier": f"https://new-{s.server}.example.com/mcp"}


# operation -> the REST calls that run it (every route, twins included), each (method, path, JSON body, query).
Rest = Callable[[Scene], list[tuple[str, str, Any, dict[str, Any]]]]
REST: dict[str, Rest] = {
    "agents.create": lambda s: [("POST", "/api/v1/agents", {"name": "n", "agent_type": "tool"}, {})],
    "agents.list": lambda s: [("GET", "/api/v1/agents", None, {"limit": 5})],
    "agents.get": lambda s: [("GET", f"/api/v1/agents/{s.agent}", None, {})],
    "agents.update": lambda s: [("PATCH", f"/api/v1/agents/{s.agent}", {"name": "renamed"}, {})],
    "agents.deactivate": lambda s: [
        ("DELETE", f"/api/v1/agents/{s.agent}", None, {}),
        ("POST", f"/api/v1/agents/{s.agent}/deactivate", None, {}),
    ],
    "agents.suspend": lambda s: [("POST", f"/api/v1/agents/{s.agent}/suspend", None, {})],
    "agents.resume": lambda s: [("POST", f"/api/v1/agents/{s.agent}/resume", None, {})],
    "credentials.create": lambda s: [("POST", "/api/v1/credentials", {"agent_id": s.agent}, {})],
    "credentials.list": lambda s: [("GET", "/api/v1/credentials", None, {"agent_id": s.agent})],
    "credentials.get": lambda s: [("GET", f"/api/v1/credentials/{s.key}", None, {})],
    "credentials.rotate": lambda s: [("POST", f"/api/v1/credentials/{s.key}/rotate", None, {})],
    "credentials.revoke": lambda s: [
        ("DELETE", f"/api/v1/credentials/{s.key}", None, {}),
        ("POST", f"/api/v1/credentials/{s.key}/revoke", None, {}),
    ],
    "delegations.create": lambda s: [
        ("POST", "/api/v1/delegations", {"delegate_agent_id": s.agent, "scopes": ["agents.read"]}, {})
    ],
    "delegations.list": lambda s: [("GET", "/api/v1/delegations", None, {"role": "delegator"})],
    "delegations.get": lambda s: [("GET", f"/api/v1/delegations/{s.delegation}", None, {})],
    "delegations.chain": lambda s: [("GET", f"/api/v1/delegations/{s.delegation}/chain", None, {})],
    "delegations.revoke": lambda s: [
        ("DELETE", f"/api/v1/delegations/{s.delegation}", None, {}),
        ("POST", f"/api/v1/delegations/{s.delegation}/revoke", None, {}),
    ],
    "policies.evaluate": lambda s: [
        ("POST", "/api/v1/policies/evaluate", {"agent_id": s.agent, "action": "read", "resource": "files/a"}, {})
    ],
    "policies.create": lambda s: [("POST", "/api/v1/policies", POLICY, {})],
    "policies.list": lambda s: [("GET", "/api/v1/policies", None, {})],
    "policies.get": lambda s: [("GET", f"/api/v1/policies/{s.policy}", None, {})],
    "policies.replace": lambda s: [("PUT", f"/api/v1/policies/{s.policy}", POLICY | {"name": "q"}, {})],
    "policies.delete": lambda s: [("DELETE", f"/api/v1/policies/{s.policy}", None, {})],
    "audit.list": lambda s: [("GET", "/api/v1/audit/events", None, {"limit": 5, "outcome": "success"})],
    "audit.activity": lambda s: [("GET", "/api/v1/audit/activity", None, {"hours": 2})],
    "resource_servers.create": lambda s: [("POST", "/api/v1/resource-servers", new_server(s), {})],
    "resource_servers.list": lambda s: [("GET", "/api/v1/resource-servers", None, {"limit": 5})],
    "resource_servers.get": lambda s: [("GET", f"/api/v1/resource-servers/{s.server}", None, {})],
    "resource_servers.update": lambda s: [("PUT", f"/api/v1/resource-servers/{s.server}", {"name": "t"}, {})],
    "resource_servers.delete": lambda s: [("DELETE", f"/api/v1/resource-servers/{s.server}", None, {})],
    "webhooks.create": lambda s: [("POST", "/api/v1/webhooks", {"url": "http://127.0.0.1:9/h"}, {})],
    "webhooks.list": lambda s: [("GET", "/api/v1/webhooks", None, {"limit": 5})],
    "webhooks.get": lambda s: [("GET", f"/api/v1/webhooks/{s.webhook}", None, {})],
    "webhooks.update": lambda s: [("PATCH", f"/api/v1/webhooks/{s.webhook}", {"active": False}, {})],
    "webhooks.delete": lambda s: [("DELETE", f"/api/v1/webhooks/{s.webhook}", None, {})],
    "webhooks.deliveries": lambda s: [("GET", f"/api/v1/webhooks/{s.webhook}/deliveries", None, {"limit": 5})],
    "webhooks.redeliver": lambda s: [("POST", f"/api/v1/webhooks/{s.webhook}/deliveries/{s.delivery}/retry", None, {})],
}
# operation -> the MCP tool that runs it, with its arguments.
MCP: dict[str, Callable[[Scene], tuple[str, dict[str, Any]]]] = {
    "agents.create": lambda s: ("create_agent", {"name": "n", "agent_type": "tool"}),
    "agents.list": lambda s: ("list_agents", {"limit": 5}),
    "agents.get": lambda s: ("get_agent", {"agent_id": s.agent}),
    "agents.update": lambda s: ("update_agent", {"agent_id": s.agent, "name": "renamed"}),
    "agents.deactivate": lambda s: ("deactivate_agent", {"agent_id": s.agent}),
    "agents.suspend": lambda s: ("suspend_agent", {"agent_id": s.agent}),
    "agents.resume": lambda s: ("resume_agent", {"agent_id": s.agent}),
    "credentials.create": lambda s: ("create_credential", {"agent_id": s.agent}),
    "credentials.list": lambda s: ("list_credentials", {"agent_id": s.agent}),
    "credentials.get": lambda s: ("get_credential", {"credential_id": s.key}),
    "credentials.rotate": lambda s: ("rotate_credential", {"credential_id": s.key}),
    "credentials.revoke": lambda s: ("revoke_credential", {"credential_id": s.key}),
    "delegations.create": lambda s: ("create_delegation", {"delegate_agent_id": s.agent, "scopes": ["agents.read"]}),
    "delegations.list": lambda s: ("list_delegations", {"role": "delegator"}),
    "delegations.get": lambda s: ("get_delegation", {"delegation_id": s.delegation}),
    "delegations.chain": lambda s: ("get_delegation_chain", {"delegation_id": s.delegation}),
    "delegations.revoke": lambda s: ("revoke_delegation", {"delegation_id": s.delegation}),
    "policies.evaluate": lambda s: ("check_permission", {"agent_id": s.agent, "action": "read", "resource": "files/a"}),
    "policies.create": lambda s: ("create_policy", POLICY),
    "policies.list": lambda s: ("list_policies", {}),
    "policies.get": lambda s: ("get_policy", {"policy_id": s.policy}),
    "policies.replace": lambda s: ("replace_policy", {"policy_id": s.policy, **POLICY, "name": "q"}),
    "policies.delete": lambda s: ("delete_policy", {"policy_id": s.policy}),
    "audit.list": lambda s: ("list_audit_events", {"limit": 5, "outcome": "success"}),
    "audit.activity": lambda s: ("get_audit_activity", {"hours": 2}),
    "resource_servers.create": lambda s: ("register_resource_server", new_server(s)),
    "resource_servers.list": lambda s: ("list_resource_servers", {"limit": 5}),
    "resource_servers.get": lambda s: ("get_resource_server", {"server_id": s.server}),
    "resource_servers.update": lambda s: ("update_resource_server", {"server_id": s.server, "name": "t"}),
    "resource_servers.delete": lambda s: ("delete_resource_server", {"server_id": s.server}),
    "webhooks.create": lambda s: ("create_webhook", {"url": "http://127.0.0.1:9/h"}),
    "webhooks.list": lambda s: ("list_webhooks", {"limit": 5}),
    "webhooks.get": lambda s: ("get_webhook", {"webhook_id": s.webhook}),
    "webhooks.update": lambda s: ("update_webhook", {"webhook_id": s.webhook, "active": False}),
    "webhooks.delete": lambda s: ("delete_webhook", {"webhook_id": s.webhook}),
    "webhooks.deliveries": lambda s: ("list_webhook_deliveries", {"webhook_id": s.webhook, "limit": 5}),
    "webhooks.redeliver": lambda s: (
        "retry_webhook_delivery",
        {"webhook_id": s.webhook, "delivery_id": int(s.delivery)},
    ),
}


class Counted:
    """Counts ``Authorizer.authorize`` by operation name: the one authorization every use case makes."""

    def __init__(self, authz: Authorizer) -> None:
        self.calls: list[str] = []
        self._authorize = authz.authorize

    async def __call__(self, principal: Principal, op: ApiOperation, ids: Any, ctx: RequestContext) -> None:
        self.calls.append(op.name)
        await self._authorize(principal, op, ids, ctx)

    def take(self) -> list[str]:
        taken, self.calls = self.calls, []
        return taken


@pytest.fixture
def counted(services: Services, monkeypatch: pytest.MonkeyPatch) -> Counted:
    authz = services.policies.authz
    assert all(s.authz is authz for s in (services.agents, services.api_keys, services.delegations, services.audit))
    counter = Counted(authz)
    monkeypatch.setattr(authz, "authorize", counter)
    return counter


@pytest.fixture(params=["embedded", "rest"])
async def mcp(request: pytest.FixtureRequest, services: Services) -> AsyncIterator[Client]:
    """The in-process MCP client, over the embedded backend or the REST-backed one (real HTTP to the app)."""
    async with mcp_client(services, request.param, "203.0.113.8") as client:
        yield client


def text(result: Any) -> str:
    return " ".join(b.text for b in result.content if isinstance(b, TextContent))


PLACEHOLDER = Scene("t", "agt_a", "key_a", "dlg_a", "pol_a", "rs_a", "wh_a", "987654")


def test_every_operation_and_route_has_a_call_here() -> None:
    assert set(REST) == set(OPERATIONS) == set(MCP)
    routes = operations_of_routes()
    called = [(m, p, name) for name in OPERATIONS for m, p, _, _ in REST[name](PLACEHOLDER)]
    assert len(called) == len(routes)
    for method, path, name in called:
        template = path
        for param, value in PLACEHOLDER.ids(OPERATIONS[name]).items():
            template = template.replace(value, "{" + param + "}")
        assert routes[method, template].name == name, (method, path)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
async def test_each_operation_is_authorized_exactly_once_over_every_adapter(
    name: str, client: httpx.AsyncClient, mcp: Client, counted: Counted
) -> None:
    # Over REST, every route that runs it: twins each on a scene of their own (a delete cannot run twice).
    for index in range(len(REST[name](PLACEHOLDER))):
        s = await scene(client)
        method, path, body, query = REST[name](s)[index]
        counted.take()
        response = await client.request(method, path, json=body, params=query, headers=bearer(s.token))
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        assert counted.take() == [name], f"{method} {path}"
        # Without a credential the request is refused before any use case runs: nothing is authorized.
        assert (await client.request(method, path, json=body, params=query)).status_code == 401
        assert counted.take() == []
    s = await scene(client)
    tool, arguments = MCP[name](s)
    counted.take()
    result = await mcp.call_tool(tool, {**arguments, "access_token": s.token})
    assert not result.is_error, f"{tool}: {text(result)}"
    assert counted.take() == [name], tool


@pytest.mark.parametrize("name", sorted(OPERATIONS))
async def test_a_deny_on_the_operation_refuses_it_over_every_adapter(
    name: str, client: httpx.AsyncClient, mcp: Client, services: Services, counted: Counted
) -> None:
    op = OPERATIONS[name]
    s = await scene(client)
    deny = {
        "name": f"no {name}",
        "effect": "deny",
        "subjects": {"all": True},
        "actions": [op.action],
        "resources": [op.resource_for(s.ids(op))],
        "priority": 0,
    }
    ok(await client.post("/api/v1/policies", json=deny, headers=bearer(s.token)), 201)
    before = await snapshot(services)
    counted.take()
    for method, path, body, query in REST[name](s):
        refused = await client.request(method, path, json=body, params=query, headers=bearer(s.token))
        described = assert_error(refused, 403, "access_denied", f"{method} {path}")["error_description"]
        assert described.startswith("denied by policy") and f"no {name}" in described, described
        assert counted.take() == [name], f"{method} {path}"
    tool, arguments = MCP[name](s)
    result = await mcp.call_tool(tool, {**arguments, "access_token": s.token})
    assert result.is_error and text(result).startswith("access_denied: denied by policy"), (tool, text(result))
    assert f"no {name}" in text(result)
    assert counted.take() == [name], tool
    await assert_unchanged(services, before, f"after {name} was refused")


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
