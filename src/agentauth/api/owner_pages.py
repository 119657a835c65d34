"""Owner account pages (issue 14 item 4): sign-up, login, logout and the account page (tenants and agents;
create a tenant, claim one with its root's API key). Server-rendered forms, no JavaScript.

CSRF: before login a form carries a token derived (keyed hash) from a random pre-session cookie - double submit,
so a page elsewhere can neither read nor forge it; after login, the session's own token. Every POST also checks
``Origin`` (and ``Sec-Fetch-Site``) when the browser sends them. The session cookie is HttpOnly, SameSite=Lax,
Secure when the issuer is https. ``next`` (where the login returns to) must be a path on this server - never an
absolute URL, ``//host`` or a backslash trick - so the login cannot become an open redirect.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from agentauth import paths
from agentauth.api.deps import request_context
from agentauth.api.pages import esc, form_pairs, hidden, message_page, page, redirect
from agentauth.bootstrap import Services
from agentauth.errors import AgentAuthError, RateLimited
from agentauth.issuer.owners import OwnerSession

router = APIRouter(tags=["owners"], include_in_schema=False)

SESSION_COOKIE = "agentauth_session"
PRE_COOKIE = "agentauth_presession"


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this server, else the account page."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return paths.ACCOUNT
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return paths.ACCOUNT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return paths.ACCOUNT
    return value


def _secure(request: Request) -> bool:
    return _services(request).settings.issuer_url.startswith("https://")


async def current_owner(request: Request) -> OwnerSession | None:
    """The owner whose live session cookie this request carries, or None."""
    return await _services(request).owners.session(request.cookies.get(SESSION_COOKIE))


def _same_origin(request: Request) -> bool:
    issuer = urlsplit(_services(request).settings.issuer_url)
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{issuer.scheme}://{issuer.netloc}":
        return False
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


def _forbidden(text: str = "the form was not sent from this site, or it expired: reload the page") -> Response:
    return message_page("Request refused", text, 403)


def check_csrf(request: Request, form: dict[str, str], owner: OwnerSession) -> Response | None:
    """None when a logged-in form post is this session's own; else the 403 page to answer with."""
    if not _same_origin(request) or not owner.csrf_matches(form.get("csrf_token")):
        return _forbidden()
    return None


def _pre_token(request: Request, pre: str) -> str:
    return _services(request).core.hasher.hash(f"owner-form-csrf:{pre}")


def _with_pre_session(request: Request, response: Response, pre: str) -> Response:
    if request.cookies.get(PRE_COOKIE) != pre:
        response.set_cookie(
            PRE_COOKIE, pre, max_age=3600, httponly=True, samesite="lax", secure=_secure(request), path="/"
        )
    return response


def _credentials_form(request: Request, path: str, title: str, next_path: str, error: str = "") -> Response:
    pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(32)
    other = (paths.SIGNUP, "Create an account") if path == paths.LOGIN else (paths.LOGIN, "Log in instead")
    body = (
        f"<h1>{esc(title)}</h1>"
        + (f'<p class="error" role="alert">{esc(error)}</p>' if error else "")
        + f'<form method="post" action="{esc(path)}">{hidden("csrf_token", _pre_token(request, pre))}'
        f"{hidden('next', next_path)}"
        '<label>Email <input type="email" name="email" autocomplete="username" required></label>'
        '<label>Password <input type="password" name="password" minlength="10" required autocomplete="'
        + ("current-password" if path == paths.LOGIN else "new-password")
        + f'"></label><button type="submit">{esc(title)}</button></form>'
        f'<p><a href="{esc(other[0])}?{urlencode({"next": next_path})}">{esc(other[1])}</a></p>'
    )
    status = 401 if error else 200
    return _with_pre_session(request, page(title, body, status=status), pre)


def _logged_in(request: Request, token: str, to: str) -> Response:
    response = redirect(to)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=_services(request).settings.owner_session_max_seconds, httponly=True,
        samesite="lax", secure=_secure(request), path="/",
    )  # fmt: skip
    response.delete_cookie(PRE_COOKIE, path="/")
    return response


async def _pre_form(request: Request) -> dict[str, str] | None:
    """A pre-login form post that is this browser's own (double submit, Origin); None otherwise."""
    pairs = await form_pairs(request)
    pre = request.cookies.get(PRE_COOKIE)
    if pairs is None or not pre or not _same_origin(request):
        return None
    form = dict(pairs)
    expected = _pre_token(request, pre)
    presented = form.get("csrf_token", "")
    if not secrets.compare_digest(presented.encode(), expected.encode()):
        return None
    return form


@router.get(paths.LOGIN)
async def login_page(request: Request) -> Response:
    return _credentials_form(request, paths.LOGIN, "Log in", safe_next(request.query_params.get("next")))


async def _credentials_post(request: Request, path: str, title: str, signup: bool) -> Response:
    """A login or sign-up form post (sign-up logs in too): the session cookie and the way on, or the form again
    with the reason."""
    form = await _pre_form(request)
    if form is None:
        return _forbidden()
    next_path = safe_next(form.get("next"))
    owners, ctx = _services(request).owners, request_context(request)
    email, password = form.get("email", ""), form.get("password", "")
    try:
        if signup:
            await owners.signup(email, password, ctx)
        done = await owners.login(email, password, ctx)
    except RateLimited as exc:
        refused = message_page("Too many attempts", exc.description, 429)
        refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    except AgentAuthError as exc:
        return _credentials_form(request, path, title, next_path, error=exc.description)
    return _logged_in(request, done.session_token, next_path)


@router.post(paths.LOGIN)
async def login(request: Request) -> Response:
    return await _credentials_post(request, paths.LOGIN, "Log in", signup=False)


@router.get(paths.SIGNUP)
async def signup_page(request: Request) -> Response:
    if _services(request).settings.owner_signup != "open":
        return message_page("Sign-up is closed", "ask this server's operator for an account", 403)
    return _credentials_form(request, paths.SIGNUP, "Create an account", safe_next(request.query_params.get("next")))


@router.post(paths.SIGNUP)
async def signup(request: Request) -> Response:
    return await _credentials_post(request, paths.SIGNUP, "Create an account", signup=True)


async def _session_form(request: Request) -> tuple[OwnerSession, dict[str, str]] | Response:
    owner = await current_owner(request)
    if owner is None:
        return redirect(f"{paths.LOGIN}?{urlencode({'next': paths.ACCOUNT})}")
    pairs = await form_pairs(request)
    form = dict(pairs) if pairs is not None else {}
    refused = check_csrf(request, form, owner)
    return refused if refused is not None else (owner, form)


@router.post(paths.LOGOUT)
async def logout(request: Request) -> Response:
    checked = await _session_form(request)
    if isinstance(checked, Response):
        return checked
    await _services(request).owners.logout(request.cookies.get(SESSION_COOKIE), request_context(request))
    response = redirect(paths.LOGIN)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def _account(request: Request, owner: OwnerSession, notice: str = "", status: int = 200) -> Response:
    agents = await _services(request).owners.agents(owner.owner.id)
    rows = "".join(
        f"<tr><td>{esc(a.name)}</td><td>{'tenant root' if a.parent_id is None else esc(a.agent_type)}</td>"
        f"<td><code>{esc(a.id)}</code></td><td><code>{esc(a.did)}</code></td></tr>"
        for a in agents
    )
    csrf = hidden("csrf_token", owner.csrf_token)
    body = (
        f"<h1>Your account</h1><p>Logged in as <strong id=owner-email>{esc(owner.owner.email)}</strong> - "
        f'<a href="{paths.CONSOLE}">open the console</a></p>{notice}'
        + (
            "<h2>Your agents</h2><table id=agents><tr><th>Name</th><th>Kind</th><th>Id</th><th>DID</th></tr>"
            f"{rows}</table>"
            if agents
            else "<p id=no-tenants>You own no tenant yet.</p>"
        )
        + f'<h2>Create a tenant</h2><form method="post" action="{paths.ACCOUNT}/tenants">{csrf}'
        '<label>Name <input type="text" name="name" required maxlength="100"></label>'
        '<button type="submit">Create tenant</button></form>'
        f'<h2>Claim a tenant</h2><form method="post" action="{paths.ACCOUNT}/claim">{csrf}'
        '<label>The tenant root agent\'s API key <input type="password" name="api_key" required></label>'
        '<button type="submit">Claim tenant</button></form>'
        f'<form method="post" action="{paths.LOGOUT}">{csrf}<button type="submit">Log out</button></form>'
    )
    return page("Your account", body, status=status)


@router.get(paths.ACCOUNT)
async def account(request: Request) -> Response:
    owner = await current_owner(request)
    if owner is None:
        return redirect(f"{paths.LOGIN}?{urlencode({'next': paths.ACCOUNT})}")
    return await _account(request, owner)


@router.post(paths.ACCOUNT + "/tenants")
async def create_tenant(request: Request) -> Response:
    checked = await _session_form(request)
    if isinstance(checked, Response):
        return checked
    owner, form = checked
    try:
        made = await _services(request).owners.create_tenant(owner, form.get("name", ""), request_context(request))
    except (AgentAuthError, ValueError) as exc:
        text = exc.description if isinstance(exc, AgentAuthError) else "the name is not valid"
        return await _account(request, owner, f'<p class="error" role="alert">{esc(text)}</p>', status=400)
    notice = (
        f'<p role="status">Tenant <strong>{esc(made.agent.name)}</strong> '
        f"(<code id=tenant-id>{esc(made.agent.id)}</code>) created. Its root agent's API key, "
        f"shown this once - store it now:</p><p><code id=api-key>{esc(made.api_key)}</code></p>"
    )
    return await _account(request, owner, notice)


@router.post(paths.ACCOUNT + "/claim")
async def claim_tenant(request: Request) -> Response:
    checked = await _session_form(request)
    if isinstance(checked, Response):
        return checked
    owner, form = checked
    try:
        tenant = await _services(request).owners.claim_tenant(owner, form.get("api_key", ""), request_context(request))
    except AgentAuthError as exc:
        text = "that is not a valid API key" if exc.error == "invalid_client" else exc.description
        return await _account(request, owner, f'<p class="error" role="alert">{esc(text)}</p>', status=400)
    return await _account(request, owner, f'<p role="status">Tenant <code>{esc(tenant)}</code> is yours now.</p>')
