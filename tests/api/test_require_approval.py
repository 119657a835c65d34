"""The ``require_approval`` policy effect (issue 17 item 2) on each backend: the action it gates answers 403
``approval_required`` with the authorization_details to ask for, and ``check_permission`` says so; after the
owner approved exactly that action (CIBA), the token it returns passes the gate - and only for that action on that
resource, and only within the token's scopes. A deny still overrides; a bad effect is refused."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from agentauth import paths
from agentauth.bootstrap import Services
from agentauth.issuer.context import RequestContext
from agentauth.issuer.owners import OwnerSession
from support import assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio
CIBA = "urn:openid:params:grant-type:ciba"
EMAIL = "gatekeeper@example.com"
GATE = {
    "name": "deletions need a person", "effect": "require_approval", "subjects": {"all": True},
    "actions": ["delete"], "resources": ["/api/v1/agents/**"],
}  # fmt: skip


async def owner_of(services: Services, api_key: str) -> OwnerSession:
    ctx = RequestContext()
    await services.owners.signup(EMAIL, "correct horse battery staple", ctx)
    login = await services.owners.login(EMAIL, "correct horse battery staple", ctx)
    await services.owners.claim_tenant(login.session, api_key, ctx)
    return login.session


def asked_for(refusal: httpx.Response) -> list[dict[str, Any]]:
    """The authorization_details the refusal says to ask approval with."""
    found = re.search(r"authorization_details=(\[.*?\]), then", refusal.json()["error_description"])
    assert found is not None, refusal.text
    details: list[dict[str, Any]] = json.loads(found.group(1))
    return details


async def approved_token(
    client: httpx.AsyncClient, services: Services, made: dict[str, Any], owner: OwnerSession,
    details: list[dict[str, Any]], scope: str, single_use: str = "false",
) -> str:  # fmt: skip
    key, tenant = made["api_key"], made["agent"]["tenant_id"]
    asked = await client.post(paths.BACKCHANNEL, auth=("", key), data={
        "login_hint": EMAIL, "authorization_details": json.dumps(details), "scope": scope, "single_use": single_use,
    })  # fmt: skip
    auth_req_id = ok(asked)["auth_req_id"]
    (waiting, *_) = await services.approvals.inbox(tenant, pending_only=True)
    await services.approvals.decide(owner, tenant, waiting.id, True, RequestContext())
    polled = await client.post(paths.TOKEN, auth=("", key), data={"grant_type": CIBA, "auth_req_id": auth_req_id})
    token: str = ok(polled)["access_token"]
    return token


async def test_the_gate_asks_for_approval_and_an_approved_token_passes_it_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    made = await quickstart(client, "root")
    owner = await owner_of(services, made["api_key"])
    admin = made["access_token"]
    ok(await client.post(paths.POLICIES, json=GATE, headers=bearer(admin)), 201)
    children = [
        ok(await client.post(paths.AGENTS, json={"name": n, "agent_type": "tool"}, headers=bearer(admin)), 201)
        for n in ("first", "second")
    ]
    first, second = (c["agent"]["id"] for c in children)
    refused = await client.delete(f"{paths.AGENTS}/{first}", headers=bearer(admin))
    assert_error(refused, 403, "approval_required")
    details = asked_for(refused)
    assert details[0]["type"] == "agent_action" and details[0]["actions"] == ["delete"]
    check = {"agent_id": made["agent"]["id"], "action": "delete", "resource": f"/api/v1/agents/{first}"}
    decision = ok(await client.post(paths.EVALUATE, json=check, headers=bearer(admin)))
    assert (decision["allowed"], decision["effect"], decision["basis"]) == (False, "require_approval", "policy")
    # Reads are not gated.
    ok(await client.get(f"{paths.AGENTS}/{first}", headers=bearer(admin)))

    approved = await approved_token(client, services, made, owner, details, "agents.write")
    # Approval for the first agent's deletion does not cover the second.
    assert_error(await client.delete(f"{paths.AGENTS}/{second}", headers=bearer(approved)), 403, "approval_required")
    gone = await client.delete(f"{paths.AGENTS}/{first}", headers=bearer(approved))
    assert gone.status_code in (200, 204), gone.text
    # An approval grants nothing beyond the token's scopes.
    narrow = await approved_token(client, services, made, owner, asked_for(
        await client.delete(f"{paths.AGENTS}/{second}", headers=bearer(admin))
    ), "agents.read")  # fmt: skip
    assert_error(await client.delete(f"{paths.AGENTS}/{second}", headers=bearer(narrow)), 403, "insufficient_scope")


async def test_a_deny_still_overrides_and_a_bad_effect_is_refused(client: httpx.AsyncClient) -> None:
    made = await quickstart(client, "root")
    admin = made["access_token"]
    ok(await client.post(paths.POLICIES, json=GATE, headers=bearer(admin)), 201)
    deny = GATE | {"name": "never", "effect": "deny"}
    ok(await client.post(paths.POLICIES, json=deny, headers=bearer(admin)), 201)
    child = ok(await client.post(paths.AGENTS, json={"name": "c", "agent_type": "tool"}, headers=bearer(admin)), 201)
    assert_error(
        await client.delete(f"{paths.AGENTS}/{child['agent']['id']}", headers=bearer(admin)), 403, "access_denied"
    )
    bad = await client.post(paths.POLICIES, json=GATE | {"effect": "ask_nicely"}, headers=bearer(admin))
    assert bad.status_code in (400, 422) and bad.json()["error"] == "invalid_request", bad.text


async def test_a_single_use_approval_passes_the_gate_once(client: httpx.AsyncClient, services: Services) -> None:
    """``single_use=true``: the token carries ``single_use``; the first gated call it lets through spends it
    (across replicas: a row of used_assertions), a second is refused - while an ordinary approval passes again."""
    made = await quickstart(client, "root")
    owner = await owner_of(services, made["api_key"])
    admin = made["access_token"]
    child = ok(await client.post(paths.AGENTS, json={"name": "c", "agent_type": "tool"}, headers=bearer(admin)), 201)
    target = f"{paths.AGENTS}/{child['agent']['id']}"
    gate = GATE | {"name": "changes need a person", "actions": ["write"]}
    ok(await client.post(paths.POLICIES, json=gate, headers=bearer(admin)), 201)
    details = asked_for(await client.patch(target, json={"description": "x"}, headers=bearer(admin)))
    once = await approved_token(client, services, made, owner, details, "agents.read agents.write", single_use="true")
    again = await approved_token(client, services, made, owner, details, "agents.read agents.write")
    ok(await client.patch(target, json={"description": "first"}, headers=bearer(once)))
    spent = await client.patch(target, json={"description": "second"}, headers=bearer(once))
    assert_error(spent, 403, "access_denied")
    assert "already used" in spent.json()["error_description"]
    # Reads with it are not gated, so not spent either; the ordinary approval passes twice.
    ok(await client.get(target, headers=bearer(once)))
    for text in ("third", "fourth"):
        ok(await client.patch(target, json={"description": text}, headers=bearer(again)))
    assert ok(await client.get(target, headers=bearer(admin)))["description"] == "fourth"
    bad = await client.post(paths.BACKCHANNEL, auth=("", made["api_key"]), data={
        "login_hint": EMAIL, "authorization_details": json.dumps(details), "single_use": "yes",
    })  # fmt: skip
    assert_error(bad, 400, "invalid_request")
