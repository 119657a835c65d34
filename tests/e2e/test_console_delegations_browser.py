"""The console's delegations page in headless Chromium (issue 17 item 1): a chain root -> planner -> worker made
over REST (the second hop by the planner acting under the first, RFC 8693 token exchange) is drawn - two arrows
between three agents -; revoking the first hop shows the cascade first (both delegations), and once confirmed
both are revoked and the worker's token obtained under them is refused. Screenshot: console-delegations.png in
the test's temporary directory (or ``AGENTAUTH_CONSOLE_SCREENSHOTS``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser_support import chromium
from live_server import LiveServer
from owner_support import PASSWORD, sign_up_owner

pytestmark = pytest.mark.slow
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
FIRST_HOP = ["agents.read", "api.read", "delegations.read", "delegations.write"]


def call(http: httpx.Client, method: str, path: str, token: str | None = None, **kwargs: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = http.request(method, path, headers=headers, **kwargs)
    assert answer.status_code in (200, 201), answer.text
    body: dict[str, Any] = answer.json()
    return body


def child(http: httpx.Client, root: str, name: str) -> tuple[str, str]:
    """A child agent with its own client_credentials token: (id, token)."""
    agent = call(http, "POST", "/api/v1/agents", root, json={"name": name, "agent_type": "tool"})["agent"]
    key = call(http, "POST", "/api/v1/credentials", root, json={"agent_id": agent["id"]})["raw_key"]
    token = call(http, "POST", "/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": key})
    return agent["id"], token["access_token"]


def exchanged(http: httpx.Client, credential: str, actor: str) -> str:
    form = {
        "grant_type": EXCHANGE, "subject_token": credential,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "actor_token": actor,
        "actor_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }  # fmt: skip
    return str(call(http, "POST", "/api/v1/auth/token", data=form)["access_token"])


def test_the_delegation_picture_and_a_revocation_with_its_cascade(browser_issuer: LiveServer, tmp_path: Path) -> None:
    server = browser_issuer
    shots = Path(os.environ.get("AGENTAUTH_CONSOLE_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    root_key = sign_up_owner(server.url, "owner@example.com", tenant="Research team")
    with httpx.Client(base_url=server.url) as http:
        root = call(
            http, "POST", "/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": root_key}
        )
        root_token = root["access_token"]
        planner, planner_token = child(http, root_token, "planner")
        worker, worker_token = child(http, root_token, "worker")
        first = call(http, "POST", "/api/v1/delegations", root_token,
                     json={"delegate_agent_id": planner, "scopes": FIRST_HOP})  # fmt: skip
        as_planner = exchanged(http, first["credential"], planner_token)
        second = call(http, "POST", "/api/v1/delegations", as_planner,
                      json={"delegate_agent_id": worker, "scopes": ["api.read"]})  # fmt: skip
        under_chain = exchanged(http, second["credential"], worker_token)
        tenant_id = call(http, "GET", f"/api/v1/agents/{planner}", root_token)["tenant_id"]

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.set_default_timeout(20_000)
        page.goto(f"{server.url}/login?next=/console/{tenant_id}/delegations")
        page.fill("input[name=email]", "owner@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        picture = page.locator("#delegation-picture")
        picture.wait_for()
        assert picture.locator("g.node").count() == 3 and picture.locator("g.delegation").count() == 2
        assert {picture.locator("g.node text").nth(i).text_content() for i in range(3)} == {
            "Research team", "planner", "worker",
        }  # fmt: skip
        page.screenshot(path=str(shots / "console-delegations.png"))

        page.locator(f'#delegations tr[data-delegation-id="{first["id"]}"] a').click()
        cascade = page.locator("#cascade")
        cascade.wait_for()
        listed = {cascade.locator("li").nth(i).get_attribute("data-delegation-id") for i in range(2)}
        assert listed == {first["id"], second["id"]} and "1 delegation(s) resting on it" in cascade.inner_text()
        page.click("text=Revoke them")
        page.locator("[role=status]", has_text="Delegation revoked").wait_for()
        statuses = {page.locator("g.delegation").nth(i).get_attribute("data-status") for i in range(2)}
        assert statuses == {"revoked"}
        browser.close()

    refused = httpx.get(f"{server.url}/api/v1/agents", headers={"Authorization": f"Bearer {under_chain}"})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
    assert (shots / "console-delegations.png").stat().st_size > 5_000
