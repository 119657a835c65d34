"""CIBA ping mode against a running server (OpenID CIBA Core 1.0 sections 4, 7.1, 10.2): an agent registers a
client notification endpoint; each of its approval requests carries a client_notification_token; once the owner
approves or denies in the console - or the request expires undecided - the endpoint gets one POST with
``Authorization: Bearer <that token>`` and ``{"auth_req_id": ...}``, retried when it fails, and the agent then
calls the token endpoint once for the outcome. The receiver is a real HTTP server on 127.0.0.1 (the server runs
with ``AGENTAUTH_WEBHOOK_ALLOW_LOOPBACK``, as the webhook tests do)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentauth import paths
from live_server import LiveServer, free_port, issuer_env, spawn
from owner_support import ConsoleOwner
from webhook_support import receiver

pytestmark = pytest.mark.slow
CIBA = "urn:openid:params:grant-type:ciba"
PAYMENT = {"type": "payment", "amount": "45.00", "currency": "USD", "creditor": "ACME Corp"}
EMAIL = "pinged@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("ciba-ping")
    port = free_port()
    env = issuer_env(tmp / "data", port) | {
        "AGENTAUTH_APPROVAL_INTERVAL_SECONDS": "1",
        "AGENTAUTH_WEBHOOK_ALLOW_LOOPBACK": "true",
        "AGENTAUTH_WEBHOOK_POLL_SECONDS": "0.2",
        "AGENTAUTH_WEBHOOK_RETRY_FIRST_SECONDS": "0.4",
    }
    live = spawn(env, port, tmp / "issuer.log", log_level="warning")
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> Iterator[ConsoleOwner]:
    person = ConsoleOwner(server.url, EMAIL, "pings")
    yield person
    person.http.close()


class Agent:
    """The tenant root as a CIBA client: its id, a bearer token for its own API, and its API key."""

    def __init__(self, server: LiveServer, key: str) -> None:
        self.server, self.key = server, key
        token = httpx.post(
            f"{server.url}{paths.TOKEN}", data={"grant_type": "client_credentials", "client_secret": key}
        )
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        introspected = httpx.post(f"{server.url}{paths.INTROSPECT}", data={"token": token.json()["access_token"],
                                                                            "client_secret": key})  # fmt: skip
        self.id: str = introspected.json()["client_id"]

    def register(self, **fields: Any) -> httpx.Response:
        return httpx.patch(f"{self.server.url}{paths.AGENTS}/{self.id}", json=fields, headers=self.headers)

    def ask(self, message: str, **form: str) -> httpx.Response:
        body = {"login_hint": EMAIL, "binding_message": message, "authorization_details": json.dumps([PAYMENT])}
        return httpx.post(f"{self.server.url}{paths.BACKCHANNEL}", data=body | form, auth=("", self.key))

    def poll(self, auth_req_id: str) -> httpx.Response:
        form = {"grant_type": CIBA, "auth_req_id": auth_req_id}
        return httpx.post(f"{self.server.url}{paths.TOKEN}", data=form, auth=("", self.key))


def refusal(response: httpx.Response, status: int = 400) -> tuple[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    return body["error"], body.get("error_description", "")


def test_registering_ping_mode_checks_the_endpoint(server: LiveServer, owner: ConsoleOwner) -> None:
    agent = Agent(server, owner.root_key)
    for fields, says in (
        ({"backchannel_token_delivery_mode": "ping"}, "needs backchannel_client_notification_endpoint"),
        ({"backchannel_client_notification_endpoint": "http://example.com/cb"}, "must use https"),
        ({"backchannel_client_notification_endpoint": "https://10.1.2.3/cb"}, "not a public address"),
        ({"backchannel_client_notification_endpoint": "https://user@example.com/cb"}, "no user information"),
        ({"backchannel_token_delivery_mode": "poll", "backchannel_client_notification_endpoint": "https://a.example/"},
         "is for ping mode"),
        ({"backchannel_token_delivery_mode": "push"}, "should be 'poll' or 'ping'"),  # push mode is not offered
    ):  # fmt: skip
        error, description = refusal(agent.register(**fields))
        assert error == "invalid_request" and says in description, description
    shown = httpx.get(f"{server.url}{paths.AGENTS}/{agent.id}", headers=agent.headers).json()
    assert shown["backchannel_token_delivery_mode"] == "poll"
    assert shown["backchannel_client_notification_endpoint"] is None
    # A poll-mode agent sending a client_notification_token would wait for a ping that never comes.
    assert refusal(agent.ask("poll", client_notification_token="abc"))[0] == "invalid_request"


def test_ping_after_approval_denial_and_expiry(server: LiveServer, owner: ConsoleOwner) -> None:
    agent = Agent(server, owner.root_key)
    with receiver(script=[500]) as hook:  # the first ping fails and is retried
        registered = agent.register(backchannel_client_notification_endpoint=hook.url)
        assert registered.status_code == 200, registered.text
        assert registered.json()["backchannel_token_delivery_mode"] == "ping"
        assert registered.json()["backchannel_client_notification_endpoint"] == hook.url
        assert (
            "ping"
            in httpx.get(f"{server.url}/.well-known/oauth-authorization-server").json()[
                "backchannel_token_delivery_modes_supported"
            ]
        )
        # Ping mode requires the token, in bearer syntax, of at most 1024 characters.
        for form in ({}, {"client_notification_token": "not a token"}, {"client_notification_token": "x" * 1025}):
            assert refusal(agent.ask("bad", **form))[0] == "invalid_request"
        approved = agent.ask("Pay invoice 7001", client_notification_token="tok-approve.1").json()
        assert approved["interval"] == 1 and approved["expires_in"] > 0
        # Before any decision no ping is sent, and polling still answers (CIBA section 10.2 lets a ping client poll).
        assert refusal(agent.poll(approved["auth_req_id"]))[0] == "authorization_pending"
        assert hook.received == []
        owner.decide("Pay invoice 7001", "approve")
        first = hook.wait_for(1)[0]
        assert first.headers["authorization"] == "Bearer tok-approve.1"
        assert first.headers["content-type"] == "application/json"
        assert first.event == {"auth_req_id": approved["auth_req_id"]}
        assert [r.answered for r in hook.received[:2]] == [500, 204]  # retried after the failure
        issued = agent.poll(approved["auth_req_id"])
        assert issued.status_code == 200, issued.text
        form = {"token": issued.json()["access_token"], "client_secret": agent.key}
        introspected = httpx.post(f"{server.url}{paths.INTROSPECT}", data=form).json()
        assert introspected["active"] is True and introspected["authorization_details"] == [PAYMENT]

        denied = agent.ask("Pay invoice 7002", client_notification_token="tok-deny").json()
        owner.decide("Pay invoice 7002", "deny")
        second = hook.wait_for(2)[1]
        assert second.headers["authorization"] == "Bearer tok-deny"
        assert second.event == {"auth_req_id": denied["auth_req_id"]}
        assert refusal(agent.poll(denied["auth_req_id"]))[0] == "access_denied"

        expiring = agent.ask("Pay invoice 7003", client_notification_token="tok-expire", requested_expiry="1").json()
        third = hook.wait_for(3)[2]  # sent once it expired undecided
        assert third.headers["authorization"] == "Bearer tok-expire"
        assert third.event == {"auth_req_id": expiring["auth_req_id"]}
        assert refusal(agent.poll(expiring["auth_req_id"]))[0] == "expired_token"
        # Each request was pinged once (the failed attempt aside), none twice.
        pinged = [r.event["auth_req_id"] for r in hook.accepted()]
        assert sorted(pinged) == sorted({approved["auth_req_id"], denied["auth_req_id"], expiring["auth_req_id"]})

    # Back to poll mode: the endpoint is forgotten, and a notification token is refused again.
    back = agent.register(backchannel_token_delivery_mode="poll")
    assert back.status_code == 200 and back.json()["backchannel_client_notification_endpoint"] is None
    assert refusal(agent.ask("poll again", client_notification_token="abc"))[0] == "invalid_request"
