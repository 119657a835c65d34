"""The owner console at ``/console`` (issue 17 item 1, first part): an owner's tenants, each tenant's agent tree,
its API keys, its policies (an editor and a dry run of ``check_permission``) and its audit log - server-rendered
pages, no JavaScript, the owner pages' shell and headers (``pages.py``: strict CSP, no framing, no caching).

The console has no logic of its own: every page and action is a use case called with the principal
``OwnerService.principal`` makes - the tenant's root agent with its scopes -, so REST, MCP and the console are
authorized alike (scopes, tenancy, policies). A tenant the owner does not own answers 404 like one that does not
exist. Every POST is a form of the owner's session: its CSRF token and, when the browser sends them, ``Origin`` /
``Sec-Fetch-Site`` of this site (``owner_pages.check_csrf``). The audit events of console actions name the owner
(``details.owner``). A new API key is shown once, in the answer to the
POST that made it (``Cache-Control: no-store``); never again.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from agentauth import paths
from agentauth.api.deps import request_context
from agentauth.api.owner_pages import check_csrf, current_owner
from agentauth.api.pages import esc, form_pairs, hidden, message_page, page, redirect
from agentauth.bootstrap import Services
from agentauth.errors import AgentAuthError, InvalidRequest
from agentauth.issuer.approvals import Approval
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.owners import OwnerSession
from agentauth.issuer.schemas import (
    ActivityOut,
    AgentOut,
    CreateAgentRequest,
    CreateApiKeyRequest,
    DelegationOut,
    EvaluateRequest,
    PolicyIn,
)

router = APIRouter(tags=["console"], include_in_schema=False)

CONSOLE = paths.CONSOLE
PAGE_SIZE = 100
AUDIT_PAGE = 50
AUDIT_EXPORT_MAX = 1000
AGENT_TYPES = ("assistant", "autonomous", "orchestrator", "tool")
_STYLE = (
    "<style>body{max-width:72rem}nav a{margin-right:1rem}.tree{list-style:none;padding-left:1.2rem}"
    ".agent{padding:.3rem 0;border-bottom:1px solid #eee}.status-deactivated{color:#a00}form.inline{display:inline}"
    "td code{font-size:.8rem}.secret{background:#ffe;padding:.4rem;border:1px solid #cc9}</style>"
)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _login_redirect(request: Request) -> Response:
    return redirect(f"{paths.LOGIN}?{urlencode({'next': request.url.path})}")


def _nav(tenant_id: str, here: str) -> str:
    base = f"{CONSOLE}/{quote(tenant_id)}"
    links = [
        (base, "Agents"), (f"{base}/keys", "API keys"), (f"{base}/approvals", "Approvals"),
        (f"{base}/delegations", "Delegations"),
        (f"{base}/policies", "Policies"), (f"{base}/clients", "Clients and APIs"), (f"{base}/audit", "Audit log"),
        (f"{base}/activity", "Activity"),
        (CONSOLE, "Tenants"),
    ]  # fmt: skip
    return (
        "<nav>"
        + "".join(
            f'<a href="{esc(href)}"{" aria-current=page" if href == here else ""}>{esc(text)}</a>'
            for href, text in links
        )
        + "</nav>"
    )


def _offset(request: Request) -> int:
    """The ``page`` query parameter (0-based) as an offset; anything else is the first page."""
    raw = request.query_params.get("page", "0")
    return int(raw) * PAGE_SIZE if raw.isdecimal() and len(raw) < 7 else 0


def _pager(path: str, offset: int, total: int) -> str:
    """Previous / next links of an offset-paged list, and where on it this page is."""
    if total <= PAGE_SIZE:
        return ""
    number = offset // PAGE_SIZE
    links = [f"<span class=muted>{offset + 1}-{min(offset + PAGE_SIZE, total)} of {total}</span>"]
    if number > 0:
        links.insert(0, f'<a rel=prev href="{esc(path)}?page={number - 1}">Previous</a>')
    if offset + PAGE_SIZE < total:
        links.append(f'<a rel=next href="{esc(path)}?page={number + 1}">Next</a>')
    return f"<nav class=pager>{' '.join(links)}</nav>"


def _notice(text: str, *, error: bool = False) -> str:
    return f'<p class="error" role="alert">{esc(text)}</p>' if error else f'<p role="status">{esc(text)}</p>'


def _when(value: datetime | None) -> str:
    return "" if value is None else esc(value.strftime("%Y-%m-%d %H:%M:%S UTC"))


async def _reach(request: Request, principal: Principal, agent_id: str, purpose: str) -> str:
    """The status lists a kill switch on ``agent_id`` just changed, and when verifiers honouring each list's ttl
    have the change (issue 17 item 3; ``AgentService.status_reach``)."""
    services = _services(request)
    lists = await services.agents.status_reach(principal, agent_id, purpose)
    ttl = services.settings.status_list_ttl_seconds
    if not lists:
        return (
            "<p class=muted id=list-reach>No status list holds a credential of theirs: there is nothing to reach.</p>"
        )
    rows = []
    for entry in lists:
        if entry.reached_by is None:
            when = "now: no verifier has fetched it yet, the first fetch has the change"
            stamp = ""
        elif entry.published_at is not None and entry.reached_by <= services.core.clock():
            when = "now: every copy from before has run out, the next fetch has the change"
            stamp = entry.reached_by.isoformat()
        else:
            when, stamp = _when(entry.reached_by), entry.reached_by.isoformat()
        rows.append(
            f'<tr data-list-url="{esc(entry.url)}" data-reached-by="{esc(stamp)}"><td><a href="{esc(entry.url)}">'
            f"{esc(entry.url)}</a></td><td>{esc(entry.purpose)}</td><td>{_when(entry.published_at) or 'never'}</td>"
            f"<td>{when}</td></tr>"
        )
    return (
        f"<table id=list-reach><caption>Status lists changed (ttl {ttl} s): each is re-signed at its next fetch; a "
        "verifier honouring the ttl has the change by the time shown</caption><thead><tr><th scope=col>List</th>"
        "<th scope=col>Purpose</th><th scope=col>Last signed</th><th scope=col>Verifiers have it"
        f"</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


Handler = Callable[[Request, OwnerSession, Principal, RequestContext], Awaitable[Response]]


async def _as_owner(request: Request, tenant_id: str, handler: Handler, *, post: bool = False) -> Response:
    """Run ``handler`` for the logged-in owner on ``tenant_id``: login first, the CSRF check for a POST, 404 for a
    tenant not theirs; a use case's refusal becomes an error page with its status."""
    owner = await current_owner(request)
    if owner is None:
        return _login_redirect(request)
    services = _services(request)
    ctx = dataclasses.replace(request_context(request), owner_id=owner.owner.id)
    if post:
        pairs = await form_pairs(request)
        refused = check_csrf(request, dict(pairs) if pairs is not None else {}, owner)
        if refused is not None:
            return refused
    try:
        principal = await services.owners.principal(owner, tenant_id)
        return await handler(request, owner, principal, ctx)
    except AgentAuthError as exc:
        return message_page("Refused" if exc.status_code < 500 else "Unavailable", exc.description, exc.status_code)


async def _form(request: Request) -> dict[str, str]:
    pairs = await form_pairs(request)  # the body was read (and cached by Starlette) by the CSRF check
    return dict(pairs) if pairs is not None else {}


# -- tenants -----------------------------------------------------------------------------------------------


@router.get(CONSOLE)
async def tenants(request: Request) -> Response:
    owner = await current_owner(request)
    if owner is None:
        return _login_redirect(request)
    roots = [a for a in await _services(request).owners.agents(owner.owner.id) if a.parent_id is None]
    items = "".join(
        f'<li><a href="{CONSOLE}/{esc(quote(a.id))}">{esc(a.name)}</a> <code>{esc(a.id)}</code></li>' for a in roots
    )
    body = (
        f"{_STYLE}<h1>Console</h1><p>Logged in as <strong id=owner-email>{esc(owner.owner.email)}</strong></p>"
        + (f"<ul id=tenants>{items}</ul>" if roots else f'<p id=no-tenants>No tenant yet: <a href="{paths.ACCOUNT}">'
           "create or claim one</a>.</p>")
        + f'<p><a href="{paths.ACCOUNT}">Account</a></p>'
    )  # fmt: skip
    return page("Console", body)


# -- agents ------------------------------------------------------------------------------------------------


def _agent_button(tenant_id: str, agent: AgentOut, action: str, label: str, csrf: str) -> str:
    return (
        f'<form class=inline method=post action="{CONSOLE}/{esc(quote(tenant_id))}/agents/{esc(quote(agent.id))}/'
        f'{action}">{csrf}<button type=submit aria-label="{esc(label)} {esc(agent.name)}">{esc(label)}</button></form>'
    )


def _kill_switch(a: AgentOut, csrf: str, tenant_id: str) -> str:
    """An agent's kill-switch buttons: Suspend (reversible) or Resume, and Stop (for good; a tenant's root only
    with its name typed)."""
    if a.status == "deactivated":
        return ""
    if a.status == "suspended":
        buttons = _agent_button(tenant_id, a, "resume", "Resume", csrf)
    else:
        buttons = _agent_button(tenant_id, a, "suspend", "Suspend", csrf)
    if a.parent_id is None:
        return buttons + (
            f'<form class=inline method=post action="{CONSOLE}/{esc(quote(tenant_id))}/stop">{csrf}'
            "<label>Type the tenant's name to stop all of it <input type=text name=confirm required "
            f'autocomplete=off></label><button type=submit aria-label="Stop the tenant {esc(a.name)}">'
            "Stop the whole tenant</button></form>"
        )
    return buttons + _agent_button(tenant_id, a, "stop", "Stop", csrf)


def _tree(agents: list[AgentOut], csrf: str, tenant_id: str) -> str:
    """Agents nested under their parents (an agent whose parent is not on the page starts a branch)."""
    ids = {a.id for a in agents}
    children: dict[str | None, list[AgentOut]] = {}
    for agent in agents:
        children.setdefault(agent.parent_id if agent.parent_id in ids else None, []).append(agent)

    def branch(parent: str | None) -> str:
        items = []
        for a in sorted(children.get(parent, []), key=lambda a: a.created_at):
            stop = _kill_switch(a, csrf, tenant_id)
            items.append(
                f'<li class=agent data-agent-id="{esc(a.id)}"><strong>{esc(a.name)}</strong> '
                f"<span class=muted>{esc(a.agent_type)}, trust {esc(a.trust_level)}</span> "
                f'<span class="status-{esc(a.status)}">{esc(a.status)}</span> {stop}<br>'
                f"<code>{esc(a.did)}</code><br><span class=muted>{esc(a.id)} - scopes: "
                f"{esc(' '.join(a.scopes))}</span>{branch(a.id)}</li>"
            )
        return f"<ul class=tree>{''.join(items)}</ul>" if items else ""

    return branch(None)


async def _agents_page(
    request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext, notice: str = "",
    status: int = 200,
) -> Response:  # fmt: skip
    services, tenant_id = _services(request), principal.tenant_id
    offset = _offset(request)
    listed = await services.agents.list(principal, PAGE_SIZE, offset, ctx)
    csrf = hidden("csrf_token", owner.csrf_token)
    members = [a for a in listed.items if a.relationship == "member"]
    types = "".join(f'<option value="{t}">{t}</option>' for t in AGENT_TYPES)
    body = (
        f"{_STYLE}{_nav(tenant_id, f'{CONSOLE}/{quote(tenant_id)}')}<h1>Agents of {esc(principal.agent.name)}</h1>"
        f"{notice}<p class=muted>{listed.total} agent(s). Suspend stops an agent and its subtree reversibly: nothing "
        "of theirs authenticates or verifies, nothing is revoked, Resume restores it. Stop deactivates them for good "
        "and revokes everything they hold: API keys, access and refresh tokens, the delegations they gave or "
        "received. Either way the status lists change at once, and offline verifiers see it at their next fetch "
        f"(within the lists' ttl, {services.settings.status_list_ttl_seconds} s).</p>"
        f"<div id=agent-tree>{_tree(members, csrf, tenant_id)}</div>"
        f"{_pager(f'{CONSOLE}/{quote(tenant_id)}', offset, listed.total)}"
        f'<h2>New agent</h2><form method=post action="{CONSOLE}/{esc(quote(tenant_id))}/agents">{csrf}'
        "<label>Name <input type=text name=name required maxlength=200></label>"
        f"<label>Type <select name=agent_type>{types}</select></label>"
        "<label>Scopes (space-separated; empty: all of the tenant's) <input type=text name=scopes></label>"
        "<button type=submit>Create agent</button></form>"
    )
    return page("Agents", body, status=status)


@router.get(CONSOLE + "/{tenant_id}")
async def agents(request: Request, tenant_id: str) -> Response:
    return await _as_owner(request, tenant_id, _agents_page)


@router.post(CONSOLE + "/{tenant_id}/agents")
async def create_agent(request: Request, tenant_id: str) -> Response:
    async def create(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        form = await _form(request)
        kind = form.get("agent_type", "")
        scopes = form.get("scopes", "").split() or None
        try:
            body = CreateAgentRequest.model_validate(
                {"name": form.get("name", ""), "agent_type": kind, "scopes": scopes}
            )
        except ValueError:
            return await _agents_page(
                request, owner, principal, ctx, _notice("name and type are required", error=True), 400
            )
        made = await _services(request).agents.create_child(principal, body, ctx)
        text = f"Agent {made.agent.name} created ({made.agent.id}); it has no API key yet - make one on API keys."
        return await _agents_page(request, owner, principal, ctx, _notice(text))

    return await _as_owner(request, tenant_id, create, post=True)


@router.post(CONSOLE + "/{tenant_id}/agents/{agent_id}/stop")
async def stop_agent(request: Request, tenant_id: str, agent_id: str) -> Response:
    async def stop(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        services = _services(request)
        stopped = await services.agents.deactivate(principal, agent_id, ctx)
        text = (
            f"Agent {stopped.name} and its subtree are stopped: every key, token and delegation is revoked. Offline "
            "verifiers see it once they refetch the status lists:"
        )
        reach = await _reach(request, principal, agent_id, "revocation")
        return await _agents_page(request, owner, principal, ctx, _notice(text) + reach)

    return await _as_owner(request, tenant_id, stop, post=True)


@router.post(CONSOLE + "/{tenant_id}/agents/{agent_id}/suspend")
async def suspend_agent(request: Request, tenant_id: str, agent_id: str) -> Response:
    async def suspend(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        suspended = await _services(request).agents.suspend(principal, agent_id, ctx)
        text = (
            f"Agent {suspended.name} and its subtree are suspended: nothing of theirs authenticates here any more, "
            "and offline verifiers refuse their credentials once they refetch the status lists. Nothing was "
            "revoked: Resume restores them."
        )
        reach = await _reach(request, principal, agent_id, "suspension")
        return await _agents_page(request, owner, principal, ctx, _notice(text) + reach)

    return await _as_owner(request, tenant_id, suspend, post=True)


@router.post(CONSOLE + "/{tenant_id}/agents/{agent_id}/resume")
async def resume_agent(request: Request, tenant_id: str, agent_id: str) -> Response:
    async def resume(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        resumed = await _services(request).agents.resume(principal, agent_id, ctx)
        text = f"Agent {resumed.name} and the suspended agents below it are active again; offline verifiers accept "
        text += "their credentials once they refetch the status lists:"
        reach = await _reach(request, principal, agent_id, "suspension")
        return await _agents_page(request, owner, principal, ctx, _notice(text) + reach)

    return await _as_owner(request, tenant_id, resume, post=True)


@router.post(CONSOLE + "/{tenant_id}/stop")
async def stop_tenant(request: Request, tenant_id: str) -> Response:
    """The kill switch for a whole tenant: its root agent deactivated with everything below it. Irreversible, so
    the form must repeat the tenant's name."""

    async def stop(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        form = await _form(request)
        if form.get("confirm", "").strip() != principal.agent.name:
            notice = _notice("the name typed is not the tenant's: nothing was stopped", error=True)
            return await _agents_page(request, owner, principal, ctx, notice, 400)
        await _services(request).agents.deactivate(principal, principal.agent.id, ctx)
        text = (
            f"Tenant {principal.agent.name} is stopped: every agent, API key, token and delegation in it is revoked. "
            "This server refuses them now; offline verifiers do once they refetch the status lists:"
        )
        reach = await _reach(request, principal, principal.agent.id, "revocation")
        return page("Tenant stopped", f"{_STYLE}<h1>Tenant stopped</h1>{_notice(text)}{reach}")

    return await _as_owner(request, tenant_id, stop, post=True)


# -- API keys ----------------------------------------------------------------------------------------------


async def _keys_page(
    request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext, notice: str = "",
    status: int = 200,
) -> Response:  # fmt: skip
    services, tenant_id = _services(request), principal.tenant_id
    base = f"{CONSOLE}/{quote(tenant_id)}/keys"
    offset = _offset(request)
    keys = await services.api_keys.list(principal, None, PAGE_SIZE, offset, ctx)
    listed = await services.agents.list(principal, PAGE_SIZE, 0, ctx)
    names = {a.id: a.name for a in listed.items}
    csrf = hidden("csrf_token", owner.csrf_token)
    rows = []
    for key in keys.items:
        actions = ""
        if key.status == "active":
            actions = "".join(
                f'<form class=inline method=post action="{esc(base)}/{esc(quote(key.id))}/{verb}">{csrf}'
                f'<button type=submit aria-label="{label} {esc(key.prefix)}">{label}</button></form>'
                for verb, label in (("rotate", "Rotate"), ("revoke", "Revoke"))
            )
        rows.append(
            f'<tr data-key-id="{esc(key.id)}"><td><code>{esc(key.prefix)}...</code></td><td>{esc(key.name or "")}</td>'
            f"<td>{esc(names.get(key.agent_id, key.agent_id))}</td><td>{esc(key.status)}</td>"
            f"<td>{_when(key.created_at)}</td><td>{_when(key.last_used_at)}</td><td>{actions}</td></tr>"
        )
    options = "".join(
        f'<option value="{esc(a.id)}">{esc(a.name)}</option>'
        for a in listed.items
        if a.relationship == "member" and a.is_active
    )
    body = (
        f"{_STYLE}{_nav(tenant_id, base)}<h1>API keys</h1>{notice}"
        "<table id=keys><tr><th>Prefix</th><th>Name</th><th>Agent</th><th>Status</th><th>Created</th>"
        f"<th>Last used</th><th></th></tr>{''.join(rows)}</table>{_pager(base, offset, keys.total)}"
        f'<h2>New API key</h2><form method=post action="{esc(base)}">{csrf}'
        f"<label>Agent <select name=agent_id>{options}</select></label>"
        "<label>Name <input type=text name=name maxlength=200></label>"
        "<button type=submit>Create API key</button></form>"
    )
    return page("API keys", body, status=status)


def _shown_once(raw_key: str, prefix: str) -> str:
    return (
        f"<div class=secret role=status><p>New API key {esc(prefix)}... - shown this once, store it now:</p>"
        f"<p><code id=new-api-key>{esc(raw_key)}</code></p></div>"
    )


@router.get(CONSOLE + "/{tenant_id}/keys")
async def keys(request: Request, tenant_id: str) -> Response:
    return await _as_owner(request, tenant_id, _keys_page)


@router.post(CONSOLE + "/{tenant_id}/keys")
async def create_key(request: Request, tenant_id: str) -> Response:
    async def create(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        form = await _form(request)
        body = CreateApiKeyRequest(agent_id=form.get("agent_id") or None, name=form.get("name") or None)
        made = await _services(request).api_keys.create(principal, body, ctx)
        return await _keys_page(request, owner, principal, ctx, _shown_once(made.raw_key, made.prefix))

    return await _as_owner(request, tenant_id, create, post=True)


@router.post(CONSOLE + "/{tenant_id}/keys/{key_id}/rotate")
async def rotate_key(request: Request, tenant_id: str, key_id: str) -> Response:
    async def rotate(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        made = await _services(request).api_keys.rotate(principal, key_id, ctx)
        return await _keys_page(request, owner, principal, ctx, _shown_once(made.raw_key, made.prefix))

    return await _as_owner(request, tenant_id, rotate, post=True)


@router.post(CONSOLE + "/{tenant_id}/keys/{key_id}/revoke")
async def revoke_key(request: Request, tenant_id: str, key_id: str) -> Response:
    async def revoke(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        revoked = await _services(request).api_keys.revoke(principal, key_id, ctx)
        return await _keys_page(request, owner, principal, ctx, _notice(f"API key {revoked.prefix}... revoked."))

    return await _as_owner(request, tenant_id, revoke, post=True)


# -- approvals (CIBA) --------------------------------------------------------------------------------------


def _approval_item(approval: Approval, names: dict[str, str], csrf: str, base: str, me: str, now: datetime) -> str:
    """One request as asked: who asks, its binding message, its authorization_details verbatim (pretty JSON, as
    text), the scopes; the decision buttons when it is pending and addressed to this owner."""
    shown = approval.shown(now)
    asked = json.dumps(approval.authorization_details, indent=2, sort_keys=True, ensure_ascii=False)
    actions = ""
    if shown == "pending" and approval.owner_id == me:
        actions = "".join(
            f'<form class=inline method=post action="{esc(base)}/{esc(quote(approval.id))}/{verb}">{csrf}'
            f'<button type=submit name=decision value={verb} aria-label="{label} {esc(approval.id)}">{label}</button>'
            "</form>"
            for verb, label in (("approve", "Approve"), ("deny", "Deny"))
        )
    elif shown == "pending":
        actions = "<p class=muted>Addressed to another owner of this tenant.</p>"
    message = (
        f"<p class=binding-message><strong>{esc(approval.binding_message)}</strong></p>"
        if approval.binding_message
        else ""
    )
    details = f"<pre class=authorization-details>{esc(asked)}</pre>" if approval.authorization_details else ""
    scope = f"<p>Scopes: <code>{esc(' '.join(approval.scopes))}</code></p>" if approval.scopes else ""
    decided = f" by {esc(approval.decided_by or '')} at {_when(approval.decided_at)}" if approval.decided_at else ""
    once = "<p class=single-use>Single use: the token is spent at its first use.</p>" if approval.single_use else ""
    return (
        f'<li class="approval status-{esc(shown)}" data-approval-id="{esc(approval.id)}">'
        f"<p><strong>{esc(names.get(approval.agent_id, approval.agent_id))}</strong> asks, "
        f"{_when(approval.created_at)} - <span class=approval-status>{esc(shown)}</span>{decided}; "
        f"expires {_when(approval.expires_at)}</p>{message}{details}{scope}{once}{actions}</li>"
    )


async def _approvals_page(
    request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext, notice: str = "",
    status: int = 200,
) -> Response:  # fmt: skip
    services, tenant_id = _services(request), principal.tenant_id
    base = f"{CONSOLE}/{quote(tenant_id)}/approvals"
    approvals = await services.approvals.inbox(tenant_id)
    listed = await services.agents.list(principal, PAGE_SIZE, 0, ctx)
    names = {a.id: a.name for a in listed.items}
    csrf = hidden("csrf_token", owner.csrf_token)
    now = services.core.clock()
    items = "".join(_approval_item(a, names, csrf, base, owner.owner.id, now) for a in approvals)
    body = (
        f"{_STYLE}{_nav(tenant_id, base)}<h1>Approvals</h1>{notice}"
        "<p>Agents ask here before an action that needs a person (OpenID CIBA). Approve only what is shown: the "
        "token the agent gets carries exactly these authorization details.</p>"
        + (f"<ul id=approvals class=tree>{items}</ul>" if items else "<p id=no-approvals>No approval requests.</p>")
    )
    return page("Approvals", body, status=status)


@router.get(CONSOLE + "/{tenant_id}/approvals")
async def approvals(request: Request, tenant_id: str) -> Response:
    return await _as_owner(request, tenant_id, _approvals_page)


@router.post(CONSOLE + "/{tenant_id}/approvals/{approval_id}/{verb}")
async def decide_approval(request: Request, tenant_id: str, approval_id: str, verb: str) -> Response:
    async def decide(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        if verb not in ("approve", "deny"):
            raise InvalidRequest("decide with approve or deny")
        decided = await _services(request).approvals.decide(
            owner, principal.tenant_id, approval_id, verb == "approve", ctx
        )
        return await _approvals_page(request, owner, principal, ctx, _notice(f"Request {decided.id} {decided.status}."))

    return await _as_owner(request, tenant_id, decide, post=True)


# -- activity charts ---------------------------------------------------------------------------------------

CHART_W, CHART_H, BAR_GAP = 720, 160, 2


def hour_chart(activity: ActivityOut) -> str:
    """Tokens issued (all grants) and denied per hour as an inline SVG bar chart - no script, no external asset;
    each bar has a ``<title>`` (its numbers, for a pointer and for screen readers)."""
    hours = activity.hours
    totals = [(h.issued + h.refreshed + h.exchanged, h.denied) for h in hours]
    top = max([good + bad for good, bad in totals] + [1])
    width = CHART_W / max(len(hours), 1)
    bars = []
    for index, (hour, (good, bad)) in enumerate(zip(hours, totals, strict=True)):
        x = index * width
        good_h, bad_h = CHART_H * good / top, CHART_H * bad / top
        label = f"{hour.start:%Y-%m-%d %H}:00 UTC: {good} issued, {bad} denied"
        bars.append(
            f"<g class=hour><title>{esc(label)}</title>"
            f'<rect x="{x:.1f}" y="{CHART_H - good_h:.1f}" width="{width - BAR_GAP:.1f}" height="{good_h:.1f}"'
            ' fill="#2a7"/>'
            f'<rect x="{x:.1f}" y="{CHART_H - good_h - bad_h:.1f}" width="{width - BAR_GAP:.1f}" height="{bad_h:.1f}"'
            ' fill="#c33"/></g>'
        )
    return (
        f'<svg id=hour-chart role=img aria-label="Tokens issued and denied per hour" width="{CHART_W}" '
        f'height="{CHART_H + 4}" viewBox="0 0 {CHART_W} {CHART_H + 4}">{"".join(bars)}</svg>'
        f"<p class=legend>Green: tokens issued (every grant); red: denied. Highest hour: {top}.</p>"
    )


def agent_chart(activity: ActivityOut, names: dict[str, str]) -> str:
    """The busiest agents as horizontal bars (issued and denied), with their numbers written beside them."""
    if not activity.agents:
        return "<p id=no-activity>No token activity in this window.</p>"
    top = max(a.issued + a.refreshed + a.exchanged + a.denied for a in activity.agents) or 1
    rows = []
    for agent in activity.agents:
        good = agent.issued + agent.refreshed + agent.exchanged
        share = 100 * (good + agent.denied) / top
        rows.append(
            f'<tr data-agent-id="{esc(agent.agent_id)}"><td>{esc(names.get(agent.agent_id, agent.agent_id))}</td>'
            f'<td><svg width="300" height="12" role=img aria-label="{good} issued, {agent.denied} denied">'
            f'<rect width="{3 * share * good / max(good + agent.denied, 1):.1f}" height="12" fill="#2a7"/>'
            f'<rect x="{3 * share * good / max(good + agent.denied, 1):.1f}" '
            f'width="{3 * share * agent.denied / max(good + agent.denied, 1):.1f}" height="12" fill="#c33"/></svg></td>'
            f"<td>{good}</td><td>{agent.denied}</td></tr>"
        )
    return (
        "<table id=agent-activity><tr><th>Agent</th><th></th><th>Issued</th><th>Denied</th></tr>"
        + "".join(rows)
        + "</table>"
    )


async def _activity_page(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
    services, tenant_id = _services(request), principal.tenant_id
    base = f"{CONSOLE}/{quote(tenant_id)}/activity"
    raw = request.query_params.get("hours", "24")
    hours = int(raw) if raw.isdecimal() and 1 <= int(raw[:4]) <= 168 else 24
    activity = await services.audit.activity(principal, ctx, hours=hours)
    listed = await services.agents.list(principal, PAGE_SIZE, 0, ctx)
    names = {a.id: a.name for a in listed.items}
    windows = " ".join(
        f'<a href="{esc(base)}?hours={h}"{" aria-current=page" if h == hours else ""}>{label}</a>'
        for h, label in ((24, "24 hours"), (72, "3 days"), (168, "7 days"))
    )
    body = (
        f"{_STYLE}{_nav(tenant_id, base)}<h1>Token activity</h1><p>{windows}</p>"
        f"<h2>Per hour, since {_when(activity.since)}</h2>{hour_chart(activity)}"
        f"<h2>Busiest agents</h2>{agent_chart(activity, names)}"
    )
    return page("Token activity", body)


@router.get(CONSOLE + "/{tenant_id}/activity")
async def activity(request: Request, tenant_id: str) -> Response:
    return await _as_owner(request, tenant_id, _activity_page)


# -- audit log ---------------------------------------------------------------------------------------------

AUDIT_FIELDS = ("id", "created_at", "action", "outcome", "actor", "target_type", "target_id", "reason", "ip")


def spreadsheet_safe(cell: str) -> str:
    """A cell that starts with = + - @ (or a tab or carriage return) is a formula to spreadsheet programs: an
    audit field written by an attacker would run when the export is opened (CSV injection). Prefixed with ``'``
    it stays text."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def _audit_filters(request: Request) -> dict[str, str]:
    query = request.query_params
    return {name: query[name] for name in ("action", "outcome", "actor", "target_id") if query.get(name)}


async def _audit_events(
    request: Request, principal: Principal, ctx: RequestContext, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    f = _audit_filters(request)
    listed = await _services(request).audit.list(
        principal, ctx, limit=limit, cursor=cursor, action=f.get("action"), outcome=f.get("outcome"),
        actor=f.get("actor"), target_id=f.get("target_id"),
    )  # fmt: skip
    return [event.model_dump(mode="json") for event in listed.items], listed.next_cursor


@router.get(CONSOLE + "/{tenant_id}/audit")
async def audit(request: Request, tenant_id: str) -> Response:
    async def show(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        base = f"{CONSOLE}/{quote(tenant_id)}/audit"
        filters = _audit_filters(request)
        events, next_cursor = await _audit_events(
            request, principal, ctx, AUDIT_PAGE, request.query_params.get("cursor")
        )
        rows = "".join(
            "<tr>" + "".join(f"<td>{esc(event.get(name) or '')}</td>" for name in AUDIT_FIELDS[1:]) + "</tr>"
            for event in events
        )
        inputs = "".join(
            f'<label>{name} <input type=text name={name} value="{esc(filters.get(name, ""))}"></label>'
            for name in ("action", "outcome", "actor", "target_id")
        )
        more = (
            f'<p><a href="{esc(base)}?{esc(urlencode(filters | {"cursor": next_cursor}))}">Older</a></p>'
            if next_cursor
            else ""
        )
        exports = " ".join(
            f'<a href="{esc(base)}.{kind}?{esc(urlencode(filters))}" download>Export {kind.upper()}</a>'
            for kind in ("csv", "json")
        )
        body = (
            f'{_STYLE}{_nav(tenant_id, base)}<h1>Audit log</h1><form method=get action="{esc(base)}">{inputs}'
            f"<button type=submit>Filter</button></form><p>{exports}</p>"
            "<table id=audit><tr>"
            + "".join(f"<th>{name}</th>" for name in AUDIT_FIELDS[1:])
            + f"</tr>{rows}</table>{more}"
        )
        return page("Audit log", body)

    return await _as_owner(request, tenant_id, show)


@router.get(CONSOLE + "/{tenant_id}/audit.{kind}")
async def export_audit(request: Request, tenant_id: str, kind: str) -> Response:
    """The newest ``AUDIT_EXPORT_MAX`` events matching the filters, as CSV or JSON, to download."""
    if kind not in ("csv", "json"):
        return message_page("Not found", "the audit log exports as csv or json", 404)

    async def export(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        events: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(events) < AUDIT_EXPORT_MAX:
            batch, cursor = await _audit_events(request, principal, ctx, 100, cursor)
            events += batch
            if cursor is None:
                break
        events = events[:AUDIT_EXPORT_MAX]
        headers = {"Cache-Control": "no-store", "Content-Disposition": f'attachment; filename="audit.{kind}"'}
        if kind == "json":
            return Response(json.dumps(events, indent=1), media_type="application/json", headers=headers)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*AUDIT_FIELDS, "details"])
        for event in events:
            cells = [str(event.get(name) or "") for name in AUDIT_FIELDS] + [json.dumps(event.get("details") or {})]
            writer.writerow([spreadsheet_safe(cell) for cell in cells])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)

    return await _as_owner(request, tenant_id, export)


# -- delegations -------------------------------------------------------------------------------------------

NODE_W, NODE_H, COLUMN, ROW = 170, 36, 440, 100


def below(delegation_id: str, delegations: list[DelegationOut]) -> list[DelegationOut]:
    """The delegations resting on ``delegation_id`` (its re-delegations, theirs, ...): what revoking it revokes."""
    children: dict[str | None, list[DelegationOut]] = {}
    for d in delegations:
        children.setdefault(d.parent_delegation_id, []).append(d)
    found, todo = [], list(children.get(delegation_id, []))
    while todo:
        d = todo.pop(0)
        found.append(d)
        todo += children.get(d.id, [])
    return found


def picture(delegations: list[DelegationOut], names: dict[str, str]) -> str:
    """Who lent what to whom, as an inline SVG: agents in columns by how far down a chain they receive, one arrow
    per delegation labelled with its scopes, depth left and expiry; revoked or expired ones dashed and grey."""
    if not delegations:
        return "<p id=no-delegations>No delegation in this tenant.</p>"
    column: dict[str, int] = {}
    for d in sorted(delegations, key=lambda d: d.chain_depth):
        column.setdefault(d.delegator_agent_id, 0)
        column[d.delegate_agent_id] = max(column.get(d.delegate_agent_id, 0), column[d.delegator_agent_id] + 1)
    rows: dict[int, int] = {}
    where: dict[str, tuple[int, int]] = {}
    for agent, col in column.items():
        rows[col] = rows.get(col, -1) + 1
        where[agent] = (20 + col * COLUMN, 20 + rows[col] * ROW)
    width = 40 + (max(column.values()) + 1) * COLUMN
    height = 40 + (max(rows.values()) + 1) * ROW
    parts = [
        f'<svg id=delegation-picture role=img aria-label="Delegations of this tenant" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        '<defs><marker id=arrow viewBox="0 0 10 10" refX=10 refY=5 markerWidth=8 markerHeight=8 orient=auto>'
        '<path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
    ]
    for d in delegations:
        (x1, y1), (x2, y2) = where[d.delegator_agent_id], where[d.delegate_agent_id]
        live = d.status == "active"
        style = 'stroke="#246"' if live else 'stroke="#999" stroke-dasharray="4 3"'
        scopes = " ".join(d.scopes)
        first = scopes if len(scopes) <= 40 else scopes[:39] + "..."
        second = f"{d.max_chain_depth} more hop(s), until {d.expires_at:%Y-%m-%d %H:%M}" + (
            "" if live else f" ({d.status})"
        )
        # Labels start just past the arrow's tail, one line above it and one below, so they never cover a box.
        tx, ty = x1 + NODE_W + 8, (y1 + y2) // 2 + NODE_H // 2
        parts.append(
            f'<g class=delegation data-delegation-id="{esc(d.id)}" data-status="{esc(d.status)}">'
            f'<line x1="{x1 + NODE_W}" y1="{y1 + NODE_H // 2}" x2="{x2}" y2="{y2 + NODE_H // 2}" {style} '
            'stroke-width=2 marker-end="url(#arrow)"/>'
            f'<text font-size=11 fill="#333"><tspan x="{tx}" y="{ty - 6}">{esc(first)}</tspan>'
            f'<tspan x="{tx}" y="{ty + 14}">{esc(second)}</tspan></text></g>'
        )
    for agent, (x, y) in where.items():
        parts.append(
            f'<g class=node data-agent-id="{esc(agent)}"><rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" '
            'rx=6 fill="#eef3fa" stroke="#246"/>'
            f'<text x="{x + 8}" y="{y + 23}" font-size=13>{esc(names.get(agent, agent)[:24])}</text></g>'
        )
    return "".join(parts) + "</svg>"


async def _delegations_page(
    request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext, notice: str = "",
    status: int = 200, preview: str = "",
) -> Response:  # fmt: skip
    services, tenant_id = _services(request), principal.tenant_id
    base = f"{CONSOLE}/{quote(tenant_id)}/delegations"
    listed = await services.delegations.list(principal, "subtree", PAGE_SIZE, 0, ctx)
    agents = await services.agents.list(principal, PAGE_SIZE, 0, ctx)
    names = {a.id: a.name for a in agents.items}
    rows = "".join(
        f'<tr data-delegation-id="{esc(d.id)}"><td>{esc(names.get(d.delegator_agent_id, d.delegator_agent_id))}'
        f"</td><td>{esc(names.get(d.delegate_agent_id, d.delegate_agent_id))}</td><td>{esc(' '.join(d.scopes))}</td>"
        f"<td>{d.chain_depth}</td><td>{d.max_chain_depth}</td><td>{_when(d.expires_at)}</td><td>{esc(d.status)}</td>"
        + (f'<td><a href="{esc(base)}/{esc(quote(d.id))}/revoke">Revoke...</a>' if d.status == "active" else "<td>")
        + "</td></tr>"
        for d in listed.items
    )  # fmt: skip
    body = (
        f"{_STYLE}{_nav(tenant_id, base)}<h1>Delegations</h1>{notice}{preview}"
        f"{picture(listed.items, names)}"
        "<table id=delegations><tr><th>From</th><th>To</th><th>Scopes</th><th>Position</th><th>Hops left</th>"
        f"<th>Expires</th><th>Status</th><th></th></tr>{rows}</table>"
    )
    return page("Delegations", body, status=status)


@router.get(CONSOLE + "/{tenant_id}/delegations")
async def delegations(request: Request, tenant_id: str) -> Response:
    return await _as_owner(request, tenant_id, _delegations_page)


@router.get(CONSOLE + "/{tenant_id}/delegations/{delegation_id}/revoke")
async def revoke_delegation_preview(request: Request, tenant_id: str, delegation_id: str) -> Response:
    """What revoking the delegation would revoke - it, every delegation resting on it and the tokens obtained under
    them -, and the button that does it."""

    async def preview(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        services = _services(request)
        target = await services.delegations.get(principal, delegation_id, ctx)
        listed = await services.delegations.list(principal, "subtree", PAGE_SIZE, 0, ctx)
        cascade = [d for d in below(target.id, listed.items) if d.status == "active"]
        agents = await services.agents.list(principal, PAGE_SIZE, 0, ctx)
        names = {a.id: a.name for a in agents.items}

        def line(d: DelegationOut) -> str:
            giver = names.get(d.delegator_agent_id, d.delegator_agent_id)
            taker = names.get(d.delegate_agent_id, d.delegate_agent_id)
            return f'<li data-delegation-id="{esc(d.id)}">{esc(giver)} to {esc(taker)}: {esc(" ".join(d.scopes))}</li>'

        action = f"{CONSOLE}/{quote(tenant_id)}/delegations/{quote(target.id)}/revoke"
        box = (
            "<div id=cascade class=secret><p>Revoking this delegation also revokes the "
            f"{len(cascade)} delegation(s) resting on it, and every token obtained under any of them:</p>"
            f"<ul>{line(target)}{''.join(line(d) for d in cascade)}</ul>"
            f'<form method=post action="{esc(action)}">{hidden("csrf_token", owner.csrf_token)}'
            "<button type=submit>Revoke them</button></form></div>"
        )
        return await _delegations_page(request, owner, principal, ctx, preview=box)

    return await _as_owner(request, tenant_id, preview)


@router.post(CONSOLE + "/{tenant_id}/delegations/{delegation_id}/revoke")
async def revoke_delegation(request: Request, tenant_id: str, delegation_id: str) -> Response:
    async def revoke(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        await _services(request).delegations.revoke(principal, delegation_id, ctx)
        notice = _notice("Delegation revoked, with every delegation and token resting on it.")
        return await _delegations_page(request, owner, principal, ctx, notice)

    return await _as_owner(request, tenant_id, revoke, post=True)


# -- connected clients and resource servers ----------------------------------------------------------------


async def _clients_page(
    request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext, notice: str = "",
    status: int = 200,
) -> Response:  # fmt: skip
    services, tenant_id = _services(request), principal.tenant_id
    base = f"{CONSOLE}/{quote(tenant_id)}/clients"
    clients = await services.owners.connected_clients(owner, tenant_id)
    servers = await services.resource_servers.list(principal, ctx, limit=100)
    csrf = hidden("csrf_token", owner.csrf_token)
    disconnect = {c.client_id for c in clients}
    rows = "".join(
        f'<tr data-client-id="{esc(c.client_id)}"><td><code>{esc(c.client_id)}</code></td>'
        f"<td>{esc(c.agent_name)}{'' if c.agent_acts else ' (as its owner)'}</td><td>{esc(' '.join(c.scopes))}</td>"
        f"<td>{_when(c.updated_at)}</td></tr>"
        for c in clients
    )
    buttons = "".join(
        f'<li><form class=inline method=post action="{esc(base)}/disconnect">{csrf}{hidden("client_id", client)}'
        f'<button type=submit aria-label="Disconnect {esc(client)}">Disconnect</button></form> '
        f"<code>{esc(client)}</code></li>"
        for client in sorted(disconnect)
    )
    server_rows = "".join(
        f'<tr data-server-id="{esc(r.id)}"><td>{esc(r.name)}</td><td><code>{esc(r.identifier)}</code></td>'
        f"<td>{esc(r.kind)}</td><td>{esc(' '.join(sc.name for sc in r.scopes))}</td><td>{esc(r.access)}</td></tr>"
        for r in servers.items
    )
    body = (
        f"{_STYLE}{_nav(tenant_id, base)}<h1>Connected clients</h1>{notice}"
        "<p class=muted>OAuth clients an owner let act in this tenant (the authorization code flow). Disconnect "
        "withdraws the consent and revokes every grant and token the client holds here; it must ask again.</p>"
        "<table id=clients><tr><th>Client</th><th>Acts as</th><th>Scopes</th><th>Consented</th></tr>"
        f"{rows}</table>" + (f"<ul id=disconnect>{buttons}</ul>" if buttons else "<p id=no-clients>None.</p>")
        + "<h2>Resource servers</h2><p class=muted>APIs and MCP servers tokens can be issued for (RFC 8707).</p>"
        "<table id=resource-servers><tr><th>Name</th><th>Identifier</th><th>Kind</th><th>Scopes</th><th>Access</th>"
        f"</tr>{server_rows}</table>"
    )  # fmt: skip
    return page("Connected clients", body, status=status)


@router.get(CONSOLE + "/{tenant_id}/clients")
async def clients(request: Request, tenant_id: str) -> Response:
    return await _as_owner(request, tenant_id, _clients_page)


@router.post(CONSOLE + "/{tenant_id}/clients/disconnect")
async def disconnect_client(request: Request, tenant_id: str) -> Response:
    async def disconnect(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        client_id = (await _form(request)).get("client_id", "")
        grants = await _services(request).owners.disconnect_client(owner, principal.tenant_id, client_id, ctx)
        notice = _notice(f"Client {client_id} disconnected; {grants} grant(s) revoked with their tokens.")
        return await _clients_page(request, owner, principal, ctx, notice)

    return await _as_owner(request, tenant_id, disconnect, post=True)


# -- policies ----------------------------------------------------------------------------------------------

ACTIONS = ("read", "write", "delete", "execute", "delegate", "admin")
_POLICY_EXAMPLE = {"agent_types": ["autonomous"]}


def _json_field(form: dict[str, str], name: str, default: object) -> object:
    text = form.get(name, "").strip()
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        raise InvalidRequest(f"{name} is not valid JSON") from None


def _policy_from(form: dict[str, str]) -> PolicyIn:
    """The policy the editor's form describes; InvalidRequest naming the field that is wrong."""
    try:
        priority = int(form.get("priority") or 0)
    except ValueError:
        raise InvalidRequest("priority must be a whole number") from None
    fields = {
        "name": form.get("name", ""),
        "description": form.get("description") or None,
        "effect": form.get("effect", ""),
        "subjects": _json_field(form, "subjects", {"all": True}),
        "actions": form.get("actions", "").split(),
        "resources": form.get("resources", "").split(),
        "conditions": _json_field(form, "conditions", {}),
        "priority": priority,
        "enabled": form.get("enabled", "on") == "on",
    }
    try:
        return PolicyIn.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "policy"
        raise InvalidRequest(f"{where}: {first['msg']}") from None


async def _policies_page(
    request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext, notice: str = "",
    status: int = 200, decision: str = "", asked: EvaluateRequest | None = None,
) -> Response:  # fmt: skip
    services, tenant_id = _services(request), principal.tenant_id
    base = f"{CONSOLE}/{quote(tenant_id)}/policies"

    def selected(value: str, chosen: str | None) -> str:
        return " selected" if value == chosen else ""

    listed = await services.policies.list(principal, ctx)
    agents = await services.agents.list(principal, PAGE_SIZE, 0, ctx)
    csrf = hidden("csrf_token", owner.csrf_token)
    rows = "".join(
        f'<tr data-policy-id="{esc(p.id)}"><td>{esc(p.name)}</td><td>{esc(p.effect)}</td><td>{p.priority}</td>'
        f"<td><code>{esc(json.dumps(p.subjects))}</code></td><td>{esc(' '.join(p.actions))}</td>"
        f"<td><code>{esc(' '.join(p.resources))}</code></td><td><code>{esc(json.dumps(p.conditions))}</code></td>"
        f"<td>{'on' if p.enabled else 'off'}</td><td><form class=inline method=post "
        f'action="{esc(base)}/{esc(quote(p.id))}/delete">{csrf}<button type=submit '
        f'aria-label="Delete {esc(p.name)}">Delete</button></form></td></tr>'
        for p in listed.items
    )
    agent_options = "".join(
        f'<option value="{esc(a.id)}"{selected(a.id, asked.agent_id if asked else None)}>{esc(a.name)}</option>'
        for a in agents.items
        if a.relationship == "member"
    )
    action_options = "".join(
        f'<option value="{a}"{selected(a, asked.action if asked else None)}>{a}</option>' for a in ACTIONS
    )
    resource = asked.resource if asked is not None else "/api/v1/agents"
    body = (
        f"{_STYLE}{_nav(tenant_id, base)}<h1>Policies</h1>{notice}"
        "<p class=muted>The highest priority matching policy decides; at equal priority deny wins. Without one, "
        "an agent may do what its scopes allow.</p>"
        "<table id=policies><tr><th>Name</th><th>Effect</th><th>Priority</th><th>Subjects</th><th>Actions</th>"
        f"<th>Resources</th><th>Conditions</th><th>Enabled</th><th></th></tr>{rows}</table>"
        f'<h2>Dry run (check_permission)</h2><form method=post action="{esc(base)}/evaluate">{csrf}'
        f"<label>Agent <select name=agent_id>{agent_options}</select></label>"
        f"<label>Action <select name=action>{action_options}</select></label>"
        f'<label>Resource <input type=text name=resource required value="{esc(resource)}"></label>'
        f"<button type=submit>Check</button></form>{decision}"
        f'<h2>New policy</h2><form method=post action="{esc(base)}">{csrf}'
        "<label>Name <input type=text name=name required maxlength=200></label>"
        "<label>Effect <select name=effect><option>deny</option><option>allow</option>"
        "<option>require_approval</option></select></label>"
        f"<label>Subjects (JSON; empty: everyone) <input type=text name=subjects "
        f"placeholder='{esc(json.dumps(_POLICY_EXAMPLE))}'></label>"
        "<label>Actions (space-separated: read write delete execute delegate admin, or *) "
        "<input type=text name=actions required></label>"
        "<label>Resources (space-separated path patterns: * one segment, ** any depth) "
        "<input type=text name=resources required></label>"
        "<label>Conditions (JSON, optional) <input type=text name=conditions></label>"
        "<label>Priority <input type=number name=priority value=0 min=-1000 max=1000></label>"
        "<button type=submit>Create policy</button></form>"
    )
    return page("Policies", body, status=status)


@router.get(CONSOLE + "/{tenant_id}/policies")
async def policies(request: Request, tenant_id: str) -> Response:
    return await _as_owner(request, tenant_id, _policies_page)


@router.post(CONSOLE + "/{tenant_id}/policies")
async def create_policy(request: Request, tenant_id: str) -> Response:
    async def create(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        try:
            body = _policy_from(await _form(request))
            made = await _services(request).policies.create(principal, body, ctx)
        except InvalidRequest as exc:
            return await _policies_page(request, owner, principal, ctx, _notice(exc.description, error=True), 400)
        return await _policies_page(request, owner, principal, ctx, _notice(f"Policy {made.name} created."))

    return await _as_owner(request, tenant_id, create, post=True)


@router.post(CONSOLE + "/{tenant_id}/policies/{policy_id}/delete")
async def delete_policy(request: Request, tenant_id: str, policy_id: str) -> Response:
    async def delete(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        await _services(request).policies.delete(principal, policy_id, ctx)
        return await _policies_page(request, owner, principal, ctx, _notice("Policy deleted."))

    return await _as_owner(request, tenant_id, delete, post=True)


@router.post(CONSOLE + "/{tenant_id}/policies/evaluate")
async def evaluate_policy(request: Request, tenant_id: str) -> Response:
    async def evaluate(request: Request, owner: OwnerSession, principal: Principal, ctx: RequestContext) -> Response:
        form = await _form(request)
        try:
            asked = EvaluateRequest.model_validate(
                {"agent_id": form.get("agent_id", ""), "action": form.get("action", ""),
                 "resource": form.get("resource", "")}
            )  # fmt: skip
        except ValidationError:
            notice = _notice("choose an agent and an action, and name a resource", error=True)
            return await _policies_page(request, owner, principal, ctx, notice, 400)
        decided = await _services(request).policies.evaluate(principal, asked, ctx)
        matched = decided.matched_policy or {}
        decision = (
            f'<div id=decision data-allowed="{str(decided.allowed).lower()}"><p><strong>'
            f"{'Allowed' if decided.allowed else 'Denied'}</strong> ({esc(decided.basis)}"
            + (f": policy {esc(matched.get('name', ''))}" if matched else "")
            + ")</p><ul>"
            + "".join(f"<li>{esc(reason)}</li>" for reason in decided.reasons)
            + "</ul></div>"
        )
        return await _policies_page(request, owner, principal, ctx, decision=decision, asked=asked)

    return await _as_owner(request, tenant_id, evaluate, post=True)
