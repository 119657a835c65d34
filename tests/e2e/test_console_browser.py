"""The whole owner journey in headless Chromium (issue 17's browser test), against a live ``agentauth serve``: an
owner signs up, creates a tenant, logs out and in again, opens the console, creates an agent, makes it an API key
(shown once), and the agent gets a token with that key over REST; the audit log shows the issuance; a policy is
written and dry-run; the agent asks (CIBA) for two payments - the owner sees the exact ``authorization_details``,
approves one and denies the other, and the agent's polls get the token carrying them and ``access_denied``; the
owner suspends the agent (an offline verifier holding the old lists still accepts its token; after refetching
them it refuses it as suspended), then stops it for good (refused as revoked; its key no longer works). No page
reports a script error or a CSP violation. Screenshots of each page go to the test's temporary directory, or to
``AGENTAUTH_CONSOLE_SCREENSHOTS`` (``docs/`` for the README's)."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from agentauth import paths
from agentauth.vc import StaticStatusLists, VerificationError, Verifier
from browser_support import chromium
from live_server import STATUS_TTL_SECONDS, LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"
TIMEOUT_MS = 20_000
EMAIL = "owner@example.com"
CIBA = "urn:openid:params:grant-type:ciba"


def token_for(base_url: str, agent_id: str, api_key: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/api/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": agent_id, "client_secret": api_key},
    )


def ask(base_url: str, agent_id: str, api_key: str, message: str, amount: str) -> str:
    details = [{"type": "payment", "amount": amount, "currency": "USD", "creditor": "ACME Corp"}]
    answer = httpx.post(f"{base_url}{paths.BACKCHANNEL}", auth=(agent_id, api_key), data={
        "login_hint": EMAIL, "binding_message": message, "authorization_details": json.dumps(details),
    })  # fmt: skip
    assert answer.status_code == 200, answer.text
    return str(answer.json()["auth_req_id"])


def poll(base_url: str, agent_id: str, api_key: str, auth_req_id: str) -> httpx.Response:
    form = {"grant_type": CIBA, "auth_req_id": auth_req_id}
    return httpx.post(f"{base_url}{paths.TOKEN}", auth=(agent_id, api_key), data=form)


def claims_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def fetch_lists(base_url: str, token: str) -> StaticStatusLists:
    """What a third party fetches to verify offline: every status list the token names, as published now."""
    claims = claims_of(token)
    lists = StaticStatusLists()
    for entry in claims["vc"]["credentialStatus"]:
        url = entry["statusListCredential"]
        assert url.startswith(base_url)
        lists.put(url, httpx.get(url).text)
    return lists


def assert_list_reach(page: Page, token: str, purpose: str, *, fetched: datetime, at: datetime) -> None:
    """The kill switch's report (read at ``at``) names the token's ``purpose`` list with when verifiers honouring
    its ttl have the change: not before the copy this test ``fetched`` runs out, not later than one ttl on."""
    (entry,) = [e for e in claims_of(token)["vc"]["credentialStatus"] if e["statusPurpose"] == purpose]
    row = page.locator(f'#list-reach tr[data-list-url="{entry["statusListCredential"]}"]')
    assert row.locator("td").nth(1).inner_text() == purpose
    reached_by = datetime.fromisoformat(str(row.get_attribute("data-reached-by")))
    ttl = timedelta(seconds=STATUS_TTL_SECONDS)
    assert fetched + ttl - timedelta(seconds=1) <= reached_by <= at + ttl + timedelta(seconds=1), (reached_by, at)


def offline_verdict(base_url: str, jwks: dict[str, object], lists: StaticStatusLists, token: str) -> str | None:
    try:
        Verifier(issuer_url=base_url, jwks=jwks, status_source=lists).verify_access_token(token)
    except VerificationError as exc:
        return exc.code
    return None


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
        page.fill("input[name=email]", EMAIL)
        page.fill("input[name=password]", PASSWORD)
        page.screenshot(path=str(shots / "console-signup.png"))
        page.click("button[type=submit]")
        page.fill("input[name=name]", "Research team")
        page.click("text=Create tenant")
        tenant_id = page.locator("#tenant-id").inner_text()
        page.screenshot(path=str(shots / "console-account.png"))
        page.click("text=Log out")
        page.goto(f"{server.url}/login?next=/account")
        page.fill("input[name=email]", EMAIL)
        page.fill("input[name=password]", PASSWORD)
        page.screenshot(path=str(shots / "console-login.png"))
        page.click("button[type=submit]")
        page.locator("#agents td", has_text=tenant_id).wait_for()

        page.click("text=open the console")
        assert page.url == f"{server.url}/console"
        page.click("text=Research team")
        assert page.url == f"{server.url}/console/{tenant_id}"
        agent_name = "summarizer <b>bold</b>"
        page.fill("input[name=name]", agent_name)  # markup in a name stays text
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

        # Human approval: the agent asks for two payments; the owner sees exactly what is asked.
        approved = ask(server.url, agent_id, api_key, "Pay invoice 1042", "45.00")
        denied = ask(server.url, agent_id, api_key, "Pay invoice 1043", "9999.00")
        assert poll(server.url, agent_id, api_key, approved).json()["error"] == "authorization_pending"
        page.click("nav >> text=Approvals")
        first = page.locator("li.approval", has_text="Pay invoice 1042")
        shown = json.loads(first.locator("pre.authorization-details").inner_text())
        assert shown == [{"type": "payment", "amount": "45.00", "currency": "USD", "creditor": "ACME Corp"}]
        page.screenshot(path=str(shots / "console-approvals.png"))
        first.locator("button", has_text="Approve").click()
        page.locator("li.approval.status-approved", has_text="Pay invoice 1042").wait_for()
        page.locator("li.approval", has_text="Pay invoice 1043").locator("button", has_text="Deny").click()
        page.locator("li.approval.status-denied", has_text="Pay invoice 1043").wait_for()
        granted = poll(server.url, agent_id, api_key, approved)
        assert granted.status_code == 200, granted.text
        approved_token = granted.json()["access_token"]
        payload = claims_of(approved_token)
        assert payload["authorization_details"] == shown
        refused = poll(server.url, agent_id, api_key, denied)
        assert refused.status_code == 400 and refused.json()["error"] == "access_denied"

        # The kill switch, reversible first: a verifier that fetched the lists before still accepts the token
        # (it may, for their ttl); once it refetches them it refuses the token as suspended.
        jwks = httpx.get(f"{server.url}/.well-known/jwks.json").json()
        fetched = datetime.now(UTC)
        before = fetch_lists(server.url, access_token)
        assert offline_verdict(server.url, jwks, before, access_token) is None
        page.click("nav >> text=Agents")
        page.locator(f'button[aria-label="Suspend {agent_name}"]').click()
        page.locator(f'li.agent[data-agent-id="{agent_id}"] > .status-suspended').wait_for()
        assert "Nothing was revoked" in page.locator("p[role=status]").inner_text()
        assert_list_reach(page, access_token, "suspension", fetched=fetched, at=datetime.now(UTC))
        page.screenshot(path=str(shots / "console-suspended.png"))
        assert offline_verdict(server.url, jwks, before, access_token) is None
        fetched = datetime.now(UTC)
        assert offline_verdict(server.url, jwks, fetch_lists(server.url, access_token), access_token) == "suspended"
        assert offline_verdict(server.url, jwks, fetch_lists(server.url, approved_token), approved_token) == "suspended"
        assert token_for(server.url, agent_id, api_key).json()["error"] == "invalid_client"

        # Then for good: Stop. The same verifier, after its next fetch, refuses the token as revoked.
        page.locator(f'button[aria-label="Stop {agent_name}"]').click()
        page.locator(f'li.agent[data-agent-id="{agent_id}"] > .status-deactivated').wait_for()
        assert_list_reach(page, access_token, "revocation", fetched=fetched, at=datetime.now(UTC))
        page.screenshot(path=str(shots / "console-stopped.png"))
        assert offline_verdict(server.url, jwks, fetch_lists(server.url, access_token), access_token) == "revoked"
        context.close()

    assert problems == [], problems
    # Stopped: the key no longer authenticates, and the token it got is dead (introspected by the tenant root).
    assert token_for(server.url, agent_id, api_key).json()["error"] == "invalid_client"
    refused = httpx.get(f"{server.url}/api/v1/agents", headers={"Authorization": f"Bearer {access_token}"})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
    assert all(
        (shots / f"console-{name}.png").stat().st_size > 5_000
        for name in (
            "signup",
            "account",
            "login",
            "agents",
            "keys",
            "policies",
            "audit",
            "approvals",
            "suspended",
            "stopped",
        )
    )
