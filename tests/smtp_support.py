"""A real SMTP server on 127.0.0.1 for the approval email tests (aiosmtpd): what it accepted, and a script of
temporary refusals (451)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Mailbox:
    """What the SMTP server accepted; ``refuse`` answers the next that many messages with 451 (try again later)."""

    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    refuse: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.refuse > 0:
                self.refuse -= 1
                self.refused += 1
                return "451 4.3.0 try again later"
            parsed = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            self.messages.append(parsed)
            self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def about(self, binding_message: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if binding_message in str(m["Subject"])]

    def wait_for(self, binding_message: str, timeout: float = 20.0) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.about(binding_message)
            if found:
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no email about {binding_message!r}; got {[str(m['Subject']) for m in self.messages]}")


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port, self.mailbox, self.controller = port, Mailbox(), None

    def start(self) -> None:
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
