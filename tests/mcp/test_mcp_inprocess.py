"""Failure mapping and limits, with the official client talking in-memory to the server ``agentauth-mcp`` builds:
internal errors stay internal, a database or network outage is temporarily_unavailable, REST errors map back to
the same codes in the REST-backed mode, and MCP shares REST's rate-limit buckets."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from mcp.client import Client
from mcp_support import text_of
from sqlalchemy.exc import OperationalError

from agentauth.api.app import create_app
from agentauth.bootstrap import build_services
from agentauth.errors import InvalidGrant, NotFound, RateLimited
from agentauth.issuer.context import RequestContext
from agentauth.issuer.schemas import QuickstartRequest, QuickstartResponse, TokenResponse
from agentauth.mcp.backend import Operation, R, VerificationMaterial
from agentauth.mcp.embedded import EmbeddedBackend
from agentauth.mcp.remote import RemoteError, RestBackend, error_from_response
from agentauth.mcp.server import build_server
from agentauth.storage.failures import translate
from live_server import free_port
from support import reset_postgres

pytestmark = pytest.mark.anyio

POLICY = {"name": "p", "effect": "deny", "subjects": {"all": True}, "actions": ["read"], "resources": ["x"]}
# Every tool (a test below checks the list against the server's).
ONE_CALL_EACH: dict[str, dict[str, Any]] = {
    "discover": {},
    "quickstart": {"name": "a", "agent_type": "tool"},
    "authenticate": {"api_key": "ak_live_x"},
    "refresh_token": {"refresh_token_value": "rt_x"},
    "introspect_token": {"token": "a.b.c"},
    "revoke_token": {"token": "x", "access_token": "t"},
    "create_credential": {"agent_id": "agt_a", "access_token": "t"},
    "rotate_credential": {"credential_id": "key_a", "access_token": "t"},
    "revoke_credential": {"credential_id": "key_a", "access_token": "t"},
    "create_delegation": {"delegate_agent_id": "agt_a", "scopes": ["api.read"], "access_token": "t"},
    "check_permission": {"agent_id": "agt_a", "action": "read", "resource": "x", "access_token": "t"},
    "list_agents": {"access_token": "t"},
    "get_agent": {"agent_id": "agt_a", "access_token": "t"},
    "list_credentials": {"access_token": "t"},
    "list_delegations": {"access_token": "t"},
    "revoke_delegation": {"delegation_id": "dlg_a", "access_token": "t"},
    "create_agent": {"name": "a", "agent_type": "tool", "access_token": "t"},
    "verify_token": {"token": "a.b.c"},
    "exchange_delegation": {"credential": "a.b.c", "access_token": "t"},
    "update_agent": {"agent_id": "agt_a", "name": "b", "access_token": "t"},
    "deactivate_agent": {"agent_id": "agt_a", "access_token": "t"},
    "get_credential": {"credential_id": "key_a", "access_token": "t"},
    "get_delegation": {"delegation_id": "dlg_a", "access_token": "t"},
    "get_delegation_chain": {"delegation_id": "dlg_a", "access_token": "t"},
    "create_policy": {**POLICY, "access_token": "t"},
    "list_policies": {"access_token": "t"},
    "get_policy": {"policy_id": "pol_a", "access_token": "t"},
    "replace_policy": {"policy_id": "pol_a", **POLICY, "access_token": "t"},
    "delete_policy": {"policy_id": "pol_a", "access_token": "t"},
    "list_audit_events": {"access_token": "t"},
    "register_resource_server": {"identifier": "https://x.example", "name": "x", "access_token": "t"},
    "list_resource_servers": {"access_token": "t"},
    "get_resource_server": {"server_id": "rs_a", "access_token": "t"},
    "update_resource_server": {"server_id": "rs_a", "name": "y", "access_token": "t"},
    "delete_resource_server": {"server_id": "rs_a", "access_token": "t"},
    "create_webhook": {"url": "https://hooks.example.com/a", "access_token": "t"},
    "list_webhooks": {"access_token": "t"},
    "get_webhook": {"webhook_id": "wh_a", "access_token": "t"},
    "update_webhook": {"webhook_id": "wh_a", "active": False, "access_token": "t"},
    "delete_webhook": {"webhook_id": "wh_a", "access_token": "t"},
    "list_webhook_deliveries": {"webhook_id": "wh_a", "access_token": "t"},
    "retry_webhook_delivery": {"webhook_id": "wh_a", "delivery_id": 1, "access_token": "t"},
    "request_approval": {"login_hint": "owner@example.com", "binding_message": "m", "api_key": "ak_live_x"},
    "approval_status": {"auth_req_id": "x", "api_key": "ak_live_x"},
    "get_audit_activity": {"access_token": "t"},
    "suspend_agent": {"agent_id": "agt_a", "access_token": "t"},
    "resume_agent": {"agent_id": "agt_a", "access_token": "t"},
}


class Broken:
    """A backend whose every operation fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def call(self, name: str, operation: Operation[R], access_token: str, ctx: RequestContext) -> R:
        raise self.error

    async def discover(self) -> dict[str, Any]:
        raise self.error

    async def quickstart(self, request: QuickstartRequest, ctx: RequestContext) -> QuickstartResponse:
        raise self.error

    async def token(self, params: dict[str, str], ctx: RequestContext) -> TokenResponse:
        raise self.error

    async def backchannel(self, params: dict[str, str], ctx: RequestContext) -> dict[str, Any]:
        raise self.error

    async def introspect(self, caller: str, token: str, ctx: RequestContext) -> dict[str, Any]:
        raise self.error

    async def revoke(self, caller: str, token: str, ctx: RequestContext) -> None:
        raise self.error

    async def verification_material(self) -> VerificationMaterial:
        raise self.error

    async def status_list(self, url: str) -> str | None:
        raise self.error


async def test_unexpected_errors_are_generic_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    server = build_server(Broken(RuntimeError("internal detail sk-do-not-leak")), token_in_header=False)
    caplog.set_level(logging.INFO, logger="agentauth.mcp")
    async with Client(server) as client:
        assert [t.name for t in (await client.list_tools()).tools] == list(ONE_CALL_EACH)
        for tool, arguments in ONE_CALL_EACH.items():
            result = await client.call_tool(tool, arguments)
            assert result.is_error, tool
            text = text_of(result)
            assert text.startswith("server_error: the server could not complete the request. Retry later"), text
            assert "sk-do-not-leak" not in text
    crashes = [r for r in caplog.records if r.getMessage().endswith("failed unexpectedly")]
    assert len(crashes) == len(ONE_CALL_EACH)
    assert all(r.levelno == logging.ERROR and r.exc_info is not None for r in crashes)


async def test_database_outage_is_temporarily_unavailable() -> None:
    # What storage raises for a driver failure (storage/failures.py translates it there, for every adapter).
    outage = translate(OperationalError("SELECT 1", {}, Exception("database is locked")))
    assert outage is not None
    async with Client(build_server(Broken(outage), token_in_header=False)) as client:
        for tool, arguments in ONE_CALL_EACH.items():
            text = text_of(await client.call_tool(tool, arguments))
            assert text == "temporarily_unavailable: the service is temporarily unavailable. Retry in a few seconds."


async def test_agentauth_unreachable_in_rest_mode() -> None:
    backend = RestBackend(f"http://127.0.0.1:{free_port()}")
    try:
        async with Client(build_server(backend, token_in_header=False)) as client:
            for tool, arguments in ONE_CALL_EACH.items():
                result = await client.call_tool(tool, arguments)
                assert result.is_error, tool
                assert text_of(result).startswith(
                    "temporarily_unavailable: cannot reach AgentAuth at http://127.0.0.1:"
                )
    finally:
        await backend.aclose()


def _response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_rest_errors_map_back_to_the_same_classes() -> None:
    error = error_from_response(_response(404, {"error": "not_found", "error_description": "no such agent"}))
    assert type(error) is NotFound and error.description == "no such agent"
    error = error_from_response(_response(400, {"error": "invalid_grant", "error_description": "spent"}))
    assert type(error) is InvalidGrant and error.status_code == 400
    error = error_from_response(
        _response(429, {"error": "rate_limited", "error_description": "slow down"}, {"Retry-After": "7"})
    )
    assert isinstance(error, RateLimited) and error.retry_after == 7
    error = error_from_response(_response(413, {"error": "request_too_large", "error_description": "too big"}))
    assert isinstance(error, RemoteError) and (error.error, error.status_code) == ("request_too_large", 413)
    error = error_from_response(httpx.Response(502, text="<html>bad gateway</html>"))
    assert type(error) is RemoteError and error.error == "server_error" and "502" in error.description
    error = error_from_response(_response(500, {"error": "server_error", "error_description": "x"}))
    assert type(error) is RemoteError and (error.error, error.status_code) == ("server_error", 500)


async def test_rest_mode_reports_the_servers_refusal() -> None:
    # The REST-backed backend knows no route: it reads the endpoints from the agent configuration document and
    # the route of an operation from the OpenAPI description (issue 13 item 4), so the server serves both.
    base = "http://agentauth.test"
    configuration = {
        "issuer": base,
        "endpoints": {"token_endpoint": f"{base}/api/v1/auth/token", "openapi": f"{base}/openapi.json"},
    }
    openapi = {"paths": {"/api/v1/agents": {"get": {"x-agentauth-operation": {"name": "agents.list"}}}}}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/agent-configuration":
            return _response(200, configuration)
        if request.url.path == "/openapi.json":
            return _response(200, openapi)
        if request.url.path == "/api/v1/auth/token":
            return _response(429, {"error": "rate_limited", "error_description": "too many"}, {"Retry-After": "9"})
        return _response(403, {"error": "access_denied", "error_description": "denied by policy: no"})

    backend = RestBackend("http://agentauth.test", transport=httpx.MockTransport(handler))
    async with Client(build_server(backend, token_in_header=False)) as client:
        text = text_of(await client.call_tool("authenticate", {"api_key": "ak_live_x"}))
        assert text == "rate_limited: too many. Wait 9 seconds before calling again."
        text = text_of(await client.call_tool("list_agents", {"access_token": "t"}))
        assert text == "access_denied: denied by policy: no. This is not permitted for you; do not retry it unchanged."
    await backend.aclose()


async def test_mcp_shares_rest_rate_limit_buckets(settings_factory: Any, backend: str) -> None:
    if backend == "postgres":
        await reset_postgres()
    services = await build_services(settings_factory(token_rate_per_client=3))
    try:
        async with Client(build_server(EmbeddedBackend(lambda: services), token_in_header=False)) as client:
            registered = (await client.call_tool("quickstart", {"name": "r", "agent_type": "tool"})).structured_content
            assert registered is not None
            key = registered["api_key"]
            for _ in range(2):
                assert not (await client.call_tool("authenticate", {"api_key": key})).is_error
            app = create_app(services=services)
            app.state.services = services
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as rest:
                grant = {"grant_type": "client_credentials", "client_secret": key}
                assert (await rest.post("/api/v1/auth/token", data=grant)).status_code == 200  # the third
                refused = await rest.post("/api/v1/auth/token", data=grant)
            assert refused.status_code == 429
            text = text_of(await client.call_tool("authenticate", {"api_key": key}))
            assert text.startswith("rate_limited: too many requests; retry after the indicated delay. Wait ")
    finally:
        await services.close()
