"""The approval email hook's pure parts (``issuer/approval_emails.py``): the SMTP URL it is configured with, and
the message - one-line subject whatever the binding message holds, the details verbatim, no decision link."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentauth.issuer.approval_emails import SUBJECT_MAX, SmtpServer, approval_email


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example", SmtpServer("mail.example", 587, False)),
        ("smtp://127.0.0.1:2525", SmtpServer("127.0.0.1", 2525, False)),
        ("smtps://bot:p%40ss@mail.example", SmtpServer("mail.example", 465, True, "bot", "p@ss")),
        ("smtp://mail.example/", SmtpServer("mail.example", 587, False)),
    ],
)
def test_smtp_urls(url: str, expected: SmtpServer) -> None:
    assert SmtpServer.parse(url) == expected


@pytest.mark.parametrize(
    "url", ["http://mail.example", "smtp://", "smtp://mail.example/inbox", "smtp://mail.example?tls=1", "mail"]
)
def test_malformed_smtp_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="AGENTAUTH_SMTP_URL"):
        SmtpServer.parse(url)


def row(message: str) -> tuple[object, ...]:
    details = [{"type": "payment", "amount": "45.00", "currency": "USD"}]
    expires = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    return ("apr_1", 0, "owner@example.com", "payer", "agt_1", message, details, ["payments"], expires, True)


def test_the_subject_is_one_line_and_bounded() -> None:
    email = approval_email(row("Pay\r\nBcc: victim@example.com"), issuer_url="https://id.example", sender="a@b.c")
    assert str(email["Subject"]) == "Approval requested by payer: Pay Bcc: victim@example.com"
    assert email["Bcc"] is None
    long = approval_email(row("x" * 1000), issuer_url="https://id.example", sender="a@b.c")
    assert len(str(long["Subject"])) == SUBJECT_MAX and str(long["Subject"]).endswith("...")


def test_the_body_shows_what_is_asked_and_where_to_decide() -> None:
    text = approval_email(row("Pay invoice 9"), issuer_url="https://id.example/", sender="a@b.c").get_content()
    assert '"amount": "45.00"' in text and "Scopes: payments" in text and "Single use" in text
    assert "https://id.example/console/agt_1/approvals" in text
    assert "2026-12-05 12:00:00 UTC" in text
