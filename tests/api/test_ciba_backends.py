"""The CIBA grant on each storage backend (SQLite and PostgreSQL): an approved request is redeemed exactly once,
even by concurrent polls - the spend is one conditional UPDATE in the issuing transaction -, and a request of an
agent deactivated after the approval issues nothing. The live-server sequences are ``tests/e2e/test_ciba.py``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from agentauth import paths
from agentauth.api.app import create_app
from agentauth.bootstrap import Services, build_services
from agentauth.issuer.context import RequestContext
from agentauth.issuer.owners import OwnerSession
from support import ISSUER_URL, bearer, ok, quickstart, reset_postgres

pytestmark = pytest.mark.anyio
CIBA = "urn:openid:params:grant-type:ciba"
EMAIL = "approver@example.com"
DETAILS = [{"type": "agent_action", "action": "delete_repository", "locations": ["https://git.example/r/1"]}]


async def owner_of(services: Services, api_key: str) -> OwnerSession:
    ctx = RequestContext()
    await services.owners.signup(EMAIL, "correct horse battery staple", ctx)
    login = await services.owners.login(EMAIL, "correct horse battery staple", ctx)
    await services.owners.claim_tenant(login.session, api_key, ctx)
    return login.session


async def approved_request(
    client: httpx.AsyncClient, services: Services, key: str, owner: OwnerSession, tenant_id: str
) -> str:
    asked = await client.post(paths.BACKCHANNEL, auth=("", key), data={
        "login_hint": EMAIL, "authorization_details": json.dumps(DETAILS), "binding_message": "Delete repo 1",
    })  # fmt: skip
    auth_req_id: str = ok(asked)["auth_req_id"]
    (waiting, *_) = await services.approvals.inbox(tenant_id, pending_only=True)
    await services.approvals.decide(owner, tenant_id, waiting.id, True, RequestContext())
    return auth_req_id


async def poll(client: httpx.AsyncClient, key: str, auth_req_id: str) -> httpx.Response:
    return await client.post(paths.TOKEN, data={"grant_type": CIBA, "auth_req_id": auth_req_id}, auth=("", key))


async def test_concurrent_polls_of_an_approved_request_get_one_token(
    client: httpx.AsyncClient, services: Services
) -> None:
    made = await quickstart(client, "root")
    key, tenant = made["api_key"], made["agent"]["tenant_id"]
    owner = await owner_of(services, key)
    auth_req_id = await approved_request(client, services, key, owner, tenant)
    answers = await asyncio.gather(*(poll(client, key, auth_req_id) for _ in range(6)))
    issued = [a for a in answers if a.status_code == 200]
    assert len(issued) == 1, [a.text for a in answers]
    assert all(a.json()["error"] == "invalid_grant" for a in answers if a.status_code != 200)
    token = issued[0].json()["access_token"]
    seen = ok(await client.post(paths.INTROSPECT, data={"token": token}, headers=bearer(token)))
    assert seen["active"] is True
    inbox = await services.approvals.inbox(tenant)
    assert [a.status for a in inbox] == ["issued"]


async def test_an_agent_deactivated_after_approval_gets_no_token(client: httpx.AsyncClient, services: Services) -> None:
    made = await quickstart(client, "root")
    root_key, tenant = made["api_key"], made["agent"]["tenant_id"]
    owner = await owner_of(services, root_key)
    admin = made["access_token"]
    child = ok(await client.post(paths.AGENTS, json={"name": "c", "agent_type": "tool"}, headers=bearer(admin)), 201)
    child_id = child["agent"]["id"]
    key = ok(await client.post(paths.CREDENTIALS, json={"agent_id": child_id}, headers=bearer(admin)), 201)["raw_key"]
    auth_req_id = await approved_request(client, services, key, owner, tenant)
    gone = await client.delete(f"{paths.AGENTS}/{child_id}", headers=bearer(admin))
    assert gone.status_code in (200, 204), gone.text
    refused = await poll(client, key, auth_req_id)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    (closed,) = await services.approvals.inbox(tenant)
    assert closed.status == "denied" and closed.decided_by == "agent deactivated"


async def test_an_agent_cannot_bury_its_owners_inbox(client: httpx.AsyncClient, services: Services) -> None:
    from agentauth.issuer.approvals import PENDING_PER_AGENT

    made = await quickstart(client, "root")
    key, tenant = made["api_key"], made["agent"]["tenant_id"]
    await owner_of(services, key)
    form = {"login_hint": EMAIL, "authorization_details": json.dumps(DETAILS)}
    for _ in range(PENDING_PER_AGENT):
        ok(await client.post(paths.BACKCHANNEL, auth=("", key), data=form))
    refused = await client.post(paths.BACKCHANNEL, auth=("", key), data=form)
    assert refused.status_code == 429 and refused.json()["error"] == "rate_limited", refused.text
    assert "retry-after" in refused.headers
    assert len(await services.approvals.inbox(tenant)) == PENDING_PER_AGENT


async def test_two_replicas_send_a_due_ping_once(client: httpx.AsyncClient, services: Services) -> None:
    """CIBA ping mode: a decided request's ping is owed in the database; two senders racing for it (two replicas)
    make one attempt between them, and a sent ping is not sent again."""
    from agentauth.bootstrap import approval_pings
    from webhook_support import receiver

    made = await quickstart(client, "root")
    key, tenant, root = made["api_key"], made["agent"]["tenant_id"], made["agent"]["id"]
    owner = await owner_of(services, key)
    with receiver() as hook:
        registered = await client.patch(f"{paths.AGENTS}/{root}", headers=bearer(made["access_token"]),
                                        json={"backchannel_client_notification_endpoint": hook.url})  # fmt: skip
        assert ok(registered)["backchannel_token_delivery_mode"] == "ping"
        asked = await client.post(paths.BACKCHANNEL, auth=("", key), data={
            "login_hint": EMAIL, "authorization_details": json.dumps(DETAILS), "client_notification_token": "t0k",
        })  # fmt: skip
        auth_req_id = ok(asked)["auth_req_id"]
        replicas = [approval_pings(services.core, services.webhook_worker.kek, services.settings) for _ in range(2)]
        async with httpx.AsyncClient() as http:
            assert [await r.send_due(http) for r in replicas] == [0, 0]  # undecided: nothing is owed yet
            (waiting,) = await services.approvals.inbox(tenant, pending_only=True)
            await services.approvals.decide(owner, tenant, waiting.id, False, RequestContext())
            sent = await asyncio.gather(*(r.send_due(http) for r in replicas))
            assert sorted(sent) == [0, 1]
            assert [await r.send_due(http) for r in replicas] == [0, 0]
        (ping,) = hook.wait_for(1)
        assert ping.event == {"auth_req_id": auth_req_id} and ping.headers["authorization"] == "Bearer t0k"
        assert len(hook.received) == 1
    refused = await poll(client, key, auth_req_id)
    assert refused.json()["error"] == "access_denied"


async def test_private_key_jwt_at_the_backchannel_endpoint_and_the_poll(
    client: httpx.AsyncClient, services: Services
) -> None:
    """CIBA section 7.1: the backchannel endpoint authenticates the client as the token endpoint does - here with
    a client assertion signed by the agent's own did:key (joserfc), used once; a replayed or foreign one is
    invalid_client and records no request."""
    from test_private_key_jwt import ASSERTION_TYPE, assertion, claims_for

    made = await quickstart(client, "root")
    agent, jwk, tenant = made["agent"], made["private_key_jwk"], made["agent"]["tenant_id"]
    owner = await owner_of(services, made["api_key"])
    other = await quickstart(client, "other")

    def signed(**changes: object) -> dict[str, str]:
        return {"client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion(jwk, claims_for(agent["id"], **changes))}  # fmt: skip

    ask = {"login_hint": EMAIL, "authorization_details": json.dumps(DETAILS)}
    first = signed()
    asked = ok(await client.post(paths.BACKCHANNEL, data=ask | first))
    replayed = await client.post(paths.BACKCHANNEL, data=ask | first)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"
    foreign = {"client_assertion_type": ASSERTION_TYPE,
               "client_assertion": assertion(other["private_key_jwk"], claims_for(agent["id"]))}  # fmt: skip
    for refused in (foreign, signed(aud="https://elsewhere.example"), signed() | {"client_secret": made["api_key"]}):
        answer = await client.post(paths.BACKCHANNEL, data=ask | refused)
        assert answer.status_code in (400, 401), answer.text
        assert answer.json()["error"] in ("invalid_client", "invalid_request"), answer.text
    assert len(await services.approvals.inbox(tenant)) == 1  # only the first request was recorded
    (waiting,) = await services.approvals.inbox(tenant, pending_only=True)
    await services.approvals.decide(owner, tenant, waiting.id, True, RequestContext())
    polled = await client.post(paths.TOKEN, data={"grant_type": CIBA, "auth_req_id": asked["auth_req_id"]} | signed())
    token = ok(polled)["access_token"]
    seen = ok(await client.post(paths.INTROSPECT, data={"token": token}, headers=bearer(token)))
    assert seen["client_id"] == agent["id"] and seen["authorization_details"] == DETAILS


async def test_two_replicas_send_a_due_approval_email_once(settings_factory: Any, backend: str) -> None:
    """The email hook: a request's email is owed in the database from the request on; two senders racing for it
    (two replicas) send it once between them, and a sent email is not sent again."""
    from agentauth.bootstrap import approval_emails
    from live_server import free_port
    from smtp_support import SmtpServer

    smtp = SmtpServer(free_port())
    smtp.start()
    if backend == "postgres":
        await reset_postgres()
    services = await build_services(settings_factory(smtp_url=f"smtp://127.0.0.1:{smtp.port}"))
    app = create_app(services=services)
    app.state.services = services
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER_URL) as client:
            made = await quickstart(client, "root")
            await owner_of(services, made["api_key"])
            asked = await client.post(paths.BACKCHANNEL, auth=("", made["api_key"]), data={
                "login_hint": EMAIL, "authorization_details": json.dumps(DETAILS), "binding_message": "Raced 1",
            })  # fmt: skip
            ok(asked)
            replicas = [approval_emails(services.core, services.settings) for _ in range(2)]
            assert all(r is not None for r in replicas)
            sent = await asyncio.gather(*(r.send_due() for r in replicas if r is not None))
            assert sorted(sent) == [0, 1]
            assert [await r.send_due() for r in replicas if r is not None] == [0, 0]
        email = smtp.mailbox.wait_for("Raced 1")
        assert str(email["To"]) == EMAIL and len(smtp.mailbox.messages) == 1
    finally:
        await services.close()
        smtp.stop()
