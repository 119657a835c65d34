"""Scope escalation (RFC 6749 section 3.3 and 6, RFC 8693 section 2.1, DESIGN "everything it creates holds a
subset of what its creator holds"): by API key, by token request, by child agent, by delegation and by token
exchange. Each attempt is refused with ``invalid_scope`` (or 403 where the token lacks the route's scope) and
changes nothing; where a narrower grant is legitimate, what is granted is never wider than what was held."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from security_support import (
    JWT_BEARER,
    TOKEN,
    World,
    assert_unchanged,
    assertion_for,
    client_credentials,
    decode,
    exchange_data,
    is_active,
    make_child,
    snapshot,
)

from agentauth.bootstrap import Services
from agentauth.issuer.scopes import ALL_SCOPES
from support import assert_error, bearer, ok

pytestmark = pytest.mark.anyio


async def narrowed(client: httpx.AsyncClient, api_key: str, scope: str) -> str:
    return str(ok(await client_credentials(client, api_key, scope))["access_token"])


def scopes_of(token: str) -> set[str]:
    return set(str(decode(token)[1]["scope"]).split())


async def refused(services: Services, request: object, status: int, error: str, what: str) -> None:
    """Await ``request`` between two snapshots: it is refused and changes nothing."""
    before = await snapshot(services)
    assert_error(await request, status, error, what)  # type: ignore[misc]
    await assert_unchanged(services, before, what)


# -- API keys and token requests ---------------------------------------------------------------------------------


async def test_api_key_cannot_exceed_the_callers_token(
    client: httpx.AsyncClient, services: Services, world: World
) -> None:
    token = await narrowed(client, world.a["api_key"], "credentials.write agents.read")
    for scopes in (["agents.read", "policies.write"], ["credentials.write", "agents.write"], ["admin"], ["*"]):
        request = client.post("/api/v1/credentials", json={"scopes": scopes}, headers=bearer(token))
        await refused(services, request, 400, "invalid_scope", f"key with {scopes}")
    # No scopes asked: the key gets the token's scopes, never the agent's full grant.
    key = ok(await client.post("/api/v1/credentials", json={}, headers=bearer(token)), 201)
    assert set(key["scopes"]) == {"credentials.write", "agents.read"}


async def test_api_key_for_a_child_cannot_exceed_the_childs_grant(
    client: httpx.AsyncClient, services: Services, world: World
) -> None:
    limited = await make_child(client, world.a_token, "limited", scopes=["api.read", "credentials.write"])
    body = {"agent_id": limited["agent"]["id"], "scopes": ["api.read", "agents.write"]}
    await refused(services, client.post("/api/v1/credentials", json=body, headers=bearer(world.a_token)), 400,
                  "invalid_scope", "parent making a wide key for a narrow child")  # fmt: skip
    own = client.post(
        "/api/v1/credentials", json={"scopes": ["policies.write"]}, headers=bearer(limited["access_token"])
    )
    await refused(services, own, 400, "invalid_scope", "narrow child making itself a wide key")


@pytest.mark.parametrize(
    "scope", ["api.read agents.write", "agents.write", "api.read\tagents.write", "api.read,agents.write", "ADMIN", "*"]
)
async def test_token_request_cannot_exceed_the_key(
    client: httpx.AsyncClient, services: Services, world: World, scope: str
) -> None:
    created = await client.post("/api/v1/credentials", json={"scopes": ["api.read"]}, headers=bearer(world.a_token))
    key = ok(created, 201)["raw_key"]
    await refused(services, client_credentials(client, key, scope), 400, "invalid_scope", f"scope={scope!r}")
    assert scopes_of(ok(await client_credentials(client, key))["access_token"]) == {"api.read"}


async def test_refresh_and_assertion_cannot_widen(client: httpx.AsyncClient, services: Services, world: World) -> None:
    tokens = ok(await client_credentials(client, world.a["api_key"], "api.read"))
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "scope": "api.read api.write"}
    await refused(services, client.post(TOKEN, data=data), 400, "invalid_scope", "refresh wider than the family")
    limited = await make_child(client, world.a_token, "limited", scopes=["api.read"])
    data = {"grant_type": JWT_BEARER, "assertion": assertion_for(limited), "scope": "api.read agents.write"}
    await refused(services, client.post(TOKEN, data=data), 400, "invalid_scope", "assertion wider than the agent")


async def test_child_agent_cannot_exceed_its_parent(
    client: httpx.AsyncClient, services: Services, world: World
) -> None:
    parent = await make_child(client, world.a_token, "parent", scopes=["agents.write", "api.read"])
    body = {"name": "grandchild", "agent_type": "tool", "scopes": ["api.read", "api.write"]}
    request = client.post("/api/v1/agents", json=body, headers=bearer(parent["access_token"]))
    await refused(services, request, 400, "invalid_scope", "grandchild wider than its parent")
    body = {"name": "grandchild", "agent_type": "tool", "trust_level": "trusted"}
    request = client.post("/api/v1/agents", json=body, headers=bearer(parent["access_token"]))
    await refused(services, request, 403, "access_denied", "grandchild above its parent's trust level")


async def test_child_agent_cannot_exceed_the_callers_token(
    client: httpx.AsyncClient, services: Services, world: World
) -> None:
    """A child holds its own did:key, so a child wider than the token that made it would turn, by jwt-bearer,
    into a wider token: the token's scopes are the ceiling, as for API keys and delegations."""
    token = await narrowed(client, world.a["api_key"], "agents.write")
    created = await client.post("/api/v1/agents", json={"name": "minion", "agent_type": "tool"}, headers=bearer(token))
    child = ok(created, 201)
    assert child["agent"]["scopes"] == ["agents.write"]
    minted = ok(await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion_for(child)}))
    assert scopes_of(minted["access_token"]) <= {"agents.write"}, "a child wider than the token that made it"
    body = {"name": "minion2", "agent_type": "tool", "scopes": ["policies.write", "api.write"]}
    request = client.post("/api/v1/agents", json=body, headers=bearer(token))
    await refused(services, request, 400, "invalid_scope", "explicit scopes beyond the token")


# -- delegation and token exchange -------------------------------------------------------------------------------


async def test_cannot_delegate_more_than_held(client: httpx.AsyncClient, services: Services, world: World) -> None:
    limited = await make_child(client, world.a_token, "limited", scopes=["api.read", "delegations.write"])
    for scopes in (["api.write"], ["api.read", "agents.read"], ["API.READ"], ["*"]):
        body = {"delegate_agent_id": world.child_id, "scopes": scopes}
        request = client.post("/api/v1/delegations", json=body, headers=bearer(limited["access_token"]))
        await refused(services, request, 400, "invalid_scope", f"delegating {scopes}")
    # The agent holds everything, its token does not: the token is the ceiling.
    token = await narrowed(client, world.a["api_key"], "delegations.write api.read")
    body = {"delegate_agent_id": world.child_id, "scopes": ["api.read", "agents.write"]}
    request = client.post("/api/v1/delegations", json=body, headers=bearer(token))
    await refused(services, request, 400, "invalid_scope", "delegating beyond the token")


async def exchanged(client: httpx.AsyncClient, credential: str, actor: str, scope: str | None = None) -> httpx.Response:
    data = exchange_data(credential, actor) | ({"scope": scope} if scope else {})
    return await client.post(TOKEN, data=data)


async def test_cannot_redelegate_more_than_was_delegated(
    client: httpx.AsyncClient, services: Services, world: World
) -> None:
    body = {"delegate_agent_id": world.child_id, "scopes": ["api.read", "delegations.write"]}
    grant = ok(await client.post("/api/v1/delegations", json=body, headers=bearer(world.a_token)), 201)
    acting = ok(await exchanged(client, grant["credential"], world.child_token))["access_token"]
    sibling = await make_child(client, world.a_token, "sibling")
    for scopes in (["api.read", "api.write"], ["agents.read"], ["policies.write"]):
        body = {"delegate_agent_id": sibling["agent"]["id"], "scopes": scopes}
        request = client.post("/api/v1/delegations", json=body, headers=bearer(acting))
        await refused(services, request, 400, "invalid_scope", f"re-delegating {scopes}")


@pytest.mark.parametrize("scope", ["api.read api.write", "api.read agents.read policies.write", None])
async def test_exchange_grants_at_most_the_intersection(
    client: httpx.AsyncClient, world: World, scope: str | None
) -> None:
    delegated = set(world.delegation["scopes"])
    response = await exchanged(client, world.delegation["credential"], world.child_token, scope)
    granted = set(ok(response)["scope"].split())
    assert granted == scopes_of(response.json()["access_token"])
    assert granted <= delegated and granted, (granted, delegated)
    if scope is not None:
        assert granted == delegated & set(scope.split())


@pytest.mark.parametrize("scope", ["api.write", "policies.write agents.write", "root", "api.read,api.write"])
async def test_exchange_for_undelegated_scopes_is_refused(
    client: httpx.AsyncClient, services: Services, world: World, scope: str
) -> None:
    request = exchanged(client, world.delegation["credential"], world.child_token, scope)
    await refused(services, request, 400, "invalid_scope", f"exchange for {scope!r}")


async def test_delegated_token_cannot_use_undelegated_scopes(
    client: httpx.AsyncClient, services: Services, world: World
) -> None:
    acting = ok(await exchanged(client, world.delegation["credential"], world.child_token))["access_token"]
    assert scopes_of(acting) == {"api.read", "agents.read"} and set(ALL_SCOPES) - scopes_of(acting)
    for method, path, body in [
        ("POST", "/api/v1/agents", {"name": "x", "agent_type": "tool"}),
        ("POST", "/api/v1/credentials", {}),
        ("POST", "/api/v1/delegations", {"delegate_agent_id": world.child_id, "scopes": ["api.read"]}),
        ("POST", "/api/v1/policies", {"name": "p", "effect": "deny", "subjects": {"all": True}, "actions": ["*"],
                                      "resources": ["**"]}),
        ("DELETE", f"/api/v1/agents/{world.child_id}", None),
        ("GET", "/api/v1/audit/events", None),
    ]:  # fmt: skip
        request = client.request(method, path, json=body, headers=bearer(acting))
        await refused(services, request, 403, "insufficient_scope", f"{method} {path} under a delegation")


async def acting_under(client: httpx.AsyncClient, w: World, scopes: list[str]) -> tuple[dict[str, Any], str]:
    """Root A delegates ``scopes`` to its child, which exchanges the delegation: (delegation, acting token)."""
    body = {"delegate_agent_id": w.child_id, "scopes": scopes}
    grant = ok(await client.post("/api/v1/delegations", json=body, headers=bearer(w.a_token)), 201)
    return grant, ok(await exchanged(client, grant["credential"], w.child_token))["access_token"]


async def test_a_key_minted_under_a_delegation_dies_with_it(client: httpx.AsyncClient, world: World) -> None:
    grant, acting = await acting_under(client, world, ["credentials.write", "agents.read"])
    minted = await client.post("/api/v1/credentials", json={}, headers=bearer(acting))
    revoked = await client.post(f"/api/v1/delegations/{grant['id']}/revoke", headers=bearer(world.a_token))
    assert revoked.status_code == 200 and not await is_active(client, acting)
    if minted.status_code == 201:
        after = await client_credentials(client, minted.json()["raw_key"])
        assert_error(after, 401, "invalid_client", "a key minted under a revoked delegation")


async def test_an_agent_minted_under_a_delegation_dies_with_it(client: httpx.AsyncClient, world: World) -> None:
    grant, acting = await acting_under(client, world, ["agents.write", "agents.read"])
    created = await client.post(
        "/api/v1/agents", json={"name": "sleeper", "agent_type": "tool"}, headers=bearer(acting)
    )
    revoked = await client.post(f"/api/v1/delegations/{grant['id']}/revoke", headers=bearer(world.a_token))
    assert revoked.status_code == 200 and not await is_active(client, acting)
    if created.status_code == 201:
        data = {"grant_type": JWT_BEARER, "assertion": assertion_for(created.json())}
        assert_error(
            await client.post(TOKEN, data=data), 400, "invalid_grant", "an agent minted under a revoked delegation"
        )
