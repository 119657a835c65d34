"""The console's approvals inbox in headless Chromium (issue 17 item 2), against a live ``agentauth serve``: an
owner signs up and creates a tenant; its root agent asks (CIBA) for two payments; the owner sees each one's
binding message and exact authorization_details in the browser, approves one and denies the other; the agent's
polls get the token carrying the approved details and ``access_denied``; the Activity page charts the tokens
(inline SVG, no script). No CSP violation, no script error.
Screenshots go to the test's temporary directory (or ``AGENTAUTH_CONSOLE_SCREENSHOTS``)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from agentauth import paths
from browser_support import chromium
from live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"
EMAIL = "approver@example.com"
TIMEOUT_MS = 20_000
CIBA = "urn:openid:params:grant-type:ciba"


def ask(server: LiveServer, key: str, message: str, amount: str) -> str:
    details = [{"type": "payment", "amount": amount, "currency": "USD", "creditor": "ACME Corp"}]
    answer = httpx.post(f"{server.url}{paths.BACKCHANNEL}", auth=("", key), data={
        "login_hint": EMAIL, "binding_message": message, "authorization_details": json.dumps(details),
    })  # fmt: skip
    assert answer.status_code == 200, answer.text
    auth_req_id: str = answer.json()["auth_req_id"]
    return auth_req_id


def test_an_owner_approves_and_denies_in_the_browser(browser_issuer: LiveServer, tmp_path: Path) -> None:
    server = browser_issuer
    shots = Path(os.environ.get("AGENTAUTH_CONSOLE_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with chromium() as browser:
        page: Page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{server.url}/signup?next=/account")
        page.fill("input[name=email]", EMAIL)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.fill("input[name=name]", "Payments")
        page.click("text=Create tenant")
        tenant_id = page.locator("#tenant-id").inner_text()
        key = page.locator("#api-key").inner_text()
        approved = ask(server, key, "Pay invoice 1042", "45.00")
        denied = ask(server, key, "Pay invoice 1043", "9999.00")

        page.goto(f"{server.url}/console/{tenant_id}")
        page.click("nav >> text=Approvals")
        assert page.url == f"{server.url}/console/{tenant_id}/approvals"
        first = page.locator("li.approval", has_text="Pay invoice 1042")
        shown = json.loads(first.locator("pre.authorization-details").inner_text())
        assert shown == [{"type": "payment", "amount": "45.00", "currency": "USD", "creditor": "ACME Corp"}]
        page.screenshot(path=str(shots / "console-approvals.png"))
        first.locator("button", has_text="Approve").click()
        page.locator("li.approval.status-approved", has_text="Pay invoice 1042").wait_for()
        page.locator("li.approval", has_text="Pay invoice 1043").locator("button", has_text="Deny").click()
        page.locator("li.approval.status-denied", has_text="Pay invoice 1043").wait_for()
        assert page.locator("li.approval.status-pending").count() == 0

        def poll(auth_req_id: str) -> httpx.Response:
            return httpx.post(f"{server.url}{paths.TOKEN}", auth=("", key),
                              data={"grant_type": CIBA, "auth_req_id": auth_req_id})  # fmt: skip

        token = poll(approved)
        assert token.status_code == 200, token.text
        assert re.fullmatch(r"[A-Za-z0-9_-]+", token.json()["access_token"].split(".")[1])
        refused = poll(denied)
        assert refused.status_code == 400 and refused.json()["error"] == "access_denied"

        # The activity charts count the approved token (and the tenant's first pair): one bar per hour.
        page.click("nav >> text=Activity")
        assert page.locator("#hour-chart g.hour").count() == 24
        assert "issued" in (page.locator("#hour-chart g.hour").last.locator("title").text_content() or "")
        assert page.locator("#agent-activity tr[data-agent-id]").count() >= 1
        page.screenshot(path=str(shots / "console-activity.png"))
    assert not problems, problems
