"""Owner accounts in a real browser (issue 14 item 4): headless Chromium, driven by Playwright, against
``agentauth serve`` - sign up, log out, log in, create a tenant, see it listed, log out. What the ASGI tests
cannot show: the pages work under their own Content-Security-Policy, the browser keeps and sends the session
cookie, and the forms' CSRF tokens and Origin headers are what a browser really sends.

Needs Debian's chromium (/usr/bin/chromium); skipped without it, except under CI (CI set), where it fails.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright import sync_api

from live_server import LiveServer, start_issuer

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.slow


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: CI must run the browser test (apt-get install -y chromium)")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[LiveServer]:
    require_chromium()
    server = start_issuer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_sign_up_log_in_create_a_tenant_and_log_out(issuer: LiveServer) -> None:
    password = "a long enough password"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()
            violations: list[str] = []
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)

            page.goto(f"{issuer.url}/signup")
            page.fill('input[name="email"]', "Browser@Example.com")
            page.fill('input[name="password"]', password)
            page.click('button[type="submit"]')
            page.wait_for_url(f"{issuer.url}/account")
            assert page.inner_text("#owner-email") == "browser@example.com"
            assert page.is_visible("#no-tenants")
            cookies = {c["name"]: c for c in page.context.cookies()}
            assert cookies["agentauth_session"]["httpOnly"] and cookies["agentauth_session"]["sameSite"] == "Lax"

            page.click('form[action="/logout"] button')
            page.wait_for_url(f"{issuer.url}/login")
            page.goto(f"{issuer.url}/account")
            assert page.url.startswith(f"{issuer.url}/login")  # signed out: back to the login page

            page.fill('input[name="email"]', "browser@example.com")
            page.fill('input[name="password"]', password)
            page.click('button[type="submit"]')
            page.wait_for_url(f"{issuer.url}/account")

            page.fill('input[name="name"]', "Browser Co")
            page.click('form[action="/account/tenants"] button')
            api_key = page.inner_text("#api-key")
            tenant_id = page.inner_text("#tenant-id")
            assert re.fullmatch(r"ak_live_[A-Za-z0-9_-]{32,}", api_key) and tenant_id.startswith("agt_")

            page.goto(f"{issuer.url}/account")
            listed = page.inner_text("#agents")
            assert tenant_id in listed and "Browser Co" in listed
            assert api_key not in page.content()  # shown once

            page.click('form[action="/logout"] button')
            page.wait_for_url(f"{issuer.url}/login")
            assert "agentauth_session" not in {c["name"] for c in page.context.cookies()}
            page.goto(f"{issuer.url}/account")
            assert page.url.startswith(f"{issuer.url}/login")
            assert violations == [], violations
        finally:
            browser.close()
