"""Attacks on the authorization code surface (RFC 6749 sections 4.1 and 10, RFC 7636, RFC 8707, RFC 9207, RFC 9700
sections 2.1 and 4): the authorization endpoint, its consent form and the ``authorization_code`` grant, on SQLite
and PostgreSQL. Each attempt is refused AND leaves the database as it was (``security_support.snapshot``: no code,
no consent, no credential, no refresh token); the module ends with "N attempts, 0 accepted".

Open redirects (an unregistered or altered redirect URI, a loopback port for a non-loopback registration,
``localhost`` for ``127.0.0.1``, userinfo tricks, a tampered consent form), code replay (refused, and what the first
redemption issued is revoked), a code shown by another client, PKCE downgrades, an expired code, CSRF on consent,
consent without a session, session fixation at the login, ``resource`` confusion (another tenant's resource server,
a resource not consented, a token for A shown to B's verifier), mix-up (``iss`` on every authorization response),
client authentication tricks (a public client's made-up secret, a confidential client without its secret), and
``prompt=none`` without a login."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import re
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from security_support import INTROSPECT, TOKEN, assert_unchanged, snapshot

from agentauth import paths
from agentauth.api.app import create_app
from agentauth.bootstrap import Services
from agentauth.issuer.context import RequestContext
from agentauth.sdk import offline_verifier
from agentauth.vc import VerificationError
from support import ISSUER_URL, assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio
REDIRECT = "http://127.0.0.1:9000/callback"
WEB = "https://app.example.com/cb"
PASSWORD = "correct horse battery staple"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
FILES = "https://files.example.com/mcp"
BILLING = "https://billing.example.com/api"
TALLY = {"attempts": 0, "accepted": 0}


@pytest.fixture(scope="module", autouse=True)
def final_count(request: pytest.FixtureRequest) -> Any:
    yield
    line = f"authorization-code attacks: {TALLY['attempts']} attempts, {TALLY['accepted']} accepted"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    assert TALLY["accepted"] == 0, line


def attempt(refused: bool, what: object) -> None:
    """Count one attack; it must have been refused."""
    TALLY["attempts"] += 1
    if not refused:
        TALLY["accepted"] += 1
    assert refused, what


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def hidden(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


def answer(response: httpx.Response, redirect_uri: str = REDIRECT) -> dict[str, str]:
    """The authorization response's parameters; every one names this issuer in ``iss`` (RFC 9207 section 2)."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    values = parse_qs(urlsplit(location).query)
    assert values.get("iss") == [ISSUER_URL], location
    return {k: v[0] for k, v in values.items()}


def error_page(response: httpx.Response) -> bool:
    return response.status_code == 400 and "location" not in response.headers


@contextlib.asynccontextmanager
async def browser(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services=services)
    app.state.services = services
    transport = httpx.ASGITransport(app=app, client=("198.51.100.20", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as http:
        yield http


async def register(client: httpx.AsyncClient, uris: tuple[str, ...] = (REDIRECT,), **extra: Any) -> dict[str, Any]:
    body = {"redirect_uris": list(uris), "token_endpoint_auth_method": "none", "client_name": "Test"} | extra
    return ok(await client.post(paths.REGISTER, json=body), 201)


async def owner(client: httpx.AsyncClient, services: Services, email: str) -> dict[str, Any]:
    """An owner logged in through the pages (session in ``client``'s jar) owning a quickstart tenant."""
    for path in (paths.SIGNUP, paths.LOGIN):
        page = await client.get(path)
        form = hidden(page.text) | {"email": email, "password": PASSWORD}
        done = await client.post(path, data=form, headers={"Origin": ISSUER_URL})
        assert done.status_code == 303, done.text
    tenant = await quickstart(client, f"tenant-of-{email}")
    session = await services.owners.session(client.cookies.get("agentauth_session"))
    assert session is not None
    await services.owners.claim_tenant(session, tenant["api_key"], RequestContext())
    return {"tenant": tenant, "id": session.owner.id, "csrf": session.csrf_token}


def query(client_id: str, challenge: str, **extra: Any) -> dict[str, Any]:
    base = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "st",
            "code_challenge": challenge, "code_challenge_method": "S256"}  # fmt: skip
    return {k: v for k, v in (base | extra).items() if v is not None}


async def consent_form(client: httpx.AsyncClient, params: dict[str, Any], act_as: str = "owner") -> list[Any]:
    """The consent form's fields as the page gave them, decision allow, acting as the owner (or agent)."""
    page = await client.get(paths.AUTHORIZE, params=params)
    assert page.status_code == 200, page.text
    choice = re.findall(rf'name="act_as" value="({act_as}:[^"]+)"', page.text)[0]
    return [*HIDDEN.findall(page.text), ("decision", "allow"), ("act_as", choice)]


async def post_form(client: httpx.AsyncClient, pairs: list[Any], **headers: str) -> httpx.Response:
    fields = [(k, html.unescape(v)) for k, v in pairs]
    body = str(httpx.QueryParams(fields))
    sent = {"Origin": ISSUER_URL, "content-type": "application/x-www-form-urlencoded"} | headers
    return await client.post(paths.AUTHORIZE, content=body, headers=sent)


async def code_for(client: httpx.AsyncClient, params: dict[str, Any], act_as: str = "owner") -> str:
    got = answer(await post_form(client, await consent_form(client, params, act_as)), params["redirect_uri"])
    assert "code" in got and got["state"] == params["state"], got
    return got["code"]


def redeem_form(code: str, verifier: str, client_id: str, redirect_uri: str = REDIRECT) -> dict[str, str]:
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier, "client_id": client_id}  # fmt: skip


def replace(pairs: list[Any], **values: str | None) -> list[Any]:
    kept = [(k, v) for k, v in pairs if k not in values]
    return kept + [(k, v) for k, v in values.items() if v is not None]


async def test_open_redirects(client: httpx.AsyncClient, services: Services) -> None:
    loopback = (await register(client))["client_id"]
    web = (await register(client, (WEB,)))["client_id"]
    await owner(client, services, "ann@example.com")
    _, challenge = pkce()
    good = query(loopback, challenge)
    form = await consent_form(client, good)
    bad_loopback = [
        "https://evil.example/callback", REDIRECT + "/x", REDIRECT + "?x=1", REDIRECT + "#frag", REDIRECT + "/",
        "http://localhost:9000/callback", "http://[::1]:9000/callback", "https://127.0.0.1:9000/callback",
        "http://127.0.0.1:9000/Callback", "http://127.0.0.1:9000/callback/../callback",
        "http://127.0.0.1:9000@evil.example/callback", "http://evil.example@127.0.0.1:9000/callback",
        "http://user:pw@127.0.0.1:9000/callback", "http://127.0.0.1.evil.example:9000/callback",
        "http://127.0.0.1:9000/%63allback", "http://0x7f000001:9000/callback", "http://2130706433:9000/callback",
        "http://127.1:9000/callback", " " + REDIRECT, REDIRECT + " ", "http://127.0.0.1:x/callback",
        "\t" + REDIRECT, "\x00" + REDIRECT, "http://127.0.0.1:9000/call\nback", "http://127.0.0.1:9000/call\tback",
        "http://127.0.0.1:9000/callback\r\nSet-Cookie: x=1",
    ]  # fmt: skip
    bad_web = [
        "http://127.0.0.1:4444/cb", "http://127.0.0.1/cb", "http://localhost/cb", WEB + "/extra", WEB + "?next=evil",
        WEB + "#x", WEB + "/", "https://app.example.com:8443/cb", "https://app.example.com.evil.example/cb",
        "https://user@app.example.com/cb", "https://app.example.com@evil.example/cb", "https://APP.example.com/cb",
        "https://app.example.com/x/../cb", "http://app.example.com/cb", "https://app.example.com/CB",
    ]  # fmt: skip
    before = await snapshot(services)
    for client_id, uris in ((loopback, bad_loopback), (web, bad_web)):
        for uri in uris:
            page = await client.get(paths.AUTHORIZE, params=query(client_id, challenge, redirect_uri=uri))
            attempt(error_page(page), ("GET", client_id, uri))
    # The consent form tampered with: another redirect URI, or none for a client that must be named one.
    for uri in [*bad_loopback, None]:
        tampered = replace(form, redirect_uri=uri) if uri is not None else replace(form, redirect_uri=None)
        if uri is None:
            tampered = [*replace(tampered, client_id=web), ("redirect_uri", "https://evil.example/cb")]
        posted = await post_form(client, tampered)
        attempt(error_page(posted), ("POST", uri))
    # An unknown client, an empty client_id, two client_ids, two redirect_uris.
    for params in (query("cli_unknown", challenge), query("", challenge),
                   [*query(loopback, challenge).items(), ("client_id", web)],
                   [*query(loopback, challenge).items(), ("redirect_uri", "https://evil.example/cb")]):  # fmt: skip
        page = await client.get(paths.AUTHORIZE, params=params)
        attempt(error_page(page), params)
    await assert_unchanged(services, before, "after open-redirect attempts")
    # A loopback registration may use another port (RFC 8252 section 7.3) - the one non-exact match allowed.
    ported = await client.get(
        paths.AUTHORIZE, params=query(loopback, challenge, redirect_uri="http://127.0.0.1:9/callback")
    )
    assert ported.status_code == 200


async def test_code_replay_revokes_the_first_tokens(client: httpx.AsyncClient, services: Services) -> None:
    client_id = (await register(client, grant_types=["authorization_code", "refresh_token"]))["client_id"]
    me = await owner(client, services, "bo@example.com")
    verifier, challenge = pkce()
    code = await code_for(client, query(client_id, challenge), act_as="agent")
    form = redeem_form(code, verifier, client_id)
    tokens = ok(await client.post(TOKEN, data=form))
    for n in range(3):
        again = await client.post(TOKEN, data=form)
        attempt(again.status_code == 400 and again.json()["error"] == "invalid_grant", ("replay", n))
        assert "access_token" not in again.text
    seen = ok(await client.post(INTROSPECT, data={"token": tokens["access_token"],
                                                 "client_secret": me["tenant"]["api_key"]}))  # fmt: skip
    assert seen["active"] is False
    refreshed = await client.post(TOKEN, data={"grant_type": "refresh_token", "client_id": client_id,
                                              "refresh_token": tokens["refresh_token"]})  # fmt: skip
    attempt(refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant", "refresh after replay")
    used = await client.get(paths.AGENTS, headers=bearer(tokens["access_token"]))
    attempt(used.status_code == 401, "revoked token used")


async def test_code_shown_by_another_client(client: httpx.AsyncClient, services: Services) -> None:
    victim = (await register(client))["client_id"]
    thief = (await register(client))["client_id"]
    confidential = await register(client, token_endpoint_auth_method="client_secret_post")
    await owner(client, services, "cat@example.com")
    verifier, challenge = pkce()
    code = await code_for(client, query(victim, challenge))
    before = await snapshot(services)
    own_secret = {"client_secret": confidential["client_secret"]}
    for form in (redeem_form(code, verifier, thief), redeem_form(code, verifier, "cli_unknown"),
                 redeem_form(code, verifier, confidential["client_id"]) | own_secret,
                 redeem_form(code, verifier, "agt_does_not_exist"),
                 {k: v for k, v in redeem_form(code, verifier, victim).items() if k != "client_id"}):  # fmt: skip
        refused = await client.post(TOKEN, data=form)
        attempt(refused.status_code in (400, 401) and "access_token" not in refused.text, form.get("client_id"))
    await assert_unchanged(services, before, "after another client showed the code")


async def test_pkce_downgrades(client: httpx.AsyncClient, services: Services) -> None:
    client_id = (await register(client))["client_id"]
    await owner(client, services, "dan@example.com")
    verifier, challenge = pkce()
    form = await consent_form(client, query(client_id, challenge))
    before = await snapshot(services)
    # At the authorization endpoint: back to the client with invalid_request, and no code.
    downgrades: list[dict[str, Any]] = [
        {"code_challenge_method": "plain"}, {"code_challenge_method": None}, {"code_challenge_method": "s256"},
        {"code_challenge": None, "code_challenge_method": None}, {"code_challenge": None}, {"code_challenge": "short"},
        {"code_challenge": challenge[:42]}, {"code_challenge": challenge + "A"}, {"code_challenge": "+" * 43},
        {"code_challenge": verifier, "code_challenge_method": "plain"},
    ]  # fmt: skip
    for bad in downgrades:
        got = answer(await client.get(paths.AUTHORIZE, params=query(client_id, challenge) | bad))
        attempt(got.get("error") == "invalid_request" and "code" not in got, ("GET", bad))
        tampered = replace(form, **{k: (v if v is not None else None) for k, v in bad.items()})
        if "code_challenge_method" in bad and bad["code_challenge_method"] is None:
            tampered = [(k, v) for k, v in tampered if k != "code_challenge_method"]
        got = answer(await post_form(client, tampered))
        attempt(got.get("error") == "invalid_request" and "code" not in got, ("POST", bad))
    await assert_unchanged(services, before, "after PKCE downgrades at the authorization endpoint")
    code = await code_for(client, query(client_id, challenge))
    other_verifier, other_challenge = pkce()
    await code_for(client, query(client_id, other_challenge))  # another request, whose verifier is other_verifier
    before = await snapshot(services)
    redeem = redeem_form(code, verifier, client_id)
    for bad_verifier in (None, "", other_verifier, challenge, verifier[:42], verifier + "x" * 100, verifier[:-1] + "!",
                         pkce()[0], verifier.upper() if verifier.upper() != verifier else verifier + "A"):  # fmt: skip
        data = {k: v for k, v in redeem.items() if k != "code_verifier"}
        if bad_verifier is not None:
            data["code_verifier"] = bad_verifier
        refused = await client.post(TOKEN, data=data)
        attempt(refused.status_code == 400 and refused.json()["error"] in ("invalid_request", "invalid_grant"),
                bad_verifier)  # fmt: skip
    await assert_unchanged(services, before, "after PKCE attacks at the token endpoint")


async def test_expired_code(client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    client_id = (await register(client))["client_id"]
    await owner(client, services, "eli@example.com")
    verifier, challenge = pkce()
    code = await code_for(client, query(client_id, challenge))
    before = await snapshot(services)
    real = services.core.clock
    for late in (timedelta(seconds=60), timedelta(seconds=61), timedelta(hours=1)):
        monkeypatch.setattr(services.core, "clock", lambda late=late: real() + late)
        refused = await client.post(TOKEN, data=redeem_form(code, verifier, client_id))
        attempt(refused.status_code == 400 and refused.json()["error"] == "invalid_grant", late)
    monkeypatch.setattr(services.core, "clock", real)
    await assert_unchanged(services, before, "after an expired code")


async def test_consent_csrf_and_no_session(client: httpx.AsyncClient, services: Services) -> None:
    client_id = (await register(client))["client_id"]
    await owner(client, services, "fox@example.com")
    _, challenge = pkce()
    form = await consent_form(client, query(client_id, challenge))
    async with browser(services) as other:
        theirs = await owner(other, services, "gil@example.com")
    before = await snapshot(services)
    for token in (None, "", "forged", theirs["csrf"], secrets.token_urlsafe(32)):
        posted = await post_form(client, replace(form, csrf_token=token))
        attempt(posted.status_code == 403 and "location" not in posted.headers, token)
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Origin": "http://testserver:8080"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):  # fmt: skip
        posted = await post_form(client, form, **headers)
        attempt(posted.status_code == 403 and "location" not in posted.headers, headers)
    # The same form from a browser with no session, or a forged one.
    async with browser(services) as anonymous:
        for cookie in (None, secrets.token_urlsafe(32)):
            extra = {"Cookie": f"agentauth_session={cookie}"} if cookie else {}
            posted = await post_form(anonymous, form, **extra)
            attempt(error_page(posted), ("no session", cookie))
    # Acting as another owner's agent: not one of the choices.
    foreign = f"agent:{theirs['tenant']['agent']['id']}"
    for act_as in (foreign, f"owner:{theirs['tenant']['agent']['id']}", "agent:", "owner:x"):
        posted = await post_form(client, replace(form, act_as=act_as))
        attempt(error_page(posted), act_as)
    page = await client.get(paths.AUTHORIZE, params=query(client_id, challenge))
    assert theirs["tenant"]["agent"]["id"] not in page.text  # nor is it shown
    await assert_unchanged(services, before, "after consent CSRF attempts")


async def test_session_fixation_at_login(client: httpx.AsyncClient, services: Services) -> None:
    client_id = (await register(client))["client_id"]
    await owner(client, services, "hex@example.com")
    _, challenge = pkce()
    planted = secrets.token_urlsafe(32)
    async with browser(services) as victim:
        start = await victim.get(paths.AUTHORIZE, params=query(client_id, challenge))
        assert start.status_code == 303 and start.headers["location"].startswith(paths.LOGIN + "?next=")
        page = await victim.get(start.headers["location"])
        form = hidden(page.text) | {"email": "hex@example.com", "password": PASSWORD}
        cookies = f"agentauth_presession={victim.cookies['agentauth_presession']}; agentauth_session={planted}"
        done = await victim.post(paths.LOGIN, data=form, headers={"Origin": ISSUER_URL, "Cookie": cookies})
        assert done.status_code == 303 and done.headers["location"].startswith(paths.AUTHORIZE + "?")
    attempt(await services.owners.session(planted) is None, "the planted session value became a session")
    async with browser(services) as attacker:
        before = await snapshot(services)
        seen = await attacker.get(paths.AUTHORIZE, params=query(client_id, challenge),
                                  headers={"Cookie": f"agentauth_session={planted}"})  # fmt: skip
        attempt(seen.status_code == 303 and seen.headers["location"].startswith(paths.LOGIN), "attacker's consent")
        await assert_unchanged(services, before, "after the fixation attempt")


async def test_resource_confusion(client: httpx.AsyncClient, services: Services) -> None:
    client_id = (await register(client))["client_id"]
    me = await owner(client, services, "ivy@example.com")
    mine = bearer(me["tenant"]["access_token"])
    scopes = [{"name": "files.read"}, {"name": "files.write"}]
    for identifier in (FILES, BILLING):
        body = {"identifier": identifier, "name": identifier, "kind": "mcp", "scopes": scopes}
        ok(await client.post("/api/v1/resource-servers", json=body, headers=mine), 201)
    stranger = await quickstart(client, "stranger")
    foreign = "https://stranger.example.com/api"
    body = {"identifier": foreign, "name": "theirs", "kind": "mcp", "scopes": [{"name": "files.read"}]}
    theirs = bearer(stranger["access_token"])
    created = ok(await client.post("/api/v1/resource-servers", json=body, headers=theirs), 201)
    assert created["access"] == "own_tenant"
    verifier, challenge = pkce()
    before = await snapshot(services)
    for resource in (foreign, "https://files.example.com/mcp/", "https://FILES.example.com/mcp", "not a url",
                     FILES + "#frag"):  # fmt: skip
        for act_as in ("owner", "agent"):
            params = query(client_id, challenge, resource=resource)
            page = await client.get(paths.AUTHORIZE, params=params)
            if page.status_code == 303:  # refused before the consent page
                got = answer(page)
            else:
                got = answer(await post_form(client, await consent_form(client, params, act_as)))
            attempt(got.get("error") in ("invalid_target", "invalid_request") and "code" not in got, (resource, act_as))
    await assert_unchanged(services, before, "after asking for resources not this tenant's")
    code = await code_for(client, query(client_id, challenge, resource=FILES))
    before = await snapshot(services)
    for other in (BILLING, foreign, ISSUER_URL):
        refused = await client.post(TOKEN, data=redeem_form(code, verifier, client_id) | {"resource": other})
        attempt(refused.status_code == 400 and refused.json()["error"] == "invalid_target", other)
    await assert_unchanged(services, before, "after asking the token endpoint for a resource not consented")
    token = ok(await client.post(TOKEN, data=redeem_form(code, verifier, client_id)))["access_token"]
    files = offline_verifier(services.jwks(), issuer_url=ISSUER_URL, resource=FILES, check_status=False)
    assert files.verify_access_token(token).scopes <= {"files.read", "files.write"}
    for resource in (BILLING, foreign, ISSUER_URL):
        verifier_b = offline_verifier(services.jwks(), issuer_url=ISSUER_URL, resource=resource, check_status=False)
        with pytest.raises(VerificationError) as refused_b:
            verifier_b.verify_access_token(token)
        attempt(refused_b.value.code == "invalid_audience", resource)
    used = await client.get(paths.AGENTS, headers=bearer(token))  # nor is it a token for AgentAuth's own API
    attempt(used.status_code == 401, "a FILES token on AgentAuth's API")


async def test_iss_on_every_authorization_response(client: httpx.AsyncClient, services: Services) -> None:
    metadata = ok(await client.get("/.well-known/oauth-authorization-server"))
    assert metadata["authorization_response_iss_parameter_supported"] is True and metadata["issuer"] == ISSUER_URL
    client_id = (await register(client))["client_id"]
    _, challenge = pkce()
    answers = [answer(await client.get(paths.AUTHORIZE, params=query(client_id, challenge, prompt="none")))]
    assert answers[0]["error"] == "login_required"
    await owner(client, services, "jay@example.com")
    for extra in ({"prompt": "none"}, {"response_type": "token"}, {"code_challenge_method": "plain"},
                  {"request": "eyJ.x.y"}, {"prompt": "none login"}):  # fmt: skip
        answers.append(answer(await client.get(paths.AUTHORIZE, params=query(client_id, challenge, **extra))))
    form = await consent_form(client, query(client_id, challenge))
    answers.append(answer(await post_form(client, replace(form, decision="deny"))))
    answers.append(answer(await post_form(client, form)))
    assert [a.get("error", "code" if "code" in a else "?") for a in answers] == [
        "login_required", "consent_required", "unsupported_response_type", "invalid_request",
        "request_not_supported", "invalid_request", "access_denied", "code",
    ]  # fmt: skip
    assert all(a["iss"] == ISSUER_URL and a["state"] == "st" for a in answers)


async def test_client_authentication_tricks(client: httpx.AsyncClient, services: Services) -> None:
    public = (await register(client))["client_id"]
    confidential = await register(client, token_endpoint_auth_method="client_secret_basic")
    secret_id, secret = confidential["client_id"], confidential["client_secret"]
    await owner(client, services, "kit@example.com")
    verifier, challenge = pkce()
    public_code = await code_for(client, query(public, challenge))
    secret_code = await code_for(client, query(secret_id, challenge))
    before = await snapshot(services)
    basic = httpx.BasicAuth(public, "made-up-secret")
    for data, auth in (
        (redeem_form(public_code, verifier, public) | {"client_secret": "made-up-secret"}, None),
        ({k: v for k, v in redeem_form(public_code, verifier, public).items() if k != "client_id"}, basic),
        (redeem_form(secret_code, verifier, secret_id), None),
        (redeem_form(secret_code, verifier, secret_id) | {"client_secret": secret + "x"}, None),
        (redeem_form(secret_code, verifier, secret_id) | {"client_secret": ""}, None),
        ({k: v for k, v in redeem_form(secret_code, verifier, secret_id).items() if k != "client_id"},
         httpx.BasicAuth(secret_id, "wrong")),
        (redeem_form(secret_code, verifier, public), None),
    ):  # fmt: skip
        refused = await client.post(TOKEN, data=data, auth=auth)
        attempt(refused.status_code in (400, 401) and "access_token" not in refused.text, data.get("client_id"))
        if data.get("client_id") == secret_id or auth is not None:
            assert_error(refused, 401, "invalid_client")
    await assert_unchanged(services, before, "after client authentication tricks")
    # The rightful redemptions still work: the refusals consumed neither code.
    ok(await client.post(TOKEN, data=redeem_form(public_code, verifier, public)))
    form = {k: v for k, v in redeem_form(secret_code, verifier, secret_id).items() if k != "client_id"}
    ok(await client.post(TOKEN, data=form, auth=httpx.BasicAuth(secret_id, secret)))


async def test_prompt_none_without_login(client: httpx.AsyncClient, services: Services) -> None:
    client_id = (await register(client))["client_id"]
    _, challenge = pkce()
    before = await snapshot(services)
    got = answer(await client.get(paths.AUTHORIZE, params=query(client_id, challenge, prompt="none")))
    attempt(got["error"] == "login_required" and "code" not in got, got)
    forged = await client.get(paths.AUTHORIZE, params=query(client_id, challenge, prompt="none"),
                              headers={"Cookie": f"agentauth_session={secrets.token_urlsafe(32)}"})  # fmt: skip
    got = answer(forged)
    attempt(got["error"] == "login_required" and "code" not in got, got)
    await assert_unchanged(services, before, "after prompt=none without a login")
