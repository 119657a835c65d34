"""Attacks on the owner console (``api/console.py``) against a live server, with two owners A and B, each with a
tenant: every console page and action of A's tenant, tried by B with B's own valid session and CSRF token, answers
404 and changes nothing; every state-changing form refuses a missing or foreign CSRF token and a cross-site
``Origin``; a logged-out request goes to the login page; every page sends the strict CSP with ``frame-ancestors
'none'``; an audit export cannot inject spreadsheet formulas. 0 accepted."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from test_attack_injection import PAYLOADS

from agentauth.api.console import AUDIT_FIELDS, spreadsheet_safe
from live_server import LiveServer, start_issuer
from owner_support import ConsoleOwner as Owner
from support import app_route_table, fill_path, path_params

pytestmark = pytest.mark.slow


@pytest.fixture
def owners(tmp_path: Path) -> Iterator[tuple[LiveServer, Owner, Owner]]:
    server = start_issuer(tmp_path)
    a = Owner(server.url, "a@example.com", "tenant A")
    b = Owner(server.url, "b@example.com", "tenant B")
    try:
        yield server, a, b
    finally:
        a.http.close()
        b.http.close()
        server.stop()


def a_child_and_key(a: Owner) -> tuple[str, str]:
    made = a.post(f"/console/{a.tenant}/agents", name="victim", agent_type="tool")
    agent = re.search(r'data-agent-id="([^"]+)"><strong>victim', made.text)
    assert made.status_code == 200 and agent is not None, made.text
    keys = a.post(f"/console/{a.tenant}/keys", agent_id=agent.group(1), name="victim key")
    key = re.search(r'data-key-id="([^"]+)"', keys.text)
    assert keys.status_code == 200 and key is not None, keys.text
    return agent.group(1), key.group(1)


POLICY = {"name": "no deletes", "effect": "deny", "actions": "delete", "resources": "/api/v1/**"}


def a_policy(a: Owner) -> str:
    made = a.post(f"/console/{a.tenant}/policies", **POLICY)
    found = re.search(r'data-policy-id="([^"]+)"', made.text)
    assert made.status_code == 200 and found is not None, made.text
    return found.group(1)


def test_one_owner_never_sees_or_changes_another_owners_tenant(owners: tuple[LiveServer, Owner, Owner]) -> None:
    _, a, b = owners
    agent_id, key_id = a_child_and_key(a)
    policy_id = a_policy(a)
    t = a.tenant
    for path in (f"/console/{t}", f"/console/{t}/keys", f"/console/{t}/audit", f"/console/{t}/audit.csv",
                 f"/console/{t}/audit.json", f"/console/{t}/policies", f"/console/{t}/delegations"):  # fmt: skip
        seen = b.http.get(path)
        assert seen.status_code == 404, (path, seen.status_code)
        assert "victim" not in seen.text and agent_id not in seen.text, path
    for path, form in (
        (f"/console/{t}/agents", {"name": "intruder", "agent_type": "tool"}),
        (f"/console/{t}/agents/{agent_id}/stop", {}),
        (f"/console/{t}/agents/{agent_id}/suspend", {}),
        (f"/console/{t}/agents/{agent_id}/resume", {}),
        (f"/console/{t}/keys", {"agent_id": agent_id}),
        (f"/console/{t}/keys/{key_id}/rotate", {}),
        (f"/console/{t}/keys/{key_id}/revoke", {}),
        (f"/console/{t}/policies", POLICY),
        (f"/console/{t}/policies/evaluate", {"agent_id": agent_id, "action": "read", "resource": "/x"}),
        (f"/console/{t}/policies/{policy_id}/delete", {}),
        (f"/console/{b.tenant}/policies/{policy_id}/delete", {}),
        (f"/console/{b.tenant}/policies/evaluate", {"agent_id": agent_id, "action": "read", "resource": "/x"}),
        # A's agent and key named under B's own tenant: the use case, run as B's root, finds nothing.
        (f"/console/{b.tenant}/agents/{agent_id}/stop", {}),
        (f"/console/{b.tenant}/agents/{agent_id}/suspend", {}),
        (f"/console/{b.tenant}/agents/{agent_id}/resume", {}),
        (f"/console/{b.tenant}/keys/{key_id}/revoke", {}),
        (f"/console/{b.tenant}/keys/{key_id}/rotate", {}),
    ):
        tried = b.post(path, **form)
        assert tried.status_code == 404, (path, tried.status_code, tried.text[:200])
    # Nothing changed in A's tenant.
    agents, keys = a.http.get(f"/console/{t}").text, a.http.get(f"/console/{t}/keys").text
    assert "intruder" not in agents and agents.count('class="status-active"') == 2
    assert keys.count("<td>active</td>") == 2 and "revoked" not in keys  # the root's and the victim's
    assert a.http.get(f"/console/{t}/policies").text.count("data-policy-id=") == 1


def test_every_form_needs_the_sessions_csrf_token_and_this_origin(owners: tuple[LiveServer, Owner, Owner]) -> None:
    server, a, b = owners
    agent_id, key_id = a_child_and_key(a)
    policy_id = a_policy(a)
    t = a.tenant
    actions = (
        (f"/console/{t}/agents", {"name": "forged", "agent_type": "tool"}),
        (f"/console/{t}/agents/{agent_id}/stop", {}),
        (f"/console/{t}/agents/{agent_id}/suspend", {}),
        (f"/console/{t}/keys", {"agent_id": agent_id}),
        (f"/console/{t}/keys/{key_id}/rotate", {}),
        (f"/console/{t}/keys/{key_id}/revoke", {}),
        (f"/console/{t}/policies", POLICY | {"name": "forged"}),
        (f"/console/{t}/policies/{policy_id}/delete", {}),
    )
    for path, form in actions:
        assert a.http.post(path, data=form).status_code == 403, path  # no token
        assert a.http.post(path, data=form | {"csrf_token": b.csrf()}).status_code == 403, path  # B's token
        cross = a.http.post(path, data=form | {"csrf_token": a.csrf()}, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403, path
        site = a.http.post(path, data=form | {"csrf_token": a.csrf()}, headers={"Sec-Fetch-Site": "cross-site"})
        assert site.status_code == 403, path
    agents, keys = a.http.get(f"/console/{t}").text, a.http.get(f"/console/{t}/keys").text
    assert "forged" not in agents and agents.count('class="status-active"') == 2
    assert keys.count("<td>active</td>") == 2
    policies = a.http.get(f"/console/{t}/policies").text
    assert policies.count("data-policy-id=") == 1 and "forged" not in policies

    with httpx.Client(base_url=server.url) as anonymous:
        for path in (f"/console/{t}", "/console", f"/console/{t}/keys"):
            answer = anonymous.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next="), path
        assert anonymous.post(f"/console/{t}/agents/{agent_id}/stop").status_code == 303


def test_pages_send_a_strict_policy_and_render_names_inert(owners: tuple[LiveServer, Owner, Owner]) -> None:
    _, a, _ = owners
    payload = '<script>alert(1)</script><img src=x onerror=alert(2)>"=cmd|'
    made = a.post(f"/console/{a.tenant}/agents", name=payload, agent_type="tool")
    assert made.status_code == 200
    a.post(f"/console/{a.tenant}/policies", **(POLICY | {"name": payload}))
    pages = ("/console", f"/console/{a.tenant}", f"/console/{a.tenant}/keys", f"/console/{a.tenant}/audit")
    for path in (*pages, f"/console/{a.tenant}/policies"):
        answer = a.http.get(path)
        assert answer.status_code == 200, path
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"
        assert "<script>" not in answer.text and "<img src=x" not in answer.text, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in a.http.get(f"/console/{a.tenant}").text


def test_the_audit_export_is_a_download_whose_cells_cannot_be_formulas(owners: tuple[LiveServer, Owner, Owner]) -> None:
    _, a, _ = owners
    a_child_and_key(a)
    exported = a.http.get(f"/console/{a.tenant}/audit.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["content-disposition"] == 'attachment; filename="audit.csv"'
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == [*AUDIT_FIELDS, "details"]
    assert any(row[2] == "tenant.created" for row in rows[1:]), rows
    events = a.http.get(f"/console/{a.tenant}/audit.json").json()
    assert [e["action"] for e in events] == [row[2] for row in rows[1:]]
    # What the owner did through the console is recorded as the tenant root's action on the owner's behalf.
    newest = {e["action"]: e for e in reversed(events)}  # newest first: the console's, not the quickstart's
    for action in ("agent.created", "credential.created"):
        assert newest[action]["details"]["owner"].startswith("own_"), newest[action]
    for formula in ('=HYPERLINK("http://evil")', "+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1"):
        assert spreadsheet_safe(formula) == "'" + formula
    assert spreadsheet_safe("agent.created") == "agent.created" and spreadsheet_safe("") == ""


def test_the_tenant_kill_switch_needs_its_name_and_its_owner(owners: tuple[LiveServer, Owner, Owner]) -> None:
    server, a, b = owners
    agent_id, _ = a_child_and_key(a)
    t = a.tenant
    assert b.post(f"/console/{t}/stop", confirm="tenant A").status_code == 404
    assert a.http.post(f"/console/{t}/stop", data={"confirm": "tenant A"}).status_code == 403  # no CSRF token
    wrong = a.post(f"/console/{t}/stop", confirm="tenant B")
    assert wrong.status_code == 400 and "nothing was stopped" in wrong.text
    token = httpx.post(
        f"{server.url}/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": a.root_key}
    )
    assert token.status_code == 200, token.text

    stopped = a.post(f"/console/{t}/stop", confirm="tenant A")
    assert stopped.status_code == 200 and "Tenant tenant A is stopped" in stopped.text
    refused = httpx.post(
        f"{server.url}/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": a.root_key}
    )
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    dead = httpx.get(f"{server.url}/api/v1/agents", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    assert dead.status_code == 401
    assert a.http.get(f"/console/{t}").status_code == 403  # nothing can act for a stopped tenant
    # B's tenant is untouched.
    assert b.http.get(f"/console/{b.tenant}").text.count('class="status-active"') == 1
    assert agent_id not in b.http.get(f"/console/{b.tenant}").text


def test_another_owner_cannot_see_preview_or_revoke_a_delegation(owners: tuple[LiveServer, Owner, Owner]) -> None:
    server, a, b = owners
    agent_id, _ = a_child_and_key(a)
    with httpx.Client(base_url=server.url) as http:
        root = http.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": a.root_key})
        made = http.post(
            "/api/v1/delegations", json={"delegate_agent_id": agent_id, "scopes": ["api.read"]},
            headers={"Authorization": f"Bearer {root.json()['access_token']}"},
        )  # fmt: skip
    assert made.status_code == 201, made.text
    delegation = made.json()["id"]
    for tenant in (a.tenant, b.tenant):
        assert b.http.get(f"/console/{tenant}/delegations/{delegation}/revoke").status_code == 404
        assert b.post(f"/console/{tenant}/delegations/{delegation}/revoke").status_code == 404
    assert delegation not in b.http.get(f"/console/{b.tenant}/delegations").text
    assert a.http.post(f"/console/{a.tenant}/delegations/{delegation}/revoke").status_code == 403  # no CSRF token
    shown = a.http.get(f"/console/{a.tenant}/delegations").text
    assert f'data-delegation-id="{delegation}" data-status="active"' in shown


CONSOLE_ROUTES = [(m, p) for m, p, _ in app_route_table() if p.startswith("/console/") and path_params(p)]


def test_hostile_ids_in_console_paths_are_4xx_and_change_nothing(owners: tuple[LiveServer, Owner, Owner]) -> None:
    _, a, _ = owners
    a_child_and_key(a)
    a_policy(a)
    before = [a.http.get(f"/console/{a.tenant}{page}").text for page in ("", "/keys", "/policies")]
    assert len(CONSOLE_ROUTES) >= 15
    for method, path in CONSOLE_ROUTES:
        for name, payload in PAYLOADS.items():
            hostile = quote(payload, safe="")
            for tenant in (a.tenant, hostile):  # the owner's own tenant with a hostile id, and a hostile tenant
                if tenant == a.tenant and path_params(path) == ["tenant_id"]:
                    continue  # no hostile id left in the path: the form fields' checks are tested above
                url = fill_path(path, dict.fromkeys(path_params(path), hostile) | {"tenant_id": tenant})
                answer = a.post(url) if method == "POST" else a.http.get(url)
                assert 400 <= answer.status_code < 500, f"[{name} in {method} {path}] {answer.status_code}"
    after = [a.http.get(f"/console/{a.tenant}{page}").text for page in ("", "/keys", "/policies")]
    strip = re.compile(r'name="csrf_token" value="[^"]*"')
    assert [strip.sub("", page) for page in after] == [strip.sub("", page) for page in before]


def test_approvals_are_the_named_owners_only_need_csrf_and_render_inert(
    owners: tuple[LiveServer, Owner, Owner],
) -> None:
    """An approval request (CIBA) of A's tenant: B never sees nor decides it; a forged form (no or B's CSRF token,
    cross-site) decides nothing; hostile text in the binding message and the authorization details is shown as
    text, never markup."""
    import json

    server, a, b = owners
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    details = [{"type": "payment", "amount": "1.00", "currency": "USD", "creditor": hostile}]
    asked = httpx.post(f"{server.url}/api/v1/auth/bc-authorize", auth=("", a.root_key), data={
        "login_hint": "a@example.com", "binding_message": hostile, "authorization_details": json.dumps(details),
    })  # fmt: skip
    assert asked.status_code == 200, asked.text
    t = a.tenant
    inbox = a.http.get(f"/console/{t}/approvals")
    found = re.search(r'data-approval-id="([^"]+)"', inbox.text)
    assert inbox.status_code == 200 and found is not None, inbox.text
    approval = found.group(1)
    assert "<script>" not in inbox.text and "<img src=x" not in inbox.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in inbox.text
    assert "default-src 'none'" in inbox.headers["content-security-policy"]
    seen = b.http.get(f"/console/{t}/approvals")
    assert seen.status_code == 404 and approval not in seen.text
    for path in (f"/console/{t}/approvals/{approval}/approve", f"/console/{b.tenant}/approvals/{approval}/approve"):
        assert b.post(path).status_code == 404, path
    path = f"/console/{t}/approvals/{approval}/approve"
    assert a.http.post(path).status_code == 403
    assert a.http.post(path, data={"csrf_token": b.csrf()}).status_code == 403
    cross = a.http.post(path, data={"csrf_token": a.csrf()}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert a.post(f"/console/{t}/approvals/{approval}/obey").status_code == 400
    assert 'class="approval status-pending"' in a.http.get(f"/console/{t}/approvals").text
    done = a.post(path)
    assert done.status_code == 200 and 'class="approval status-approved"' in done.text
    assert a.post(path).status_code == 409  # decided once
