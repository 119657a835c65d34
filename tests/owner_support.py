"""An owner account made the way a person makes one, through the pages of a running server (sync httpx, real
HTTP): sign up (which logs in), create a tenant on the account page. For the browser and SDK tests that then log
in as that owner in a real browser."""

from __future__ import annotations

import html
import re

import httpx

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
PASSWORD = "correct horse battery staple"


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


def sign_up_owner(base_url: str, email: str, password: str = PASSWORD, tenant: str = "my tenant") -> str:
    """Sign ``email`` up at ``base_url`` and create a tenant it owns; the tenant root's API key (shown once)."""
    with httpx.Client(base_url=base_url, headers={"Origin": base_url}) as http:
        page = http.get("/signup")
        assert page.status_code == 200, page.text
        done = http.post("/signup", data=hidden_fields(page.text) | {"email": email, "password": password})
        assert done.status_code == 303, done.text
        account = http.get("/account")
        assert account.status_code == 200, account.text
        made = http.post("/account/tenants", data={"csrf_token": hidden_fields(account.text)["csrf_token"],
                                                    "name": tenant})  # fmt: skip
        assert made.status_code == 200, made.text
        key = re.search(r"<code id=api-key>([^<]+)</code>", made.text)
        assert key is not None, made.text
        return html.unescape(key.group(1))


class ConsoleOwner:
    """An owner signed up with one tenant, holding a logged-in client (its ``Origin`` this site's)."""

    def __init__(self, base_url: str, email: str, tenant: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Origin": base_url})
        signup = self.http.get("/signup")
        done = self.http.post("/signup", data=hidden_fields(signup.text) | {"email": email, "password": PASSWORD})
        assert done.status_code == 303, done.text
        made = self.http.post("/account/tenants", data={"csrf_token": self.csrf(), "name": tenant})
        found = re.search(r"<code id=tenant-id>([^<]+)</code>", made.text)
        key = re.search(r"<code id=api-key>([^<]+)</code>", made.text)
        assert found is not None and key is not None, made.text
        self.tenant, self.root_key = found.group(1), key.group(1)

    def csrf(self) -> str:
        return hidden_fields(self.http.get("/account").text)["csrf_token"]

    def post(self, path: str, **form: str) -> httpx.Response:
        return self.http.post(path, data={"csrf_token": self.csrf(), **form})

    def pending_approval(self, binding_message: str = "") -> str:
        """The id of the newest pending approval request showing ``binding_message`` in this owner's inbox."""
        inbox = self.http.get(f"/console/{self.tenant}/approvals")
        assert inbox.status_code == 200, inbox.text
        items = re.findall(
            r'<li class="approval status-pending" data-approval-id="([^"]+)">(.*?)</li>', inbox.text, re.S
        )
        found = [i for i, item in items if binding_message in item]
        assert found, inbox.text
        return found[0]

    def decide(self, binding_message: str, verdict: str) -> httpx.Response:
        """Approve or deny (``verdict``) the pending request showing ``binding_message``, in the console."""
        decided = self.post(f"/console/{self.tenant}/approvals/{self.pending_approval(binding_message)}/{verdict}")
        assert decided.status_code == 200, decided.text
        return decided
