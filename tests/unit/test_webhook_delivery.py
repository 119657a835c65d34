"""Webhook delivery attempts against a real local HTTP receiver: the Standard Webhooks signature verifies with the
spec's own library on the receiving side, failures are reported with their status, SSRF targets are refused."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from agentauth.issuer import webhook_events
from agentauth.issuer.webhook_delivery import (
    MAX_ATTEMPTS,
    TargetRefused,
    check_target_url,
    checked_address,
    deliver,
    delivery_client,
    new_secret,
    open_secret,
    retry_delay,
    seal_secret,
)
from agentauth.keys import KeyEncryptionKey, generate_kek
from agentauth.keys.sealing import SealingError
from agentauth.storage.records import AuditEvent, AuditOutcome

pytestmark = pytest.mark.anyio


class Receiver:
    """A real HTTP server answering each POST with the next status of ``statuses`` (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if status in (301, 302):
                    self.send_header("location", "http://127.0.0.1:1/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500, 503])
    yield r
    r.close()


async def test_signature_verifies_with_the_library_and_failures_are_reported(receiver: Receiver) -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    body = b'{"type":"agent.registered","data":{"agent_id":"a1"}}'
    async with delivery_client() as http:
        attempts = [await deliver(http, receiver.url, secret, "msg_1", body, allow_loopback=True) for _ in range(3)]
    assert [(a.ok, a.status_code) for a in attempts] == [(False, 500), (False, 503), (True, 200)]
    assert attempts[0].error == "HTTP 500" and attempts[2].error is None
    assert len(receiver.received) == 3
    for headers, received in receiver.received:
        assert headers["webhook-id"] == "msg_1"  # stable across retries: the receiver dedupes on it
        assert Webhook(secret).verify(received, headers) == {"type": "agent.registered", "data": {"agent_id": "a1"}}
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret()).verify(received, headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(received.replace(b"a1", b"a2"), headers)


async def test_redirects_are_not_followed() -> None:
    r = Receiver([302])
    try:
        async with delivery_client() as http:
            attempt = await deliver(http, r.url, new_secret(), "m", b"{}", allow_loopback=True)
        assert (attempt.ok, attempt.status_code) == (False, 302)
        assert attempt.error is not None and "redirects are not followed" in attempt.error
        assert len(r.received) == 1
    finally:
        r.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "http://127.0.0.1:8080/hook",
        "https://user:pw@example.com/hook",
        "https://example.com/hook#frag",
        "ftp://example.com/hook",
    ],
)
def test_urls_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        check_target_url(url, allow_loopback=False)


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1/h", "https://10.0.0.1/h", "https://169.254.169.254/h", "https://[::ffff:10.0.0.1]/h"]
)
def test_non_public_addresses_refused(url: str) -> None:
    parts = check_target_url(url, allow_loopback=False)
    with pytest.raises(TargetRefused, match="not a public address"):
        asyncio.run(checked_address(parts, allow_loopback=False))


async def test_dns_rebinding_is_refused_at_delivery() -> None:
    async def rebinding(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.7"]

    async with delivery_client() as http:
        attempt = await deliver(
            http, "https://hooks.example.com/h", new_secret(), "m", b"{}", allow_loopback=False, resolver=rebinding
        )
    assert not attempt.ok and attempt.status_code is None
    assert attempt.error is not None and "not a public address" in attempt.error and "10.0.0.7" not in attempt.error


def test_retry_schedule_backs_off_with_jitter_and_gives_up() -> None:
    low = [retry_delay(n, lambda: 0.0) for n in range(1, MAX_ATTEMPTS)]
    high = [retry_delay(n, lambda: 1.0) or 0.0 for n in range(1, MAX_ATTEMPTS)]
    assert low[0] == 2.5 and high[0] == 5.0
    assert all(b > a for a, b in itertools.pairwise(high))
    assert retry_delay(MAX_ATTEMPTS) is None


def test_every_audited_action_is_published_or_deliberately_not() -> None:
    source = Path(webhook_events.__file__).parent.parent
    audited = {m for p in source.rglob("*.py") for m in re.findall(r'action="([a-z_]+\.[a-z_]+)"', p.read_text())} - {
        "_credential.revoked"
    }  # the tail of f"{kind}_credential.revoked"
    assert audited, "the scan found no audit actions"
    missing = audited - set(webhook_events.CATALOGUE) - webhook_events.NOT_PUBLISHED
    assert not missing, f"audit actions neither in the webhook catalogue nor in NOT_PUBLISHED: {sorted(missing)}"
    assert webhook_events.subscribed("agent.created", frozenset({"*"}))
    assert webhook_events.event_type("delegation_credential.revoked") == "credential.revoked"
    assert not webhook_events.subscribed("token.issued", frozenset({"*"}))
    assert webhook_events.subscribed("token.issued", frozenset({"token.issued"}))


def test_message_body_follows_the_standard_webhooks_payload_structure() -> None:
    event = AuditEvent(
        id=42,
        tenant_id="t1",
        actor="a1",
        action="signing_key.revoked",
        target_type="signing_key",
        target_id="k1",
        outcome=AuditOutcome.SUCCESS,
        reason=None,
        request_id="r1",
        ip="203.0.113.9",
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        details=None,
    )
    body = webhook_events.message_body(event)
    assert body is not None and webhook_events.message_id(event) == "evt_42"
    document = orjson.loads(body)
    assert document["type"] == "key.revoked" and document["timestamp"] == "2026-01-02T03:04:05+00:00"
    assert document["data"]["target_id"] == "k1" and "ip" not in document["data"]
    assert webhook_events.message_body(replace(event, action="owner.login")) is None


def test_signing_secret_is_sealed_and_bound_to_its_subscription() -> None:
    kek = KeyEncryptionKey.from_text(generate_kek())
    secret = new_secret()
    sealed = seal_secret(kek, "whs_1", secret)
    assert secret not in sealed and secret[6:] not in sealed
    assert open_secret(kek, "whs_1", sealed) == secret
    with pytest.raises(SealingError):
        open_secret(kek, "whs_2", sealed)
    with pytest.raises(SealingError):
        open_secret(KeyEncryptionKey.from_text(generate_kek()), "whs_1", sealed)
