"""The owner console in headless Chromium (issue 17 item 1, first part), against a live ``agentauth serve``: an owner
signs up, creates a tenant, opens the console, creates an agent, makes it an API key (shown once), and the agent
gets a token with that key over REST; the audit log shows the issuance; the owner stops the agent (the kill switch,
revoke mode) and the agent's token introspects inactive and its key no longer works. No console page reports a
a script error or a CSP violation. Screenshots of each page go to the test's temporary directory (or
``AGENTAUTH_CONSOLE_SCREENSHOTS``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from browser_support import chromium
from live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"
TIMEOUT_MS = 20_000


def token_for(base_url: str, agent_id: str, api_key: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/api/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": agent_id, "client_secret": api_key},
    )


def test_an_owner_runs_a_tenant_from_the_console(browser_issuer: LiveServer, tmp_path: Path) -> None:
    server = browser_issuer
    shots = Path(os.environ.get("AGENTAUTH_CONSOLE_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page: Page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        # Error pages (the 400 of a bad form) are logged as failed loads: only CSP violations count here.
        page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)

        page.goto(f"{server.url}/signup?next=/account")
        page.fill("input[name=email]", "owner@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.fill("input[name=name]", "Research team")
        page.click("text=Create tenant")
        tenant_id = page.locator("#tenant-id").inner_text()

        page.click("text=open the console")
        assert page.url == f"{server.url}/console"
        page.click("text=Research team")
        assert page.url == f"{server.url}/console/{tenant_id}"
        page.fill("input[name=name]", "summarizer <b>bold</b>")  # markup in a name stays text
        page.select_option("select[name=agent_type]", "tool")
        page.fill("input[name=scopes]", "api.read agents.read")
        page.click("text=Create agent")
        agent = page.locator("li.agent > strong", has_text="summarizer <b>bold</b>").locator("..")
        agent.wait_for()
        assert page.locator("#agent-tree b").count() == 0
        agent_id = agent.get_attribute("data-agent-id")
        assert agent_id is not None and agent.locator(":scope > code").inner_text().startswith("did:key:z6Mk")
        page.screenshot(path=str(shots / "console-agents.png"))

        page.click("nav >> text=API keys")
        page.select_option("select[name=agent_id]", agent_id)
        page.fill("input[name=name]", "summarizer key")
        page.click("text=Create API key")
        api_key = page.locator("#new-api-key").inner_text()
        assert api_key.startswith("ak_live_")
        page.screenshot(path=str(shots / "console-keys.png"))
        page.goto(f"{server.url}/console/{tenant_id}/keys")  # shown once: a second look shows the prefix only
        assert page.locator("#new-api-key").count() == 0 and api_key not in page.content()

        issued = token_for(server.url, agent_id, api_key)
        assert issued.status_code == 200, issued.text
        access_token = issued.json()["access_token"]

        page.click("nav >> text=Audit log")
        page.fill("input[name=action]", "token.issued")
        page.click("text=Filter")
        row = page.locator("#audit tr", has_text=agent_id)
        row.first.wait_for()
        assert "token.issued" in row.first.inner_text()
        page.screenshot(path=str(shots / "console-audit.png"))

        page.click("nav >> text=Policies")
        page.fill("input[name=name]", "no deletes")
        page.fill("input[name=subjects]", "{not json")
        page.fill("input[name=actions]", "delete")
        page.fill("input[name=resources]", "/api/v1/**")
        page.click("text=Create policy")
        assert "subjects is not valid JSON" in page.locator(".error").inner_text()
        page.fill("input[name=name]", "no deletes")
        page.fill("input[name=subjects]", f'{{"agent_ids": ["{agent_id}"]}}')
        page.fill("input[name=actions]", "delete")
        page.fill("input[name=resources]", "/api/v1/**")
        page.click("text=Create policy")
        page.locator("#policies tr", has_text="no deletes").wait_for()
        for action, allowed in (("delete", "false"), ("read", "true")):
            page.select_option("select[name=agent_id]", agent_id)
            page.select_option("select[name=action]", action)
            page.fill("input[name=resource]", "/api/v1/agents")
            page.click('button:text-is("Check")')
            decision = page.locator("#decision")
            assert decision.get_attribute("data-allowed") == allowed, decision.inner_text()
            assert ("policy no deletes" in decision.inner_text()) == (action == "delete"), decision.inner_text()
            # The form keeps what was asked.
            assert page.locator("select[name=agent_id]").input_value() == agent_id
        page.screenshot(path=str(shots / "console-policies.png"))

        page.click("nav >> text=Agents")
        page.locator(f'li.agent[data-agent-id="{agent_id}"] > form button').click()
        page.locator(f'li.agent[data-agent-id="{agent_id}"] > .status-deactivated').wait_for()
        page.screenshot(path=str(shots / "console-stopped.png"))
        context.close()

    assert problems == [], problems
    # Stopped: the key no longer authenticates, and the token it got is dead (introspected by the tenant root).
    assert token_for(server.url, agent_id, api_key).json()["error"] == "invalid_client"
    refused = httpx.get(f"{server.url}/api/v1/agents", headers={"Authorization": f"Bearer {access_token}"})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
    assert all(
        (shots / f"console-{name}.png").stat().st_size > 5_000
        for name in ("agents", "keys", "policies", "audit", "stopped")
    )
