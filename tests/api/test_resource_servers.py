"""Resource servers and audience-bound tokens (issue 14 item 1; RFC 8707 sections 2 and 2.2, RFC 9068 section 3),
through the real app on SQLite and PostgreSQL: registration CRUD with tenant isolation, ``resource`` on the
client_credentials and refresh_token grants setting ``aud``, ``invalid_target`` changing nothing, refresh keeping
and narrowing the resource set, introspection's ``aud``, and a third-party token refused by AgentAuth's own API.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from api_support import FORM, JWT_BEARER, TOKEN, TOKEN_EXCHANGE, assert_unchanged, assertion_for, snapshot

from agentauth.bootstrap import Services
from agentauth.sdk import offline_verifier
from agentauth.sdk.asgi import BearerAuthMiddleware
from agentauth.sdk.mcp_auth import AgentAuthTokenVerifier
from agentauth.vc import VerificationError
from support import ISSUER_URL, bearer, ok, quickstart

pytestmark = pytest.mark.anyio
SERVERS = "/api/v1/resource-servers"
FILES = "https://files.example.com/mcp"
BILLING = "https://billing.example.com/api"


def server(identifier: str = FILES, **fields: Any) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "name": "files",
        "kind": "mcp",
        "scopes": [{"name": "files.read", "description": "Read files"}, {"name": "files.write"}],
    } | fields


def _payload(token: str) -> dict[str, Any]:
    """The claims as the token states them, unverified (verification is what the routes and the SDK test)."""
    part = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


async def register(client: httpx.AsyncClient, token: str, **fields: Any) -> dict[str, Any]:
    return ok(await client.post(SERVERS, json=server(**fields), headers=bearer(token)), 201)


async def token_for(
    client: httpx.AsyncClient, api_key: str, *resources: str, scope: str | None = None
) -> httpx.Response:
    pairs = [("grant_type", "client_credentials"), ("client_secret", api_key)]
    pairs += [("resource", r) for r in resources]
    if scope is not None:
        pairs.append(("scope", scope))
    return await client.post(TOKEN, content=str(httpx.QueryParams(pairs)), headers=FORM)


@pytest.fixture
async def root(client: httpx.AsyncClient) -> dict[str, Any]:
    return await quickstart(client, "root")


async def test_crud_and_tenant_isolation(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    auth = bearer(root["access_token"])
    created = await register(client, root["access_token"])
    assert created["identifier"] == FILES and created["tenant_id"] == root["agent"]["id"]
    assert [s["name"] for s in created["scopes"]] == ["files.read", "files.write"]
    assert created["access"] == "own_tenant"
    listed = ok(await client.get(SERVERS, headers=auth))
    assert listed["total"] == 1 and listed["items"][0]["id"] == created["id"]
    assert ok(await client.get(f"{SERVERS}/{created['id']}", headers=auth)) == created
    changed = ok(
        await client.put(f"{SERVERS}/{created['id']}", json={"name": "files v2", "access": "any_agent"}, headers=auth)
    )
    assert changed["name"] == "files v2" and changed["access"] == "any_agent" and changed["scopes"] == []
    assert changed["identifier"] == FILES and changed["created_at"] == created["created_at"]
    # The same identifier twice, in any tenant: 409.
    other = await quickstart(client, "other")
    taken = await client.post(SERVERS, json=server(), headers=bearer(other["access_token"]))
    assert taken.status_code == 409, taken.text
    # Another tenant neither sees nor changes it.
    for method in ("GET", "PUT", "DELETE"):
        body = {"name": "x"} if method == "PUT" else None
        answer = await client.request(
            method, f"{SERVERS}/{created['id']}", json=body, headers=bearer(other["access_token"])
        )
        assert answer.status_code == 404, answer.text
    assert ok(await client.get(SERVERS, headers=bearer(other["access_token"])))["total"] == 0
    assert (await client.delete(f"{SERVERS}/{created['id']}", headers=auth)).status_code == 204
    assert (await client.get(f"{SERVERS}/{created['id']}", headers=auth)).status_code == 404
    events = ok(await client.get("/api/v1/audit/events", params={"target_id": created["id"]}, headers=auth))
    actions = {e["action"] for e in events["items"]}
    assert {"resource_server.created", "resource_server.updated", "resource_server.deleted"} <= actions


async def test_child_cannot_manage(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    made = ok(
        await client.post(
            "/api/v1/agents", json={"name": "kid", "agent_type": "tool"}, headers=bearer(root["access_token"])
        ),
        201,
    )
    key = ok(
        await client.post(
            "/api/v1/credentials", json={"agent_id": made["agent"]["id"]}, headers=bearer(root["access_token"])
        ),
        201,
    )
    token = ok(await token_for(client, key["raw_key"]))["access_token"]
    refused = await client.post(SERVERS, json=server(), headers=bearer(token))
    assert refused.status_code == 403, refused.text


@pytest.mark.parametrize(
    "identifier", ["files.example.com/mcp", "https://files.example.com/mcp#frag", "https:///nohost", "a b:c", ""]
)
async def test_register_refuses_bad_identifiers(
    client: httpx.AsyncClient, root: dict[str, Any], identifier: str
) -> None:
    answer = await client.post(SERVERS, json=server(identifier), headers=bearer(root["access_token"]))
    assert answer.status_code in (400, 422), answer.text
    assert ok(await client.get(SERVERS, headers=bearer(root["access_token"])))["total"] == 0


async def test_client_credentials_resource_sets_aud(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    await register(client, root["access_token"])
    await register(client, root["access_token"], identifier=BILLING, scopes=[{"name": "billing.read"}])
    one = ok(await token_for(client, root["api_key"], FILES))
    payload = _payload(one["access_token"])
    assert payload["aud"] == FILES
    assert one["scope"] == "files.read files.write" == payload["scope"]
    narrowed = ok(await token_for(client, root["api_key"], FILES, scope="files.read"))
    assert _payload(narrowed["access_token"])["scope"] == "files.read"
    both = ok(await token_for(client, root["api_key"], FILES, BILLING, scope="files.read billing.read"))
    assert _payload(both["access_token"])["aud"] == [FILES, BILLING]
    # No resource: AgentAuth's own API, as before.
    own = ok(await token_for(client, root["api_key"]))
    assert _payload(own["access_token"])["aud"] == ISSUER_URL
    assert "agents.read" in own["scope"].split()
    # Naming AgentAuth's own API (the issuer, its REST API or /mcp) is the same.
    for alias in (ISSUER_URL, f"{ISSUER_URL}/mcp", f"{ISSUER_URL}/api/v1"):
        aliased = ok(await token_for(client, root["api_key"], alias, scope="agents.read"))
        assert _payload(aliased["access_token"])["aud"] == ISSUER_URL
    # AgentAuth's own API cannot be registered by a tenant.
    taken = await client.post(SERVERS, json=server(f"{ISSUER_URL}/mcp"), headers=bearer(root["access_token"]))
    assert taken.status_code == 400, taken.text
    # A token for a third-party server is not accepted by AgentAuth's own routes.
    refused = await client.get("/api/v1/agents", headers=bearer(one["access_token"]))
    assert refused.status_code == 401, refused.text
    assert (await client.get("/api/v1/agents", headers=bearer(own["access_token"]))).status_code == 200


async def test_invalid_target_changes_nothing(
    client: httpx.AsyncClient, services: Services, root: dict[str, Any]
) -> None:
    other = await quickstart(client, "other")
    await register(client, other["access_token"], identifier=BILLING)  # other's private server
    await register(client, root["access_token"])
    before = await snapshot(services)
    cases = [
        ((FILES + "x",), None, "invalid_target"),  # unknown
        ((BILLING,), None, "invalid_target"),  # another tenant's own_tenant server
        (("not a uri",), None, "invalid_target"),  # malformed
        ((FILES + "#f",), None, "invalid_target"),  # fragment
        ((FILES, ISSUER_URL), None, "invalid_target"),  # own API mixed with another
        ((FILES,), "agents.read", "invalid_scope"),  # a scope FILES does not define
    ]
    for resources, scope, error in cases:
        answer = await token_for(client, root["api_key"], *resources, scope=scope)
        assert answer.status_code == 400, (resources, answer.text)
        assert answer.json()["error"] == error, (resources, answer.text)
    await assert_unchanged(services, before, "after refused resources")


async def test_access_rules(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    other = await quickstart(client, "other")
    third = await quickstart(client, "third")
    await register(client, root["access_token"], access="tenants", allowed_tenants=[other["agent"]["id"]])
    assert _payload(ok(await token_for(client, other["api_key"], FILES))["access_token"])["aud"] == FILES
    assert (await token_for(client, third["api_key"], FILES)).json()["error"] == "invalid_target"
    await register(client, root["access_token"], identifier=BILLING, access="any_agent")
    assert _payload(ok(await token_for(client, third["api_key"], BILLING))["access_token"])["aud"] == BILLING


async def refresh(client: httpx.AsyncClient, token: str, *resources: str, scope: str | None = None) -> httpx.Response:
    pairs = [("grant_type", "refresh_token"), ("refresh_token", token)] + [("resource", r) for r in resources]
    if scope is not None:
        pairs.append(("scope", scope))
    return await client.post(TOKEN, content=str(httpx.QueryParams(pairs)), headers=FORM)


async def test_refresh_keeps_and_narrows(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    await register(client, root["access_token"])
    await register(client, root["access_token"], identifier=BILLING, scopes=[{"name": "billing.read"}])
    first = ok(await token_for(client, root["api_key"], FILES, BILLING))
    kept = ok(await refresh(client, first["refresh_token"]))
    assert _payload(kept["access_token"])["aud"] == [FILES, BILLING]
    assert set(kept["scope"].split()) == {"files.read", "files.write", "billing.read"}
    # Widening is refused (the rotation does not happen: the token stays usable).
    wider = await refresh(client, kept["refresh_token"], FILES, "https://other.example.com")
    assert wider.json()["error"] == "invalid_target", wider.text
    own = await refresh(client, kept["refresh_token"], ISSUER_URL)
    assert own.json()["error"] == "invalid_target", own.text
    narrowed = ok(await refresh(client, kept["refresh_token"], FILES))
    assert _payload(narrowed["access_token"])["aud"] == FILES
    assert narrowed["scope"] == "files.read files.write"
    again = ok(await refresh(client, narrowed["refresh_token"]))
    assert _payload(again["access_token"])["aud"] == FILES  # the family keeps the narrowed set
    back = await refresh(client, again["refresh_token"], BILLING)
    assert back.json()["error"] == "invalid_target", back.text
    # An own-API family stays one: no third-party resource on refresh.
    plain = ok(await token_for(client, root["api_key"]))
    moved = await refresh(client, plain["refresh_token"], FILES)
    assert moved.json()["error"] == "invalid_target", moved.text
    assert _payload(ok(await refresh(client, plain["refresh_token"]))["access_token"])["aud"] == ISSUER_URL


async def test_introspection_reports_aud(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    await register(client, root["access_token"])
    issued = ok(await token_for(client, root["api_key"], FILES))
    answer = ok(
        await client.post(
            "/api/v1/auth/introspect",
            data={"token": issued["access_token"]},
            headers=bearer(root["access_token"]),
        )
    )
    assert answer["active"] is True and answer["aud"] == FILES
    own = ok(
        await client.post(
            "/api/v1/auth/introspect", data={"token": root["access_token"]}, headers=bearer(root["access_token"])
        )
    )
    assert own["aud"] == ISSUER_URL


async def test_json_body_resource_list(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    await register(client, root["access_token"])
    answer = ok(
        await client.post(
            TOKEN, json={"grant_type": "client_credentials", "client_secret": root["api_key"], "resource": [FILES]}
        )
    )
    assert _payload(answer["access_token"])["aud"] == FILES


async def test_sdk_accepts_only_tokens_for_its_own_resource(
    client: httpx.AsyncClient, services: Services, root: dict[str, Any]
) -> None:
    await register(client, root["access_token"])
    await register(client, root["access_token"], identifier=BILLING, scopes=[{"name": "billing.read"}])
    for_files = ok(await token_for(client, root["api_key"], FILES))["access_token"]
    files = offline_verifier(services.jwks(), issuer_url=ISSUER_URL, resource=FILES, check_status=False)
    billing = offline_verifier(services.jwks(), issuer_url=ISSUER_URL, resource=BILLING, check_status=False)
    assert files.verify_access_token(for_files).scopes == {"files.read", "files.write"}
    with pytest.raises(VerificationError) as refused:
        billing.verify_access_token(for_files)
    assert refused.value.code == "invalid_audience"
    # AgentAuth's own tokens are not for FILES either, and a verifier with no resource checks nothing.
    with pytest.raises(VerificationError) as own:
        files.verify_access_token(root["access_token"])
    assert own.value.code == "invalid_audience"
    unset = offline_verifier(services.jwks(), issuer_url=ISSUER_URL, check_status=False)
    with pytest.raises(VerificationError) as unconfigured:
        unset.verify_access_token(for_files)
    assert unconfigured.value.code == "audience_not_configured"
    # The resource-server adapters refuse to be set up without knowing their resource.
    with pytest.raises(ValueError, match="resource"):
        AgentAuthTokenVerifier(unset)
    with pytest.raises(ValueError, match="resource"):
        BearerAuthMiddleware(lambda scope, receive, send: None, unset)  # type: ignore[arg-type,return-value]
    mcp_files = AgentAuthTokenVerifier(files)
    accepted = await mcp_files.verify_token(for_files)
    assert accepted is not None and accepted.resource == FILES
    assert await AgentAuthTokenVerifier(billing).verify_token(for_files) is None


async def test_jwt_bearer_resource_sets_aud(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    await register(client, root["access_token"])

    async def assertion_grant(*resources: str) -> httpx.Response:
        pairs = [("grant_type", JWT_BEARER), ("assertion", assertion_for(root))] + [("resource", r) for r in resources]
        return await client.post(TOKEN, content=str(httpx.QueryParams(pairs)), headers=FORM)

    issued = ok(await assertion_grant(FILES))
    assert _payload(issued["access_token"])["aud"] == FILES and issued["scope"] == "files.read files.write"
    assert (await assertion_grant(BILLING)).json()["error"] == "invalid_target"
    assert _payload(ok(await assertion_grant())["access_token"])["aud"] == ISSUER_URL


async def test_exchange_resource_within_delegation(client: httpx.AsyncClient, root: dict[str, Any]) -> None:
    await register(client, root["access_token"])
    auth = bearer(root["access_token"])
    child = ok(await client.post("/api/v1/agents", json={"name": "kid", "agent_type": "tool"}, headers=auth), 201)
    key = ok(await client.post("/api/v1/credentials", json={"agent_id": child["agent"]["id"]}, headers=auth), 201)
    grant = {"delegate_agent_id": child["agent"]["id"], "scopes": ["agents.read"]}
    delegation = ok(await client.post("/api/v1/delegations", json=grant, headers=auth), 201)

    async def exchange(*resources: str, scope: str | None = None) -> httpx.Response:
        pairs = [
            ("grant_type", TOKEN_EXCHANGE), ("subject_token", delegation["credential"]),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"), ("client_secret", key["raw_key"]),
        ]  # fmt: skip
        pairs += [("resource", r) for r in resources] + ([("scope", scope)] if scope else [])
        return await client.post(TOKEN, content=str(httpx.QueryParams(pairs)), headers=FORM)

    # The delegate acts only within the delegated scopes: "agents.read" at AgentAuth grants nothing at FILES.
    for refused in (await exchange(FILES, scope="files.read"), await exchange(FILES)):
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    assert (await exchange(BILLING)).json()["error"] == "invalid_target"
    assert (await exchange(FILES, scope="agents.read")).json()["error"] == "invalid_scope"
    own = ok(await exchange())
    assert _payload(own["access_token"])["aud"] == ISSUER_URL and own["scope"] == "agents.read"


def mcp_server_for(services: Services, resource: str) -> Any:
    """A third-party MCP server on the official Python MCP SDK, protected by agentauth.sdk for ``resource``."""
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import MCPServer

    verifier = offline_verifier(services.jwks(), issuer_url=ISSUER_URL, resource=resource, check_status=False)
    server: MCPServer[Any] = MCPServer(
        "files",
        token_verifier=AgentAuthTokenVerifier(verifier),
        auth=AuthSettings(
            issuer_url=ISSUER_URL, resource_server_url=resource, required_scopes=[], validate_token_resource=True
        ),
    )

    @server.tool()
    def ping() -> str:
        return "pong"

    return server.streamable_http_app()


async def test_a_token_for_one_mcp_server_is_refused_by_another(
    client: httpx.AsyncClient, services: Services, root: dict[str, Any]
) -> None:
    await register(client, root["access_token"])
    await register(client, root["access_token"], identifier=BILLING)
    token = ok(await token_for(client, root["api_key"], FILES))["access_token"]
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"} | bearer(token)
    answers = {}
    for resource in (FILES, BILLING):
        app = mcp_server_for(services, resource)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:9100") as http,
        ):
            answers[resource] = await http.post("/mcp", json=initialize, headers=headers)
    assert answers[FILES].status_code == 200, answers[FILES].text
    assert answers[BILLING].status_code == 401
    assert 'error="invalid_token"' in answers[BILLING].headers["www-authenticate"]
