"""Owner accounts through their pages (issue 14 item 4; ``api/owner_pages.py``, ``issuer/owners.py``), on SQLite and
PostgreSQL: sign-up and login, one answer for a wrong password and an unknown email, the failed-login throttle
held in the database (so a second replica on the same database refuses too), the session cookie's flags, logout,
session fixation, the pre-login double-submit CSRF token and the Origin / Sec-Fetch-Site checks, the session's
CSRF token on the account forms, ``next`` never leaving the server, a new tenant's API key shown once, claiming a
tenant with its root's key only, owners isolated from each other, and sign-up closed by the operator."""

from __future__ import annotations

import contextlib
import html
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from api_support import table_rows

from agentauth import paths
from agentauth.api.app import create_app
from agentauth.api.owner_pages import safe_next
from agentauth.bootstrap import Services, build_services
from support import ISSUER_URL, bearer, ok, quickstart, reset_postgres

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery staple"
SESSION, PRE = "agentauth_session", "agentauth_presession"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
# What a refused pre-login or account form must leave exactly as it was.
OWNER_TABLES = ("owners", "owner_sessions", "owner_tenants", "login_failures", "agents", "api_keys")


def hidden(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


@contextlib.asynccontextmanager
async def browser(
    services: Services, base_url: str = ISSUER_URL, ip: str = "203.0.113.7"
) -> AsyncIterator[httpx.AsyncClient]:
    """Another browser (its own cookie jar) on an app built over ``services``."""
    app = create_app(services=services)
    app.state.services = services
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
        yield http


@contextlib.asynccontextmanager
async def own_services(settings_factory: Any, backend: str, **overrides: Any) -> AsyncIterator[Services]:
    if backend == "postgres":
        await reset_postgres()
    services = await build_services(settings_factory(**overrides))
    try:
        yield services
    finally:
        await services.close()


def origin(http: httpx.AsyncClient) -> dict[str, str]:
    return {"Origin": str(http.base_url).rstrip("/")}


async def credentials(
    http: httpx.AsyncClient, path: str, email: str, password: str = PASSWORD, **extra: str
) -> httpx.Response:
    """The sign-up or login form as the page gave it, filled in and posted from this site."""
    page = await http.get(path)
    assert page.status_code == 200, page.text
    form = hidden(page.text) | {"email": email, "password": password} | extra
    return await http.post(path, data=form, headers=origin(http))


async def signed_up(http: httpx.AsyncClient, email: str) -> str:
    """Sign ``email`` up (which logs in); the session cookie's value."""
    done = await credentials(http, paths.SIGNUP, email)
    assert done.status_code == 303 and done.headers["location"] == paths.ACCOUNT, done.text
    return str(http.cookies[SESSION])


async def account_csrf(http: httpx.AsyncClient) -> str:
    page = await http.get(paths.ACCOUNT)
    assert page.status_code == 200, page.text
    return hidden(page.text)["csrf_token"]


def set_cookie(response: httpx.Response, name: str) -> str | None:
    return next((c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}=")), None)


async def test_signup_then_login(client: httpx.AsyncClient, services: Services) -> None:
    first = await signed_up(client, "Ada@Example.com")
    account = await client.get(paths.ACCOUNT)
    assert account.status_code == 200 and "ada@example.com" in account.text  # the address is normalised
    async with browser(services) as other:
        done = await credentials(other, paths.LOGIN, "ada@example.com")
        assert done.status_code == 303 and done.headers["location"] == paths.ACCOUNT, done.text
        assert other.cookies[SESSION] != first  # every login is a new session
        assert (await other.get(paths.ACCOUNT)).status_code == 200
    again = await credentials(client, paths.SIGNUP, "ada@example.com")
    assert again.status_code == 401 and "exists" in again.text, re.findall(r"role=\"alert\">([^<]*)", again.text)


async def test_wrong_password_and_unknown_email_answer_alike(client: httpx.AsyncClient, services: Services) -> None:
    await signed_up(client, "bea@example.com")
    client.cookies.delete(SESSION)
    wrong = await credentials(client, paths.LOGIN, "bea@example.com", "not the password at all")
    unknown = await credentials(client, paths.LOGIN, "nobody@example.com", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.text == unknown.text and "the email or password is not right" in wrong.text
    assert set_cookie(wrong, SESSION) is None and set_cookie(unknown, SESSION) is None


async def test_throttle_holds_with_the_right_password_and_across_replicas(
    client: httpx.AsyncClient, services: Services
) -> None:
    await signed_up(client, "cy@example.com")
    client.cookies.delete(SESSION)
    for attempt in range(5):
        failed = await credentials(client, paths.LOGIN, "cy@example.com", f"wrong password {attempt}")
        assert failed.status_code == 401, attempt
    sixth = await credentials(client, paths.LOGIN, "cy@example.com")
    assert sixth.status_code == 429 and set_cookie(sixth, SESSION) is None
    assert 0 < int(sixth.headers["retry-after"]) <= 15 * 60
    # A second replica: its own services and app on the same database, another client IP - still refused.
    replica = await build_services(services.settings)
    try:
        async with browser(replica, ip="198.51.100.9") as elsewhere:
            refused = await credentials(elsewhere, paths.LOGIN, "CY@example.com")
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
            assert set_cookie(refused, SESSION) is None
    finally:
        await replica.close()
    # Another account is not throttled by cy's failures.
    async with browser(services, ip="198.51.100.10") as other:
        await signed_up(other, "dee@example.com")


async def test_session_cookie_flags(client: httpx.AsyncClient) -> None:
    done = await credentials(client, paths.SIGNUP, "eve@example.com")
    cookie = set_cookie(done, SESSION)
    assert cookie is not None
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/"} <= flags
    assert "secure" not in flags  # an http issuer (tests): a Secure cookie would never come back


async def test_session_cookie_is_secure_on_an_https_issuer(settings_factory: Any, backend: str) -> None:
    issuer = "https://auth.example.com"
    async with (
        own_services(settings_factory, backend, issuer_url=issuer) as services,
        browser(services, issuer) as http,
    ):
        page = await http.get(paths.SIGNUP)
        pre = set_cookie(page, PRE)
        assert pre is not None and "secure" in pre.lower() and "httponly" in pre.lower()
        done = await credentials(http, paths.SIGNUP, "fay@example.com")
        cookie = set_cookie(done, SESSION)
        assert done.status_code == 303 and cookie is not None
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=lax", "path=/", "secure"} <= flags


async def test_logout_ends_the_session(client: httpx.AsyncClient, services: Services) -> None:
    token = await signed_up(client, "gus@example.com")
    done = await client.post(paths.LOGOUT, data={"csrf_token": await account_csrf(client)}, headers=origin(client))
    assert done.status_code == 303 and done.headers["location"] == paths.LOGIN
    assert await services.owners.session(token) is None
    async with browser(services) as replay:
        old = await replay.get(paths.ACCOUNT, headers={"Cookie": f"{SESSION}={token}"})
        assert old.status_code == 303 and old.headers["location"].startswith(paths.LOGIN)


async def test_session_fixation_and_forged_sessions(client: httpx.AsyncClient, services: Services) -> None:
    await signed_up(client, "hal@example.com")
    async with browser(services) as victim:
        fixed = secrets.token_urlsafe(32)  # a value an attacker planted in the victim's browser
        page = await victim.get(paths.LOGIN)
        form = hidden(page.text) | {"email": "hal@example.com", "password": PASSWORD}
        cookies = f"{PRE}={victim.cookies[PRE]}; {SESSION}={fixed}"
        done = await victim.post(paths.LOGIN, data=form, headers=origin(victim) | {"Cookie": cookies})
        assert done.status_code == 303, done.text
        issued = set_cookie(done, SESSION)
        assert issued is not None and not issued.startswith(f"{SESSION}={fixed};")
        assert await services.owners.session(fixed) is None
        planted = await victim.get(paths.ACCOUNT, headers={"Cookie": f"{SESSION}={fixed}"})
        assert planted.status_code == 303 and planted.headers["location"].startswith(paths.LOGIN)
    async with browser(services) as forger:
        for forged in (secrets.token_urlsafe(32), "", "x" * 500, client.cookies[SESSION] + "x"):
            answer = await forger.get(paths.ACCOUNT, headers={"Cookie": f"{SESSION}={forged}"})
            assert answer.status_code == 303 and answer.headers["location"].startswith(paths.LOGIN), forged


async def test_login_csrf_refusals_change_nothing(client: httpx.AsyncClient, services: Services) -> None:
    await signed_up(client, "ida@example.com")
    client.cookies.delete(SESSION)
    async with browser(services) as other:
        foreign_token = hidden((await other.get(paths.LOGIN)).text)["csrf_token"]  # another browser's pre-session
    before = await table_rows(services, OWNER_TABLES)
    refused = 0
    for password in (PASSWORD, "not the password at all"):
        for case in ("no pre-session", "wrong token", "empty token", "foreign token", "evil origin", "null origin",
                     "cross-site", "same-site"):  # fmt: skip
            page = await client.get(paths.LOGIN)
            form = hidden(page.text) | {"email": "ida@example.com", "password": password}
            headers = origin(client)
            if case == "no pre-session":
                client.cookies.delete(PRE)
            elif case == "wrong token":
                form["csrf_token"] = secrets.token_urlsafe(32)
            elif case == "empty token":
                form["csrf_token"] = ""
            elif case == "foreign token":
                form["csrf_token"] = foreign_token
            elif case == "evil origin":
                headers = {"Origin": "https://evil.example"}
            elif case == "null origin":
                headers = {"Origin": "null"}
            else:
                headers |= {"Sec-Fetch-Site": case}
            answer = await client.post(paths.LOGIN, data=form, headers=headers)
            assert answer.status_code == 403 and set_cookie(answer, SESSION) is None, case
            refused += 1
    for case in ("evil origin", "wrong token"):  # sign-up is guarded the same way
        page = await client.get(paths.SIGNUP)
        form = hidden(page.text) | {"email": "new@example.com", "password": PASSWORD}
        headers = {"Origin": "https://evil.example"} if case == "evil origin" else origin(client)
        if case == "wrong token":
            form["csrf_token"] = "forged"
        answer = await client.post(paths.SIGNUP, data=form, headers=headers)
        assert answer.status_code == 403 and set_cookie(answer, SESSION) is None, case
        refused += 1
    assert await table_rows(services, OWNER_TABLES) == before  # no session, no login_failures row, no owner
    assert refused == 18


async def test_account_forms_need_this_sessions_csrf_token(client: httpx.AsyncClient, services: Services) -> None:
    await signed_up(client, "jo@example.com")
    mine = await account_csrf(client)
    async with browser(services) as other:
        await signed_up(other, "kim@example.com")
        theirs = await account_csrf(other)
    tenant = await quickstart(client, "claimable")
    before = await table_rows(services, OWNER_TABLES)
    for path, extra in ((paths.ACCOUNT + "/tenants", {"name": "stolen"}),
                        (paths.ACCOUNT + "/claim", {"api_key": tenant["api_key"]}), (paths.LOGOUT, {})):  # fmt: skip
        cross = {"Sec-Fetch-Site": "cross-site"}
        for token, headers in ((theirs, origin(client)), ("", origin(client)), (None, origin(client)),
                               (mine, {"Origin": "https://evil.example"}), (mine, cross)):  # fmt: skip
            data = extra | ({"csrf_token": token} if token is not None else {})
            answer = await client.post(path, data=data, headers=headers)
            assert answer.status_code == 403, (path, token, headers)
    assert await table_rows(services, OWNER_TABLES) == before
    assert (await client.get(paths.ACCOUNT)).status_code == 200  # still logged in: the forged logout did nothing


OPEN_REDIRECTS = [
    "https://evil.example", "//evil.example", "///evil.example", "/\\evil.example", "\\\\evil", "\\/evil.example",
    "javascript:alert(1)", "http:evil.example", "/\tevil.example", "/\r\nLocation: https://evil.example",
    "https:/evil.example", " https://evil.example", "", "account",
]  # fmt: skip


def test_safe_next_keeps_paths_and_drops_everything_else() -> None:
    for value in OPEN_REDIRECTS:
        assert safe_next(value) == paths.ACCOUNT, value
    for value in ("/account", "/authorize?client_id=x&state=y", "/%2F%2Fevil", "/%5Cevil"):
        assert safe_next(value) == value  # a path here; percent-escapes are not decoded into a host


async def test_next_never_leaves_the_server(client: httpx.AsyncClient, services: Services) -> None:
    await signed_up(client, "lou@example.com")
    for value in [*OPEN_REDIRECTS, "/%2F%2Fevil", "/%2F%2Fevil?", "/%5C%5Cevil.example"]:
        # The form's own next, and one an attacker wrote into the form: neither leaves the server.
        for forged in (False, True):
            client.cookies.delete(SESSION)
            page = await client.get(paths.LOGIN, params={"next": value})
            carried = hidden(page.text)["next"]
            assert carried == safe_next(value), value
            form = hidden(page.text) | {"email": "lou@example.com", "password": PASSWORD}
            form["next"] = value if forged else carried
            done = await client.post(paths.LOGIN, data=form, headers=origin(client))
            assert done.status_code == 303, done.text
            location = done.headers["location"]
            final = urlsplit(urljoin(ISSUER_URL + "/login", location))
            assert location.startswith("/") and not location.startswith("//") and "\\" not in location, location
            assert (final.scheme, final.netloc) == ("http", "testserver"), location
            if not value.startswith("/%"):
                assert location == paths.ACCOUNT, value


async def test_new_tenant_key_shown_once(client: httpx.AsyncClient, services: Services) -> None:
    await signed_up(client, "max@example.com")
    made = await client.post(paths.ACCOUNT + "/tenants", data={"csrf_token": await account_csrf(client),
                                                               "name": "acme"}, headers=origin(client))  # fmt: skip
    assert made.status_code == 200, made.text
    found = re.search(r"<code id=api-key>([^<]+)</code>", made.text)
    assert found is not None
    key = html.unescape(found.group(1))
    ok(await client.post(paths.TOKEN, data={"grant_type": "client_credentials", "client_secret": key}))
    reloaded = await client.get(paths.ACCOUNT)
    assert reloaded.status_code == 200 and key not in reloaded.text and "api-key" not in reloaded.text
    assert "acme" in reloaded.text


async def test_claim_with_the_root_key_only(client: httpx.AsyncClient, services: Services) -> None:
    await signed_up(client, "ned@example.com")
    tenant = await quickstart(client, "claimed-root")
    auth = bearer(tenant["access_token"])
    child = ok(await client.post(paths.AGENTS, json={"name": "claimed-child", "agent_type": "tool"}, headers=auth), 201)
    child_key = ok(await client.post(paths.CREDENTIALS, json={"agent_id": child["agent"]["id"]}, headers=auth), 201)
    csrf = await account_csrf(client)
    before = await table_rows(services, ("owner_tenants",))
    for key, text in ((child_key["raw_key"], "child agent"), ("aa_live_not-a-key", "not a valid API key"),
                      (tenant["api_key"] + "x", "not a valid API key"), ("", "not a valid API key")):  # fmt: skip
        refused = await client.post(paths.ACCOUNT + "/claim", data={"csrf_token": csrf, "api_key": key},
                                    headers=origin(client))  # fmt: skip
        assert refused.status_code == 400 and text in refused.text, key
        assert tenant["agent"]["id"] not in refused.text
    assert await table_rows(services, ("owner_tenants",)) == before
    claimed = await client.post(paths.ACCOUNT + "/claim", data={"csrf_token": csrf, "api_key": tenant["api_key"]},
                                headers=origin(client))  # fmt: skip
    assert claimed.status_code == 200 and "is yours now" in claimed.text
    listed = await client.get(paths.ACCOUNT)
    assert tenant["agent"]["id"] in listed.text and child["agent"]["id"] in listed.text


async def test_owners_see_only_their_own_tenants(client: httpx.AsyncClient, services: Services) -> None:
    await signed_up(client, "ola@example.com")
    form = {"csrf_token": await account_csrf(client), "name": "ola-tenant"}
    made = await client.post(paths.ACCOUNT + "/tenants", data=form, headers=origin(client))
    assert made.status_code == 200
    ola = await services.owners.session(client.cookies[SESSION])
    assert ola is not None
    mine = await services.owners.agents(ola.owner.id)
    assert len(mine) == 1
    async with browser(services) as other:
        token = await signed_up(other, "pam@example.com")
        page = await other.get(paths.ACCOUNT)
        assert page.status_code == 200 and "You own no tenant yet" in page.text
        assert mine[0].id not in page.text and mine[0].did not in page.text and "ola-tenant" not in page.text
        session = await services.owners.session(token)
        assert session is not None and await services.owners.agents(session.owner.id) == []
        assert not await services.owners.owns(session.owner.id, mine[0].tenant_id)


async def test_signup_closed(settings_factory: Any, backend: str) -> None:
    async with own_services(settings_factory, backend, owner_signup="closed") as services, browser(services) as http:
        before = await table_rows(services, OWNER_TABLES)
        page = await http.get(paths.SIGNUP)
        assert page.status_code == 403 and "Sign-up is closed" in page.text and 'name="password"' not in page.text
        # A valid pre-login form (the login page's) posted to /signup anyway: refused by the service.
        form = hidden((await http.get(paths.LOGIN)).text) | {"email": "quinn@example.com", "password": PASSWORD}
        refused = await http.post(paths.SIGNUP, data=form, headers=origin(http))
        assert refused.status_code in (401, 403) and "sign-up is closed" in refused.text
        assert set_cookie(refused, SESSION) is None
        assert await table_rows(services, OWNER_TABLES) == before
        login = await credentials(http, paths.LOGIN, "quinn@example.com")
        assert login.status_code == 401
