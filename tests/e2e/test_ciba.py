"""Issue 17 must show: CIBA sequences against a running server (OpenID CIBA Core 1.0 poll mode, RFC 9396).

An owner signs up through the pages and creates a tenant; its root agent asks for approval of a payment at the
backchannel authentication endpoint. Pending -> ``slow_down`` when polled sooner than the interval -> the owner
approves in the console -> one token whose ``authorization_details`` equal the request's (and the auth_req_id is
spent); denied -> ``access_denied``; undecided past ``requested_expiry`` -> ``expired_token``. A resource server
verifying with the SDK and ``require_authorization_details`` accepts 45.00 under that approval and refuses 46.00.
Bad requests are refused with their CIBA / RFC 9396 codes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentauth import paths
from agentauth.sdk import AuthorizationDetailsError, OnlineVerifier, SpentTokens, require_authorization_details
from live_server import LiveServer, free_port, issuer_env, spawn
from owner_support import ConsoleOwner

pytestmark = pytest.mark.slow
CIBA = "urn:openid:params:grant-type:ciba"
INTERVAL = 1
PAYMENT = {"type": "payment", "amount": "45.00", "currency": "USD", "creditor": "ACME Corp", "invoice": "1042"}
EMAIL = "payer@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("ciba")
    port = free_port()
    env = issuer_env(tmp / "data", port) | {"AGENTAUTH_APPROVAL_INTERVAL_SECONDS": str(INTERVAL)}
    live = spawn(env, port, tmp / "issuer.log", log_level="warning")
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> Iterator[ConsoleOwner]:
    person = ConsoleOwner(server.url, EMAIL, "payments")
    yield person
    person.http.close()


def ask(server: LiveServer, key: str, **form: Any) -> httpx.Response:
    body = {"login_hint": EMAIL, "binding_message": "Pay invoice 1042", "authorization_details": json.dumps([PAYMENT])}
    body |= form
    return httpx.post(f"{server.url}{paths.BACKCHANNEL}", data={k: v for k, v in body.items() if v is not None},
                      auth=("", key))  # fmt: skip


def poll(server: LiveServer, key: str, auth_req_id: str) -> httpx.Response:
    return httpx.post(f"{server.url}{paths.TOKEN}", data={"grant_type": CIBA, "auth_req_id": auth_req_id},
                      auth=("", key))  # fmt: skip


def error_of(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    code: str = response.json()["error"]
    return code


def test_approve_slow_down_token_with_the_approved_details(server: LiveServer, owner: ConsoleOwner) -> None:
    metadata = httpx.get(f"{server.url}/.well-known/oauth-authorization-server").json()
    assert metadata["backchannel_authentication_endpoint"] == f"{server.url}{paths.BACKCHANNEL}"
    assert metadata["backchannel_token_delivery_modes_supported"] == ["poll", "ping"]
    assert CIBA in metadata["grant_types_supported"] and "payment" in metadata["authorization_details_types_supported"]
    asked = ask(server, owner.root_key)
    assert asked.status_code == 200, asked.text
    answer = asked.json()
    assert answer["interval"] == INTERVAL and 0 < answer["expires_in"] <= 300
    auth_req_id = answer["auth_req_id"]
    assert error_of(poll(server, owner.root_key, auth_req_id)) == "authorization_pending"
    assert error_of(poll(server, owner.root_key, auth_req_id)) == "slow_down"  # sooner than the interval
    # The owner sees exactly what is asked, and approves it.
    inbox = owner.http.get(f"/console/{owner.tenant}/approvals").text
    assert "Pay invoice 1042" in inbox and "&quot;amount&quot;: &quot;45.00&quot;" in inbox
    decided = owner.decide("Pay invoice 1042", "approve")
    assert "approved" in decided.text, decided.text
    time.sleep(INTERVAL + 5 + 0.2)  # the interval grew by 5 s with the slow_down
    issued = poll(server, owner.root_key, auth_req_id)
    assert issued.status_code == 200, issued.text
    token = issued.json()
    assert "refresh_token" not in token and token["token_type"] == "Bearer"
    # A second poll finds the auth_req_id spent.
    assert error_of(poll(server, owner.root_key, auth_req_id)) == "invalid_grant"
    with OnlineVerifier(server.url) as verifier:
        verified = verifier.verify_access_token(token["access_token"], audience=server.url)
    assert verified.claims["authorization_details"] == [PAYMENT]
    # The resource server's check: the approved payment passes, one cent more does not, nor another creditor.
    require_authorization_details(verified.claims, PAYMENT)
    require_authorization_details(verified.claims, {"type": "payment", "amount": "45", "currency": "USD"})
    for refused in (PAYMENT | {"amount": "46.00"}, PAYMENT | {"creditor": "Mallory"}, PAYMENT | {"currency": "EUR"},
                    {"type": "data_access", "amount": "1"}):  # fmt: skip
        with pytest.raises(AuthorizationDetailsError):
            require_authorization_details(verified.claims, refused)
    events = httpx.get(f"{server.url}{paths.AUDIT_EVENTS}", headers=bearer_for(server, owner.root_key)).json()
    actions = [e["action"] for e in events["items"]]
    assert "approval.requested" in actions and "approval.approved" in actions


def bearer_for(server: LiveServer, key: str) -> dict[str, str]:
    token = httpx.post(f"{server.url}{paths.TOKEN}", data={"grant_type": "client_credentials", "client_secret": key})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def test_denied_is_access_denied_and_expired_is_expired_token(server: LiveServer, owner: ConsoleOwner) -> None:
    denied = ask(server, owner.root_key, binding_message="Pay invoice 1043").json()["auth_req_id"]
    owner.decide("Pay invoice 1043", "deny")
    assert error_of(poll(server, owner.root_key, denied)) == "access_denied"
    expiring = ask(server, owner.root_key, binding_message="Pay invoice 1044", requested_expiry="1")
    assert expiring.json()["expires_in"] == 1
    time.sleep(1.2)
    assert error_of(poll(server, owner.root_key, expiring.json()["auth_req_id"])) == "expired_token"
    # An expired request can no longer be approved.
    inbox = owner.http.get(f"/console/{owner.tenant}/approvals").text
    assert "Pay invoice 1044" in inbox and "status-expired" in inbox


def test_bad_requests_get_their_codes_and_make_nothing(server: LiveServer, owner: ConsoleOwner) -> None:
    key = owner.root_key
    cases = [
        ({"login_hint": "nobody@example.com"}, "unknown_user_id"),
        ({"login_hint": None}, "invalid_request"),
        ({"authorization_details": json.dumps([{"type": "teleport"}])}, "invalid_authorization_details"),
        ({"authorization_details": "[{]"}, "invalid_authorization_details"),
        ({"authorization_details": json.dumps([{"amount": "1"}])}, "invalid_authorization_details"),
        ({"authorization_details": '[{"type": "payment", "amount": NaN}]'}, "invalid_authorization_details"),
        ({"binding_message": "line one\nline two"}, "invalid_binding_message"),
        ({"binding_message": "x" * 201}, "invalid_binding_message"),
        ({"scope": "openid nonexistent.scope"}, "invalid_scope"),
        ({"requested_expiry": "0"}, "invalid_request"),
        ({"requested_expiry": "999999"}, "invalid_request"),
        ({"client_notification_token": "abc"}, "invalid_request"),
        ({"id_token_hint": "eyJ..."}, "invalid_request"),
    ]
    before = owner.http.get(f"/console/{owner.tenant}/approvals").text.count("data-approval-id")
    for change, code in cases:
        assert error_of(ask(server, key, **change)) == code, change
    assert error_of(ask(server, "ak_live_not-a-key"), 401) == "invalid_client"
    assert owner.http.get(f"/console/{owner.tenant}/approvals").text.count("data-approval-id") == before
    # Another owner's tenant: its agent cannot name this owner, nor poll this tenant's requests.
    other = ConsoleOwner(server.url, "other@example.com", "other")
    try:
        assert error_of(ask(server, other.root_key)) == "unknown_user_id"
        mine = ask(server, key, binding_message="Pay invoice 1045").json()["auth_req_id"]
        assert error_of(poll(server, other.root_key, mine)) == "invalid_grant"
        refused = other.post(f"/console/{owner.tenant}/approvals/{owner.pending_approval('Pay invoice 1045')}/approve")
        assert refused.status_code == 404, refused.text
        assert error_of(poll(server, key, mine)) in ("authorization_pending", "slow_down")
    finally:
        other.http.close()


def test_poll_with_a_made_up_auth_req_id_is_invalid_grant(server: LiveServer, owner: ConsoleOwner) -> None:
    assert error_of(poll(server, owner.root_key, "made-up")) == "invalid_grant"
    missing = httpx.post(f"{server.url}{paths.TOKEN}", data={"grant_type": CIBA}, auth=("", owner.root_key))
    assert error_of(missing) in ("invalid_request", "invalid_grant")


def test_the_kill_switch_denies_what_the_stopped_agent_asked(server: LiveServer, owner: ConsoleOwner) -> None:
    """Stop (the console's kill switch) on an agent closes its approval requests: waiting or approved but not
    collected, each answers access_denied - no token is issued after the Stop."""
    auth = bearer_for(server, owner.root_key)
    made = httpx.post(f"{server.url}{paths.AGENTS}", json={"name": "buyer", "agent_type": "tool"}, headers=auth)
    assert made.status_code == 201, made.text
    child = made.json()["agent"]["id"]
    key = httpx.post(f"{server.url}{paths.CREDENTIALS}", json={"agent_id": child}, headers=auth).json()["raw_key"]
    waiting = ask(server, key, binding_message="Pay invoice 2001").json()["auth_req_id"]
    approved = ask(server, key, binding_message="Pay invoice 2002").json()["auth_req_id"]
    owner.decide("Pay invoice 2002", "approve")
    stopped = owner.post(f"/console/{owner.tenant}/agents/{child}/stop")
    assert stopped.status_code == 200, stopped.text
    for auth_req_id in (waiting, approved):
        # The stopped agent's key is revoked with it: it cannot even authenticate to poll.
        assert error_of(poll(server, key, auth_req_id), 401) == "invalid_client"
    inbox = owner.http.get(f"/console/{owner.tenant}/approvals").text
    for message in ("Pay invoice 2001", "Pay invoice 2002"):
        item = re.search(rf'<li class="approval status-(\w+)"[^>]*>(?:(?!</li>).)*{message}', inbox, re.S)
        assert item is not None and item.group(1) == "denied", inbox


def test_a_single_use_approval_is_accepted_once_by_the_sdk(server: LiveServer, owner: ConsoleOwner) -> None:
    """``single_use=true``: the owner sees it; the token carries ``single_use``; a resource server checking with the
    SDK accepts it once with a store of spent tokens, refuses the second use, and refuses it outright without one."""
    asked = ask(server, owner.root_key, binding_message="Pay invoice 3001", single_use="true").json()
    inbox = owner.http.get(f"/console/{owner.tenant}/approvals").text
    item = re.search(r'<li class="approval status-pending"[^>]*>(?:(?!</li>).)*Pay invoice 3001(?:(?!</li>).)*', inbox,
                     re.S)  # fmt: skip
    assert item is not None and "Single use" in item.group(0), inbox
    owner.decide("Pay invoice 3001", "approve")
    time.sleep(INTERVAL + 0.2)
    issued = poll(server, owner.root_key, asked["auth_req_id"])
    assert issued.status_code == 200, issued.text
    with OnlineVerifier(server.url) as verifier:
        claims = verifier.verify_access_token(issued.json()["access_token"], audience=server.url).claims
    assert claims["single_use"] is True and claims["authorization_details"] == [PAYMENT]
    with pytest.raises(AuthorizationDetailsError, match="single-use"):
        require_authorization_details(claims, PAYMENT)  # no store: it cannot honour "once"
    spent = SpentTokens()
    require_authorization_details(claims, PAYMENT, spent=spent)
    with pytest.raises(AuthorizationDetailsError, match="used before"):
        require_authorization_details(claims, PAYMENT, spent=spent)
