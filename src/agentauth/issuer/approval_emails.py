"""The approval email hook (issue 17 item 2: "the owner is told - console inbox, webhook event, optional email
hook"): with ``AGENTAUTH_SMTP_URL`` set, each approval request is also emailed to the owner it names - who asks,
the binding message, the ``authorization_details`` verbatim, the scopes, when it expires, and the link to the
console's approvals inbox, where the owner logs in and decides. The email carries no way to decide by itself (no
link that approves): a message can be forwarded or read by someone else, so deciding stays behind the owner's
login and the console's CSRF check. It carries no ``auth_req_id`` either.

The email is owed in the database (``approval_requests.email_state``, set with the request), so a restart loses
none: the webhook worker's loop sends what is due, one claim per attempt across replicas (as the CIBA pings), and
retries a failed attempt (the SMTP server down, a temporary refusal) with the webhooks' backoff. A request decided
or expired before its email went out is not emailed (``moot``). Sent with aiosmtplib: STARTTLS whenever the server
offers it (``smtp://``), or TLS from the start (``smtps://``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiosmtplib

from agentauth.issuer.approval_pings import Lost, claim_due
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.webhook_delivery import retry_delay
from agentauth.storage import approval_emails as repo
from agentauth.storage import approval_pings
from agentauth.storage.ports import Require, WritePlan

log = logging.getLogger(__name__)

BATCH = 20
SMTP_TIMEOUT_SECONDS = 15.0
SUBJECT_MAX = 150


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where approval emails go: ``smtp://[user:password@]host[:port]`` or ``smtps://...`` (``SmtpServer.parse``)."""

    host: str
    port: int
    use_tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("AGENTAUTH_SMTP_URL must be smtp://[user:password@]host[:port] or smtps://...")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("AGENTAUTH_SMTP_URL takes no path, query or fragment")
        tls = parts.scheme == "smtps"
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, parts.port or (465 if tls else 587), tls, user, password)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def approval_email(row: Any, *, issuer_url: str, sender: str) -> EmailMessage:
    """The message for one due row (``storage.approval_emails.due``)."""
    approval_id, _, to, agent_name, tenant_id, message, details, scopes, expires_at, single_use = row
    asked = _one_line(message or "") or "an action"
    subject = _one_line(f"Approval requested by {agent_name}: {asked}")
    if len(subject) > SUBJECT_MAX:
        subject = subject[: SUBJECT_MAX - 3] + "..."
    inbox = f"{issuer_url.rstrip('/')}/console/{quote(tenant_id, safe='')}/approvals"
    lines = [
        f"{agent_name} asks for your approval.",
        "",
        f"Message: {message or '(none)'}",
    ]
    if details:
        lines += ["", "Exactly what it will do (authorization_details):", json.dumps(details, indent=2, sort_keys=True)]
    if scopes:
        lines += ["", f"Scopes: {' '.join(scopes)}"]
    if single_use:
        lines += ["", "Single use: the token is spent at its first use."]
    lines += [
        "",
        f"The request expires at {expires_at.strftime('%Y-%m-%d %H:%M:%S UTC')}.",
        f"Approve or deny it in your console (log in first): {inbox}",
        "",
        f"Request {approval_id}. If you did not expect it, deny it - and consider suspending the agent.",
    ]
    email = EmailMessage()
    email["Subject"] = subject
    email["From"] = sender
    email["To"] = to
    email["Message-ID"] = make_msgid(domain=urlsplit(issuer_url).hostname or "agentauth")
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    email.set_content("\n".join(lines))
    return email


class ApprovalEmails:
    def __init__(self, core: IssuerCore, server: SmtpServer, *, sender: str, retry_first_seconds: float) -> None:
        self.core = core
        self.server = server
        self.sender = sender
        self.retry_first_seconds = retry_first_seconds

    async def send_due(self) -> int:
        """Attempt every email due now that this process could claim; returns how many were attempted."""
        now = self.core.clock()
        (rows,) = await self.core.ports.reads.fetch(repo.due(now, BATCH))
        if not rows:
            return 0
        mine = await claim_due(self.core, rows, now, [int(r[1]) for r in rows], _claim, "approval email")
        await asyncio.gather(*(self._attempt(row) for row in mine))
        return len(mine)

    async def _attempt(self, row: Any) -> None:
        approval_id, number = row[0], int(row[1]) + 1
        message = approval_email(row, issuer_url=self.core.settings.issuer_url, sender=self.sender)
        try:
            await aiosmtplib.send(
                message, hostname=self.server.host, port=self.server.port, use_tls=self.server.use_tls,
                username=self.server.username, password=self.server.password, timeout=SMTP_TIMEOUT_SECONDS,
            )  # fmt: skip
        except (aiosmtplib.SMTPException, OSError) as exc:
            delay = retry_delay(number, first=self.retry_first_seconds)
            log.info("approval email of %s failed (attempt %d): %s", approval_id, number, exc)
            now = self.core.clock()
            if delay is None:
                await self._close(approval_id, number, repo.FAILED, now)
            else:
                await self._close(approval_id, number, repo.DUE, now + timedelta(seconds=delay))
            return
        await self._close(approval_id, number, repo.SENT, self.core.clock())

    async def _close(self, approval_id: str, number: int, state: str, at: datetime) -> None:
        close = approval_pings.close(approval_id, number, state, at, Lost(), repo.CLOSE)
        try:
            await self.core.ports.writes.run(WritePlan((close,)))
        except Lost:
            log.warning("approval email of %s: claimed by another process before its attempt was recorded", approval_id)


def _claim(approval_id: str, seen: int, now: datetime, until: datetime, taken: Lost) -> Require:
    return approval_pings.claim(approval_id, seen, now, until, taken, repo.CLAIM)
