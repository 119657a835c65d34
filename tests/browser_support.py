"""A person in a browser, for the tests of the authorization code flow (RFC 6749 section 4.1): headless Debian
Chromium (/usr/bin/chromium, installed by ``.ci/run``) driven by Playwright, which logs in at AgentAuth's login
page and presses the consent button until the browser lands on the client's redirect URI.

The pages' contract: the login form (``GET /login``) has inputs ``name="email"`` and ``name="password"`` and a
submit button; the consent page has a button ``name="decision" value="allow"``. Playwright's own browser download
is not used (``executable_path``), so nothing is fetched at test time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path(os.environ.get("AGENTAUTH_TEST_CHROMIUM", "/usr/bin/chromium"))
LOGIN_FIELDS = ('input[name="email"]', 'input[name="password"]')
SUBMIT = 'button[type="submit"], input[type="submit"], form button:not([type])'
ALLOW = 'button[name="decision"][value="allow"]'
MAX_PAGES = 6  # authorization request -> login -> consent -> redirect, with room for one extra hop


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_browser() -> None:
    """Chromium and Playwright present; absent: a skip on a developer's machine, a failure under CI."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the Python package playwright (pip install -e '.[server,test]')"
    else:
        missing = "" if CHROMIUM.is_file() else f"{CHROMIUM} (apt-get install chromium, as .ci/run does)"
    if missing:
        if in_ci():
            pytest.fail(f"{missing} is not installed; under CI it must be")
        pytest.skip(f"{missing} is not installed")


@dataclass
class Visit:
    """What the browser went through: the URL it ended on (the redirect URI with the authorization response) and
    each page it acted on, for failure messages."""

    final_url: str = ""
    pages: list[str] = field(default_factory=list)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium ``Browser`` (Playwright's sync API); closed on exit."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def authorize(authorization_url: str, redirect_uri: str, email: str, password: str, timeout: float = 30.0) -> Visit:
    """Open ``authorization_url``, log in as ``email`` when the login form shows, allow on the consent page, and
    return once the browser has been sent to ``redirect_uri`` (whose server must answer). Fails the test when a
    page is neither the login form nor the consent page, or after ``MAX_PAGES`` pages."""
    visit = Visit()
    timeout_ms = timeout * 1000

    def arrived(page: Page) -> bool:
        return page.url.startswith(redirect_uri)

    with chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(timeout_ms)
        page.goto(authorization_url)
        for _ in range(MAX_PAGES):
            if arrived(page):
                visit.final_url = page.url
                return visit
            visit.pages.append(page.url)
            if page.locator(LOGIN_FIELDS[0]).count() and page.locator(LOGIN_FIELDS[1]).count():
                page.fill(LOGIN_FIELDS[0], email)
                page.fill(LOGIN_FIELDS[1], password)
                with page.expect_navigation():
                    page.locator(SUBMIT).first.click()
            elif page.locator(ALLOW).count():
                with page.expect_navigation():
                    page.locator(ALLOW).first.click()
            else:
                pytest.fail(f"neither the login form nor the consent page at {page.url}:\n{page.content()[:2000]}")
        if arrived(page):
            visit.final_url = page.url
            return visit
        pytest.fail(f"the browser never reached {redirect_uri}; pages: {visit.pages}")
