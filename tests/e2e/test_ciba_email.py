"""The approval email hook against a running server (issue 17 item 2, "the owner is told - ... optional email
hook"): with ``AGENTAUTH_SMTP_URL`` the owner an approval request names gets one email saying who asks, the
binding message, the ``authorization_details`` verbatim and the console link - and nothing an eavesdropper could
use (no ``auth_req_id``, no link that decides). The email is owed in the database: an SMTP server that is down, or
answers 451, gets it again later; a request decided before its email went out is not emailed. The SMTP server is
a real one (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentauth import paths
from live_server import LiveServer, free_port, issuer_env, spawn
from owner_support import ConsoleOwner
from smtp_support import SmtpServer

pytestmark = pytest.mark.slow
PAYMENT = {"type": "payment", "amount": "45.00", "currency": "USD", "creditor": "ACME Corp"}
EMAIL = "mailed-owner@example.com"
SENDER = "AgentAuth <approvals@agentauth.test>"


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("ciba-email")
    port = free_port()
    env = issuer_env(tmp / "data", port) | {
        "AGENTAUTH_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
        "AGENTAUTH_SMTP_FROM": SENDER,
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
    person = ConsoleOwner(server.url, EMAIL, "mailed")
    yield person
    person.http.close()


def ask(server: LiveServer, owner: ConsoleOwner, message: str) -> dict[str, Any]:
    body = {"login_hint": EMAIL, "binding_message": message, "authorization_details": json.dumps([PAYMENT])}
    answer = httpx.post(f"{server.url}{paths.BACKCHANNEL}", data=body, auth=("", owner.root_key))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_owner_is_emailed_exactly_what_is_asked_even_when_smtp_was_down(
    server: LiveServer, owner: ConsoleOwner, smtp: SmtpServer
) -> None:
    # Nothing listens yet: the attempt fails and the email stays owed.
    asked = ask(server, owner, "Pay invoice 3001")
    time.sleep(1.0)
    smtp.mailbox.refuse = 1  # and once up, the server first answers 451: retried again
    smtp.start()
    email = smtp.mailbox.wait_for("Pay invoice 3001")
    assert smtp.mailbox.refused == 1
    assert str(email["To"]) == EMAIL and str(email["From"]) == SENDER
    assert str(email["Subject"]) == "Approval requested by mailed: Pay invoice 3001"
    assert str(email["Auto-Submitted"]) == "auto-generated"
    text = email.get_content().replace("\r\n", "\n")  # SMTP line ends
    shown = text.split("(authorization_details):\n", 1)[1].split("\n\n", 1)[0]
    assert json.loads(shown) == [PAYMENT]
    assert f"{server.url}/console/{owner.tenant}/approvals" in text
    assert asked["auth_req_id"] not in text and "approve?" not in text
    assert smtp.mailbox.recipients[-1] == [EMAIL]
    # One email per request: the retries did not send it twice, and later passes send nothing more.
    time.sleep(1.0)
    assert len(smtp.mailbox.about("Pay invoice 3001")) == 1
    # The link is the inbox, where the owner (logged in) decides.
    owner.decide("Pay invoice 3001", "approve")


def test_a_request_decided_before_its_email_went_out_is_not_emailed(
    server: LiveServer, owner: ConsoleOwner, smtp: SmtpServer
) -> None:
    smtp.stop()
    ask(server, owner, "Pay invoice 3002")
    owner.decide("Pay invoice 3002", "deny")
    smtp.start()
    ask(server, owner, "Pay invoice 3003")  # sent: the worker is running, and 3002's email is not among them
    smtp.mailbox.wait_for("Pay invoice 3003")
    time.sleep(2.0)  # past the retry backoff of 3002's failed first attempt
    assert smtp.mailbox.about("Pay invoice 3002") == []
