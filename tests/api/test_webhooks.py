"""Webhook management and the worker's fan-out (issue 16 item 5) through the REST API and the real storage of
each backend: who may manage them, which URLs are refused (SSRF), which events each subscription is owed, and
that bad input changes nothing. Delivery over real HTTP is in ``tests/faults/test_webhooks_live.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agentauth.api.app import create_app
from agentauth.bootstrap import Services, build_services
from agentauth.issuer.webhook_worker import GAP_SECONDS, WebhookWorker
from support import ISSUER_URL, bearer, ok, quickstart
from webhook_support import receiver

pytestmark = pytest.mark.anyio
HOOKS = "/api/v1/webhooks"


async def make_hook(client: httpx.AsyncClient, token: str, events: list[str], url: str = "http://127.0.0.1:9/h") -> str:
    hook_id: str = ok(await client.post(HOOKS, json={"url": url, "events": events}, headers=bearer(token)), 201)["id"]
    return hook_id


async def api_key(client: httpx.AsyncClient, token: str, agent_id: str) -> str:
    made = await client.post("/api/v1/credentials", json={"agent_id": agent_id}, headers=bearer(token))
    raw: str = ok(made, 201)["raw_key"]
    return raw


async def owed(client: httpx.AsyncClient, token: str, hook: str) -> list[str]:
    page = ok(await client.get(f"{HOOKS}/{hook}/deliveries", headers=bearer(token)))
    return sorted(d["event_type"] for d in page["items"])


@pytest.fixture
async def strict_client(settings_factory: Any, backend: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app with the production rule: no loopback webhook targets."""
    from support import reset_postgres

    if backend == "postgres":
        await reset_postgres()
    services = await build_services(settings_factory(webhook_allow_loopback=False))
    app = create_app(services=services)
    app.state.services = services
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER_URL) as http:
            yield http
    finally:
        await services.close()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/a", "must use https"),
        ("https://127.0.0.1/a", "not a public address"),
        ("http://127.0.0.1:8080/a", "must use https"),
        ("https://localhost/a", "not a public address"),
        ("https://10.1.2.3/a", "not a public address"),
        ("https://192.168.0.1/a", "not a public address"),
        ("https://169.254.169.254/latest/meta-data", "not a public address"),
        ("https://[::1]/a", "not a public address"),
        ("https://[fd00::1]/a", "not a public address"),
        ("https://0.0.0.0/a", "not a public address"),
        ("https://user:pw@hooks.example.com/a", "no user information"),
        ("https://hooks.example.com/a#frag", "fragment"),
        ("https://no-such-host.invalid/a", "does not resolve"),
        ("ftp://hooks.example.com/a", "must use https"),
        ("https://hooks.example.com:0/a", "port 0"),
    ],
)
async def test_a_webhook_url_that_is_not_public_https_is_refused_and_nothing_is_made(
    strict_client: httpx.AsyncClient, url: str, why: str
) -> None:
    token = (await quickstart(strict_client, "root"))["access_token"]
    refused = await strict_client.post(HOOKS, json={"url": url}, headers=bearer(token))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_request" and why in refused.json()["error_description"]
    assert ok(await strict_client.get(HOOKS, headers=bearer(token)))["total"] == 0
    hook = ok(await strict_client.post(HOOKS, json={"url": "https://93.184.215.14/h"}, headers=bearer(token)), 201)
    changed = await strict_client.patch(f"{HOOKS}/{hook['id']}", json={"url": url}, headers=bearer(token))
    assert changed.status_code == 400, changed.text  # the same guard on a change; the URL stays
    assert (
        ok(await strict_client.get(f"{HOOKS}/{hook['id']}", headers=bearer(token)))["url"] == "https://93.184.215.14/h"
    )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"url": "https://93.184.215.14/h", "events": ["agent.exploded"]}, "unknown event type(s) agent.exploded"),
        ({"url": "https://93.184.215.14/h", "events": []}, "events"),
        ({"url": "https://93.184.215.14/h", "secret": "whsec_mine"}, "secret"),
        ({"events": ["*"]}, "url"),
    ],
)
async def test_bad_webhook_bodies_are_invalid_requests(
    client: httpx.AsyncClient, body: dict[str, Any], why: str
) -> None:
    token = (await quickstart(client, "root"))["access_token"]
    refused = await client.post(HOOKS, json=body, headers=bearer(token))
    assert refused.status_code in (400, 422) and why in refused.text, refused.text
    assert refused.json()["error"] == "invalid_request"
    assert ok(await client.get(HOOKS, headers=bearer(token)))["total"] == 0


async def test_one_tenant_never_sees_or_changes_anothers_webhooks(client: httpx.AsyncClient) -> None:
    alice, mallory = await quickstart(client, "alice"), await quickstart(client, "mallory")
    hook = await make_hook(client, alice["access_token"], ["*"])
    evil = bearer(mallory["access_token"])
    attempts = [
        ("GET", f"{HOOKS}/{hook}", None),
        ("PATCH", f"{HOOKS}/{hook}", {"url": "http://127.0.0.1:9/stolen"}),
        ("DELETE", f"{HOOKS}/{hook}", None),
        ("GET", f"{HOOKS}/{hook}/deliveries", None),
        ("POST", f"{HOOKS}/{hook}/deliveries/1/retry", None),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=evil)
        assert response.status_code == 404, (method, path, response.text)
    assert ok(await client.get(HOOKS, headers=evil))["items"] == []
    kept = ok(await client.get(f"{HOOKS}/{hook}", headers=bearer(alice["access_token"])))
    assert kept["url"] == "http://127.0.0.1:9/h" and kept["tenant_id"] == alice["agent"]["id"]


async def test_only_the_tenant_root_manages_webhooks(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "root")
    auth = bearer(root["access_token"])
    body = {"name": "helper", "agent_type": "tool", "scopes": ["webhooks.read", "webhooks.write", "agents.read"]}
    child = ok(await client.post("/api/v1/agents", json=body, headers=auth), 201)
    key = await api_key(client, root["access_token"], child["agent"]["id"])
    form = {"grant_type": "client_credentials", "client_id": child["agent"]["id"], "client_secret": key}
    child_token = ok(await client.post("/api/v1/auth/token", data=form))["access_token"]
    refused = await client.post(HOOKS, json={"url": "http://127.0.0.1:9/h"}, headers=bearer(child_token))
    assert refused.status_code == 403, refused.text
    assert ok(await client.get(HOOKS, headers=bearer(child_token)))["total"] == 0  # reading is allowed
    no_scope = {"grant_type": "client_credentials", "client_id": child["agent"]["id"], "client_secret": key}
    narrow = ok(await client.post("/api/v1/auth/token", data=no_scope | {"scope": "agents.read"}))["access_token"]
    assert (await client.get(HOOKS, headers=bearer(narrow))).status_code == 403


async def test_each_subscription_is_owed_exactly_its_events_once(client: httpx.AsyncClient, services: Services) -> None:
    root = await quickstart(client, "root")
    token = root["access_token"]
    other = await quickstart(client, "other")
    every = await make_hook(client, token, ["*"])
    agents_only = await make_hook(client, token, ["agent.*"])
    tokens = await make_hook(client, token, ["token.*"])
    paused = await make_hook(client, token, ["agent.created"])
    ok(await client.patch(f"{HOOKS}/{paused}", json={"active": False}, headers=bearer(token)))
    made = ok(await client.post("/api/v1/agents", json={"name": "c", "agent_type": "tool"}, headers=bearer(token)), 201)
    key = await api_key(client, token, made["agent"]["id"])
    form = {"grant_type": "client_credentials", "client_id": made["agent"]["id"], "client_secret": key}
    ok(await client.post("/api/v1/auth/token", data=form))
    await client.post("/api/v1/agents", json={"name": "x", "agent_type": "tool"}, headers=bearer(other["access_token"]))
    worker = services.webhook_worker
    added = await worker.fan_out()
    assert await worker.fan_out() == 0  # fanned out again: nothing more is owed
    # A subscription is owed what happens after it was made - its own webhook.created included.
    assert await owed(client, token, every) == [
        "agent.created", "credential.created", *["webhook.created"] * 4, "webhook.updated",
    ]  # fmt: skip
    assert await owed(client, token, agents_only) == ["agent.created"]
    assert await owed(client, token, tokens) == ["token.issued"]  # opt-in: only where named
    assert await owed(client, token, paused) == []  # made inactive before anything it wants happened
    assert added == 9
    # A second worker (another replica) does not take the fan-out while the first holds its lease.
    replica = WebhookWorker(services.core, services.webhook_worker.kek, services.webhook_worker.settings)
    await client.post("/api/v1/agents", json={"name": "d", "agent_type": "tool"}, headers=bearer(token))
    assert await replica.fan_out() == 0
    assert await worker.fan_out() == 2  # every and agents_only
    # Deleting a subscription closes what it still owed.
    ok_delete = await client.delete(f"{HOOKS}/{agents_only}", headers=bearer(token))
    assert ok_delete.status_code == 204
    assert (await client.get(f"{HOOKS}/{agents_only}", headers=bearer(token))).status_code == 404


async def test_deliveries_go_out_signed_and_are_logged(client: httpx.AsyncClient, services: Services) -> None:
    with receiver(script=[410]) as hook:
        token = (await quickstart(client, "root"))["access_token"]
        created = ok(
            await client.post(HOOKS, json={"url": hook.url, "events": ["agent.created"]}, headers=bearer(token)), 201
        )
        await client.post("/api/v1/agents", json={"name": "c", "agent_type": "tool"}, headers=bearer(token))
        worker = services.webhook_worker
        await worker.fan_out()
        assert await worker.deliver_due() == 1
        assert await worker.deliver_due() == 0  # not due again yet (backoff)
        (failed,) = ok(await client.get(f"{HOOKS}/{created['id']}/deliveries", headers=bearer(token)))["items"]
        assert (failed["status"], failed["attempts"], failed["last_status_code"]) == ("pending", 1, 410)
        busy = await client.post(f"{HOOKS}/{created['id']}/deliveries/{failed['id']}/retry", headers=bearer(token))
        assert busy.status_code == 200 and busy.json()["status"] == "pending"
        assert await worker.deliver_due() == 1
        (done,) = ok(await client.get(f"{HOOKS}/{created['id']}/deliveries", headers=bearer(token)))["items"]
        assert (done["status"], done["attempts"]) == ("delivered", 2)
        assert [r.answered for r in hook.received] == [410, 204]
        assert hook.received[1].verified(created["secret"])["type"] == "agent.created"


def test_the_cursor_passes_a_hole_in_the_audit_ids_only_once_it_is_old(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = WebhookWorker.__new__(WebhookWorker)
    worker._gaps = {}
    now = [1000.0]
    monkeypatch.setattr("agentauth.issuer.webhook_worker.time.monotonic", lambda: now[0])
    assert worker._settled(10, [11, 12, 13]) == 13
    assert worker._settled(13, [14, 16, 17]) == 14  # 15 may still commit (PostgreSQL sequence order)
    now[0] += GAP_SECONDS / 2
    assert worker._settled(14, [16, 17]) == 14
    now[0] += GAP_SECONDS
    assert worker._settled(14, [16, 17]) == 17  # a rolled-back insert: the hole stays for good
    assert worker._gaps == {}


async def test_key_events_are_issuer_wide_and_carry_only_key_ids(client: httpx.AsyncClient, services: Services) -> None:
    """A rotation or a compromised signing key concerns every tenant's verifiers: each tenant's subscription that
    names ``key.*`` (or ``*``) is owed it; the body names the kids and nothing of other tenants (no counts)."""
    from agentauth.issuer.compromise import revoke_signing_key
    from agentauth.issuer.context import RequestContext

    with receiver() as hook:
        first, second = await quickstart(client, "first"), await quickstart(client, "second")
        keys_first = ok(await client.post(HOOKS, json={"url": hook.url, "events": ["key.*"]},
                                          headers=bearer(first["access_token"])), 201)  # fmt: skip
        every_second = await make_hook(client, second["access_token"], ["*"])
        agents_second = await make_hook(client, second["access_token"], ["agent.*"])
        before = services.keys.ring.active.kid
        ring = await services.keys.rotate(services.core.clock(), services.key_retention())
        await revoke_signing_key(services.keys, services.core, before, RequestContext())
        worker = services.webhook_worker
        await worker.fan_out()
        fresh = []  # the revoked key signed the quickstart tokens
        for made in (first, second):
            form = {"grant_type": "client_credentials", "client_secret": made["api_key"]}
            fresh.append(ok(await client.post("/api/v1/auth/token", data=form))["access_token"])
        assert await owed(client, fresh[0], keys_first["id"]) == ["key.revoked", "key.rotated"]
        seen_by_every = await owed(client, fresh[1], every_second)  # and its own credentials the key signed
        assert [e for e in seen_by_every if e.startswith("key.")] == ["key.revoked", "key.rotated"]
        assert "credential.revoked" in seen_by_every
        assert await owed(client, fresh[1], agents_second) == []
        while await worker.deliver_due():
            pass
        bodies = [r.verified(keys_first["secret"]) for r in hook.received]
    by_type = {b["type"]: b["data"] for b in bodies}  # attempts run concurrently: any order
    assert len(bodies) == 2 and set(by_type) == {"key.rotated", "key.revoked"}
    rotated, revoked = by_type["key.rotated"], by_type["key.revoked"]
    assert rotated["details"] == {"active_kid": ring.active.kid, "previous_kid": before}
    assert rotated["tenant_id"] is None and rotated["actor"] == "operator"
    assert revoked["target_id"] == before and revoked["details"] == {}  # the revoked count spans every tenant


async def test_settled_deliveries_are_forgotten_after_log_days(client: httpx.AsyncClient, services: Services) -> None:
    """Housekeeping forgets deliveries settled ``webhook_log_days`` ago, with their attempts, in bounded batches;
    one still owed (pending, retrying) stays whatever its age."""
    from datetime import timedelta

    from agentauth.bootstrap import utcnow

    token = (await quickstart(client, "root"))["access_token"]
    with receiver() as hook:
        answering = ok(await client.post(HOOKS, json={"url": hook.url, "events": ["agent.*"]}, headers=bearer(token)),
                       201)["id"]  # fmt: skip
        unreachable = await make_hook(client, token, ["agent.*"])  # nothing listens on port 9: it stays pending
        for name in ("a", "b"):
            await client.post("/api/v1/agents", json={"name": name, "agent_type": "tool"}, headers=bearer(token))
        worker = services.webhook_worker
        await worker.fan_out()
        assert await worker.deliver_due() == 4
    assert await owed(client, token, answering) == ["agent.created"] * 2
    assert await worker.forget_settled(services.core.clock() - timedelta(seconds=60), batch=1) == 0  # too recent
    assert await worker.forget_settled(services.core.clock() + timedelta(seconds=1), batch=1) == 2  # two batches
    assert await owed(client, token, answering) == []
    (still,) = ok(await client.get(f"{HOOKS}/{unreachable}/deliveries", headers=bearer(token)))["items"][:1]
    assert still["status"] == "pending" and still["attempts"] == 1
    assert await owed(client, token, unreachable) == ["agent.created"] * 2
    await services.housekeeping(utcnow() + timedelta(days=services.settings.webhook_log_days + 1))
    assert await owed(client, token, unreachable) == ["agent.created"] * 2  # owed: never forgotten
