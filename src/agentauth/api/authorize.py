"""The authorization endpoint (``paths.AUTHORIZE``; RFC 6749 section 3.1): the consent page of the authorization
code flow, for people, server-rendered and usable without JavaScript.

GET checks the request (``AuthorizationService.check``): a problem with the client or its redirect URI is shown
here and never redirected; any other problem goes back to the client. Without an owner session the browser goes
to the login page and comes back. The consent page names the client (name, logo, its client_id and where it sends
the browser back), the resources and scopes, and lets the owner choose which of their agents the client will act
as - or the owner themself in one of their tenants. POST (the owner's decision; CSRF token and Origin checked)
checks the request again - nothing the browser carried is trusted - and redirects with the code, or with
``access_denied``, and RFC 9207's ``iss`` either way.

Like the token endpoint, an OAuth-protocol endpoint: it runs no operation of ``issuer/operations.py``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from agentauth import paths
from agentauth.api import owner_pages
from agentauth.api.deps import request_context
from agentauth.api.pages import esc, form_pairs, page, redirect
from agentauth.bootstrap import Services
from agentauth.errors import AgentAuthError
from agentauth.issuer.authorization_codes import AuthorizationRequest, PageError, RedirectError
from agentauth.issuer.scopes import SCOPES

router = APIRouter(tags=["auth"])

MAX_QUERY_CHARS = 16_384


def _error_page(description: str) -> HTMLResponse:
    body = (
        "<h1>This authorization request cannot be used</h1>"
        f"<p>{esc(description)}</p><p class=muted>Nothing was sent to the application. "
        "Go back to the application and start again.</p>"
    )
    return page("Authorization error", body, status=400)


def _params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Authorization parameters: each once, except ``resource`` (RFC 8707: may repeat), kept as a list; a
    parameter given twice is kept as a list too, which ``check`` refuses (RFC 6749 section 3.1)."""
    params: dict[str, Any] = {}
    for name, value in pairs:
        if name in params:
            existing = params[name]
            params[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            params[name] = [value] if name == "resource" else value
    return params


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


async def _check(services: Services, params: dict[str, Any]) -> AuthorizationRequest | Response:
    try:
        return await services.authorization.check(params)
    except PageError as exc:
        return _error_page(exc.description)
    except RedirectError as exc:
        return redirect(exc.location)


@router.get(paths.AUTHORIZE, summary="Authorization endpoint (RFC 6749 section 3.1): login and consent")
async def authorize(request: Request) -> Response:
    services: Services = request.app.state.services
    if len(request.url.query) > MAX_QUERY_CHARS:
        return _error_page("the authorization request is too long")
    checked = await _check(services, _params(parse_qsl(request.url.query, keep_blank_values=True)))
    if isinstance(checked, Response):
        return checked
    owner = await owner_pages.current_owner(request)
    if owner is None:
        if "none" in checked.prompt:
            return redirect(services.authorization.error(checked, "login_required", "the owner is not logged in"))
        back = f"{paths.AUTHORIZE}?{request.url.query}"
        return redirect(f"{paths.LOGIN}?{urlencode({'next': back})}")
    if "none" in checked.prompt:
        return redirect(services.authorization.error(checked, "consent_required", "the owner must choose an agent"))
    return await _consent_page(services, checked, owner)


async def _choices(services: Services, owner_id: str) -> list[tuple[str, Any, bool, str]]:
    """(form value, agent, agent acts, label) of everything the owner may let a client act as: each of their
    agents, and themself in each of their tenants (the tenant's root agent, ``act`` left out)."""
    agents = await services.owners.agents(owner_id)
    out = []
    for agent in agents:
        if agent.parent_id is None:
            out.append((f"owner:{agent.id}", agent, False, f"Myself, in tenant “{agent.name}”"))
    for agent in agents:
        label = f"Agent “{agent.name}” ({agent.agent_type}, {agent.did[:24]}…)"
        out.append((f"agent:{agent.id}", agent, True, label))
    return out


async def _consent_page(services: Services, request: AuthorizationRequest, owner: Any) -> Response:
    client = request.client
    choices = await _choices(services, owner.owner.id)
    name = client.client_name or client.client_id
    resources = request.resources or (f"{services.settings.issuer_url}{paths.API_V1}",)
    logo = (
        f'<img src="{esc(client.logo_uri)}" alt="" width="48" height="48" referrerpolicy="no-referrer">'
        if client.logo_uri and client.logo_uri.startswith("https://")
        else ""
    )
    parts = [
        f"<h1>{logo} {esc(name)} wants access</h1>",
        f"<p class=muted>Client: <code>{esc(client.client_id)}</code><br>"
        f"After your answer the browser goes to <code>{esc(_origin(request.redirect_uri))}</code></p>",
        "<p>For: " + ", ".join(f"<code>{esc(r)}</code>" for r in resources) + "</p>",
    ]
    if not choices:
        parts.append(
            f'<p>You own no tenant yet. <a href="{paths.ACCOUNT}">Create or claim one</a>, then come back.</p>'
        )
        return page("Authorize", "".join(parts))
    asked = request.scope.split() if request.scope else []
    parts.append(
        "<p>Scopes: "
        + (", ".join(f"<code>{esc(s)}</code> <span class=muted>{esc(SCOPES.get(s, ''))}</span>"
                     for s in asked) or "<span class=muted>everything the resource defines</span>")
        + "</p>"
    )  # fmt: skip
    fields = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in _flat(request.params()))
    options = "".join(
        f'<label><input type="radio" name="act_as" value="{esc(value)}"{" checked" if n == 0 else ""}>'
        f" {esc(label)}</label>"
        for n, (value, _agent, _acts, label) in enumerate(choices)
    )
    parts.append(
        f'<form method="post" action="{paths.AUTHORIZE}">{fields}'
        f'<input type="hidden" name="csrf_token" value="{esc(owner.csrf_token)}">'
        f"<fieldset><legend>Act as</legend>{options}</fieldset>"
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>'
    )
    return page("Authorize", "".join(parts), form_targets=(_origin(request.redirect_uri),))


def _flat(params: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, item) for k, v in params.items() for item in (v if isinstance(v, list) else [v])]


@router.post(paths.AUTHORIZE, summary="The owner's decision on an authorization request", include_in_schema=False)
async def decide(request: Request) -> Response:
    services: Services = request.app.state.services
    pairs = await form_pairs(request)
    if pairs is None:
        return _error_page("the form is too long or not a form")
    form = {k: v for k, v in pairs if k in ("csrf_token", "decision", "act_as")}
    owner = await owner_pages.current_owner(request)
    if owner is None:
        return _error_page("your session has ended: log in and start again from the application")
    refusal = owner_pages.check_csrf(request, form, owner)
    if refusal is not None:
        return refusal
    params = _params([(k, v) for k, v in pairs if k not in form])
    checked = await _check(services, params)
    if isinstance(checked, Response):
        return checked
    if form.get("decision") != "allow":
        return redirect(services.authorization.denied(checked))
    chosen = next((c for c in await _choices(services, owner.owner.id) if c[0] == form.get("act_as")), None)
    if chosen is None:
        return _error_page("choose one of your agents (or yourself) for the application to act as")
    _value, agent, acts, _label = chosen
    try:
        target = await services.authorization.target(checked, owner.owner.id, agent, acts)
        location = await services.authorization.approve(
            checked, owner.owner.id, agent, acts, target, request_context(request)
        )
    except RedirectError as exc:
        return redirect(exc.location)
    except AgentAuthError as exc:
        return _error_page(exc.description)
    return redirect(location)
