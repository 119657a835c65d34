"""Attacks on delegation and token exchange (issue 5, "Must show" 2): each is refused with a specific error
and changes nothing - agents, API keys, delegations and signed credentials are snapshotted before and after.

Delegation rules live in ``issuer/delegations.py``; the exchange (RFC 8693) in ``issuer/tokens.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from delegation_support import (
    ACCESS_TYPE,
    child_with_key,
    delegate,
    error_of,
    exchange,
    snapshot,
)

from agentauth.bootstrap import Services
from support import quickstart

pytestmark = pytest.mark.anyio


class Tenant:
    """A root agent with three children (B, C, X), each holding an API key and its own access token."""

    def __init__(self, root: dict[str, Any], b: dict[str, Any], c: dict[str, Any], x: dict[str, Any]) -> None:
        self.root, self.b, self.c, self.x = root, b, c, x

    @property
    def token(self) -> str:
        return str(self.root["access_token"])


@pytest.fixture
async def tenant(client: httpx.AsyncClient) -> Tenant:
    root = await quickstart(client, "root")
    b = await child_with_key(client, root["access_token"], "b")
    c = await child_with_key(client, root["access_token"], "c")
    x = await child_with_key(client, root["access_token"], "x")
    return Tenant(root, b, c, x)


async def acting(
    client: httpx.AsyncClient, tenant: Tenant, who: dict[str, Any], scopes: list[str], **extra: Any
) -> Any:
    """Root delegates ``scopes`` to ``who``; returns (delegation, who's exchanged token)."""
    created = await delegate(client, tenant.token, who["agent"]["id"], scopes, **extra)
    assert created.status_code == 201, created.text
    exchanged = await exchange(client, created.json()["credential"], actor_token=who["token"])
    assert exchanged.status_code == 200, exchanged.text
    return created.json(), exchanged.json()["access_token"]


async def refused(services: Services, request: Any, status: int, error: str) -> httpx.Response:
    """Run ``request`` (an awaitable of a response), assert the refusal, and that nothing changed."""
    before = await snapshot(services)
    response: httpx.Response = await request
    assert error_of(response) == (status, error), response.text
    assert await snapshot(services) == before
    return response


DW = ["delegations.read", "delegations.write"]


async def test_delegating_a_scope_you_do_not_hold(
    client: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    # An agent created with a few scopes cannot hand out others.
    narrow = await child_with_key(client, tenant.token, "narrow", scopes=["agents.read", *DW])
    await refused(
        services, delegate(client, narrow["token"], tenant.c["agent"]["id"], ["audit.read"]), 400, "invalid_scope"
    )
    # Under a delegation, the delegate's effective scopes are what was delegated, not its own grant: B holds
    # every scope itself, but was delegated only agents.read.
    _, b_acting = await acting(client, tenant, tenant.b, ["agents.read", *DW])
    for scopes in (["credentials.read"], ["agents.read", "audit.read"], ["agents.write"]):
        await refused(services, delegate(client, b_acting, tenant.c["agent"]["id"], scopes), 400, "invalid_scope")
    # A token narrowed at issue narrows what its holder can delegate.
    token = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials", "client_secret": tenant.b["key"], "scope": " ".join(DW)},
    )
    await refused(
        services,
        delegate(client, token.json()["access_token"], tenant.c["agent"]["id"], ["agents.read"]),
        400,
        "invalid_scope",
    )
    # Unknown scope names are not delegable either.
    await refused(
        services, delegate(client, tenant.token, tenant.c["agent"]["id"], ["root.everything"]), 400, "invalid_scope"
    )


async def test_redelegating_beyond_max_chain_depth(
    client: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    # A root grant with max_chain_depth=0: the delegate may act, not re-delegate.
    grant, b_acting = await acting(client, tenant, tenant.b, ["agents.read", *DW], max_chain_depth=0)
    assert grant["max_chain_depth"] == 0
    response = await refused(
        services, delegate(client, b_acting, tenant.c["agent"]["id"], ["agents.read"]), 403, "access_denied"
    )
    assert "depth" in response.json()["error_description"]
    # max_chain_depth above what the parent leaves (1 -> at most 0 below it).
    _, b_acting = await acting(client, tenant, tenant.b, ["agents.read", *DW], max_chain_depth=1)
    await refused(
        services,
        delegate(client, b_acting, tenant.c["agent"]["id"], ["agents.read"], max_chain_depth=1),
        400,
        "invalid_request",
    )
    # Exhausted by default depths: B (1) -> C (0) -> X is refused.
    hop = await delegate(client, b_acting, tenant.c["agent"]["id"], ["agents.read", *DW])
    assert hop.status_code == 201 and hop.json()["max_chain_depth"] == 0, hop.text
    c_acting = await exchange(client, hop.json()["credential"], actor_token=tenant.c["token"])
    assert c_acting.status_code == 200, c_acting.text
    await refused(
        services,
        delegate(client, c_acting.json()["access_token"], tenant.x["agent"]["id"], ["agents.read"]),
        403,
        "access_denied",
    )
    # Out of the documented range 0-10.
    for depth in (11, -1):
        await refused(
            services,
            delegate(client, tenant.token, tenant.c["agent"]["id"], ["agents.read"], max_chain_depth=depth),
            400,
            "invalid_request",
        )


async def test_third_agent_cannot_use_a_delegation_addressed_to_another(
    client: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    grant = await delegate(client, tenant.token, tenant.b["agent"]["id"], ["agents.read"])
    credential = grant.json()["credential"]
    for thief in (tenant.c, tenant.x):
        await refused(services, exchange(client, credential, actor_token=thief["token"]), 400, "invalid_grant")
        await refused(services, exchange(client, credential, api_key=thief["key"]), 400, "invalid_grant")
    # Not even the delegator: it is the delegate who acts under a delegation.
    await refused(services, exchange(client, credential, api_key=tenant.root["api_key"]), 400, "invalid_grant")
    # Another tenant's agent, too.
    other = await quickstart(client, "other")
    await refused(services, exchange(client, credential, actor_token=other["access_token"]), 400, "invalid_grant")
    # The delegate can (the refusals were about the actor, nothing else).
    assert (await exchange(client, credential, actor_token=tenant.b["token"])).status_code == 200


async def test_cycles_are_refused(client: httpx.AsyncClient, services: Services, tenant: Tenant) -> None:
    # root -> B, then B (acting) -> root.
    _, b_acting = await acting(client, tenant, tenant.b, ["agents.read", *DW])
    await refused(
        services, delegate(client, b_acting, tenant.root["agent"]["id"], ["agents.read"]), 400, "invalid_request"
    )
    # root -> B -> C, then C (acting) -> B and C (acting) -> root.
    hop = await delegate(client, b_acting, tenant.c["agent"]["id"], ["agents.read", *DW])
    c_acting = (await exchange(client, hop.json()["credential"], api_key=tenant.c["key"])).json()["access_token"]
    for back_to in (tenant.b, tenant.root):
        response = await refused(
            services, delegate(client, c_acting, back_to["agent"]["id"], ["agents.read"]), 400, "invalid_request"
        )
        assert "cycle" in response.json()["error_description"]


async def test_self_delegation_is_refused(client: httpx.AsyncClient, services: Services, tenant: Tenant) -> None:
    await refused(
        services, delegate(client, tenant.token, tenant.root["agent"]["id"], ["agents.read"]), 400, "invalid_request"
    )
    await refused(
        services, delegate(client, tenant.b["token"], tenant.b["agent"]["id"], ["agents.read"]), 400, "invalid_request"
    )
    _, b_acting = await acting(client, tenant, tenant.b, ["agents.read", *DW])
    await refused(
        services, delegate(client, b_acting, tenant.b["agent"]["id"], ["agents.read"]), 400, "invalid_request"
    )


async def test_cross_tenant_delegation_names_only_live_agents(
    client: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    """Delegating to another tenant's agent is allowed (issue 12 item 16: the rules and attacks are in
    tests/security/test_attack_cross_tenant_delegation.py); an unknown id and another tenant's deactivated agent
    answer alike: not found, so nothing is revealed of the other tenant's agents' state."""
    other = await quickstart(client, "other")
    other_child = await child_with_key(client, other["access_token"], "other-child")
    gone = await client.delete(
        f"/api/v1/agents/{other_child['agent']['id']}", headers={"Authorization": f"Bearer {other['access_token']}"}
    )
    assert gone.status_code == 200, gone.text
    for missing in (other_child["agent"]["id"], "agt_" + "0" * 24):
        await refused(services, delegate(client, tenant.token, missing, ["agents.read"]), 404, "not_found")
    created = await delegate(client, tenant.token, other["agent"]["id"], ["agents.read"])
    assert created.status_code == 201, created.text


async def test_deactivated_delegate_is_refused(client: httpx.AsyncClient, services: Services, tenant: Tenant) -> None:
    gone = await client.delete(
        f"/api/v1/agents/{tenant.x['agent']['id']}", headers={"Authorization": f"Bearer {tenant.token}"}
    )
    assert gone.status_code == 200, gone.text
    await refused(services, delegate(client, tenant.token, tenant.x["agent"]["id"], ["agents.read"]), 409, "conflict")


async def test_expired_parent(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await delegate(client, tenant.token, tenant.b["agent"]["id"], ["agents.read", *DW], expires_in_hours=1)
    assert created.status_code == 201, created.text
    grant = created.json()
    expiry = datetime.fromisoformat(grant["expires_at"])
    # Five minutes before the grant expires, B exchanges it: its token expires with the grant.
    monkeypatch.setattr(services.core, "clock", lambda: expiry - timedelta(minutes=5))
    exchanged = await exchange(client, grant["credential"], api_key=tenant.b["key"])
    assert exchanged.status_code == 200, exchanged.text
    b_acting = exchanged.json()["access_token"]
    # A child may not outlive its parent.
    await refused(
        services,
        delegate(client, b_acting, tenant.c["agent"]["id"], ["agents.read"], expires_in_hours=2),
        400,
        "invalid_request",
    )
    hop = await delegate(client, b_acting, tenant.c["agent"]["id"], ["agents.read"])
    assert hop.status_code == 201, hop.text
    assert hop.json()["expires_at"] == grant["expires_at"]  # capped at the parent's expiry
    # 10 s after the parent's expiry: B's token expired with the grant, and the issuer allows no leeway on the
    # exp of what it signed itself (a third party's 30 s would still accept it): the token is refused, and so are
    # both delegation credentials at the exchange.
    monkeypatch.setattr(services.core, "clock", lambda: expiry + timedelta(seconds=10))
    await refused(services, delegate(client, b_acting, tenant.x["agent"]["id"], ["agents.read"]), 401, "invalid_token")
    await refused(services, exchange(client, hop.json()["credential"], api_key=tenant.c["key"]), 400, "invalid_grant")
    await refused(services, exchange(client, grant["credential"], api_key=tenant.b["key"]), 400, "invalid_grant")
    # Well past it: the credentials themselves have expired.
    monkeypatch.setattr(services.core, "clock", lambda: expiry + timedelta(hours=1))
    await refused(services, exchange(client, hop.json()["credential"], api_key=tenant.c["key"]), 400, "invalid_grant")
    await refused(services, delegate(client, b_acting, tenant.x["agent"]["id"], ["agents.read"]), 401, "invalid_token")


async def test_refresh_or_access_token_as_subject_token(
    client: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    b_refresh = await client.post(
        "/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": tenant.b["key"]}
    )
    for subject in (
        tenant.root["refresh_token"],  # the delegator's refresh token
        b_refresh.json()["refresh_token"],  # the actor's own refresh token
        tenant.root["access_token"],  # a plain access token (typ at+jwt)
        tenant.b["token"],
        tenant.root["identity_credential"],  # a signed VC, but not a delegation
        "not-a-jwt",
    ):
        await refused(services, exchange(client, subject, actor_token=tenant.b["token"]), 400, "invalid_grant")
    # A delegated access token is no delegation credential either.
    _, b_acting = await acting(client, tenant, tenant.b, ["agents.read"])
    await refused(services, exchange(client, b_acting, api_key=tenant.b["key"]), 400, "invalid_grant")


async def test_wrong_subject_token_type(client: httpx.AsyncClient, services: Services, tenant: Tenant) -> None:
    grant = await delegate(client, tenant.token, tenant.b["agent"]["id"], ["agents.read"])
    credential = grant.json()["credential"]
    for wrong in (ACCESS_TYPE, "urn:ietf:params:oauth:token-type:refresh_token", "jwt"):
        await refused(
            services,
            exchange(client, credential, actor_token=tenant.b["token"], subject_token_type=wrong),
            400,
            "invalid_request",
        )
    missing = client.post(
        "/api/v1/auth/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": credential},
    )
    await refused(services, missing, 400, "invalid_request")


async def test_missing_or_bad_actor_authentication(
    client: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    grant, b_acting = await acting(client, tenant, tenant.b, ["agents.read"])
    credential = grant["credential"]
    response = await refused(services, exchange(client, credential), 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    await refused(services, exchange(client, credential, api_key="ak_live_" + "A" * 43), 401, "invalid_client")
    await refused(services, exchange(client, credential, actor_token="eyJ.not.valid"), 400, "invalid_grant")
    # The delegate's delegated token is not its own token: acting under a delegation cannot bootstrap another.
    await refused(services, exchange(client, credential, actor_token=b_acting), 400, "invalid_grant")
    wrong_type = client.post(
        "/api/v1/auth/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": credential,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "actor_token": tenant.b["token"],
            "actor_token_type": "urn:ietf:params:oauth:token-type:jwt",
        },
    )
    await refused(services, wrong_type, 400, "invalid_request")
