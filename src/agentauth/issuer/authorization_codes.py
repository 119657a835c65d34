"""The authorization endpoint's use cases (RFC 6749 section 4.1, OAuth 2.1 section 4.1, RFC 7636, RFC 9207):
check an authorization request, record an owner's consent as a single-use code, and the redirect back.

``check`` follows RFC 6749 section 4.1.2.1: while the client or its redirect URI is in doubt nothing may be sent
to the redirect URI (``PageError``: the person sees the reason); once both are established, every other problem
goes back to the client as a redirect with ``error`` (``RedirectError``). PKCE is required of every client, with
S256 only (OAuth 2.1 section 7.5.1; RFC 9700 section 2.1.1). Codes are 256 random bits, kept as their keyed hash,
valid ``CODE_TTL`` and redeemed once (``grants/authorization_code.py``). Consents are kept per owner, client and
acting agent; a step-up asks only for what was not consented yet and adds it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import bindparam, delete, select

from agentauth.errors import AgentAuthError, InvalidClientMetadataDocument, InvalidRequest
from agentauth.issuer import audit
from agentauth.issuer.audience import Target, resource_param
from agentauth.issuer.clients import ClientDirectory, OAuthClient, redirect_uri_matches
from agentauth.issuer.context import RequestContext
from agentauth.issuer.core import IssuerCore, new_id
from agentauth.storage.models import AuditEventRow, AuthorizationCodeRow, ConsentRow
from agentauth.storage.ports import Execute, Insert, Query, WritePlan
from agentauth.storage.records import Agent

GRANT_AUTHORIZATION_CODE = "authorization_code"
CODE_TTL = timedelta(seconds=60)  # RFC 6749 section 4.1.2: "A maximum authorization code lifetime of 10 minutes"
# RFC 7636 section 4.2: the S256 challenge is BASE64URL(SHA256(verifier)) - 43 characters, no padding.
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
STATE_MAX = 2048
OWN_API = ""  # the resource key of AgentAuth's own API in a consent


class PageError(AgentAuthError):
    """An authorization request that must not be answered at its redirect URI (unknown client, bad redirect URI):
    shown to the person instead (RFC 6749 section 4.1.2.1)."""

    status_code = 400
    error = "invalid_request"


class RedirectError(Exception):
    """An error the client gets at its redirect URI (RFC 6749 section 4.1.2.1)."""

    def __init__(self, location: str, error: str, description: str) -> None:
        super().__init__(description)
        self.location, self.error, self.description = location, error, description


@dataclass(frozen=True)
class AuthorizationRequest:
    client: OAuthClient
    redirect_uri: str
    redirect_uri_given: bool
    state: str | None
    code_challenge: str
    scope: str | None
    resources: tuple[str, ...]
    prompt: frozenset[str]
    dpop_jkt: str | None = None  # RFC 9449 section 10: the code is redeemed only with a proof by this key

    def params(self) -> dict[str, Any]:
        """The request as authorization parameters again (to carry through the login and consent pages)."""
        out: dict[str, Any] = {
            "response_type": "code",
            "client_id": self.client.client_id,
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
        }
        if self.redirect_uri_given:
            out["redirect_uri"] = self.redirect_uri
        for name, value in (("state", self.state), ("scope", self.scope), ("dpop_jkt", self.dpop_jkt)):
            if value is not None:
                out[name] = value
        if self.resources:
            out["resource"] = list(self.resources)
        if self.prompt:
            out["prompt"] = " ".join(sorted(self.prompt))
        return out


def redirect_to(redirect_uri: str, issuer: str, state: str | None, **values: str) -> str:
    """``redirect_uri`` with ``values``, ``state`` and RFC 9207's ``iss`` added to its query (section 4.1.2: the
    redirect URI's own query is kept)."""
    parts = urlsplit(redirect_uri)
    added = dict(values) | ({"state": state} if state is not None else {}) | {"iss": issuer}
    query = f"{parts.query}&{urlencode(added)}" if parts.query else urlencode(added)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def consent_keys(target: Target) -> frozenset[str]:
    """A consent's scopes, each qualified by its resource ("<resource>#<scope>"; identifiers have no fragment)."""
    resources = target.resources if target.resources is not None else (OWN_API,)
    return frozenset(f"{r}#{s}" for r in resources for s in target.scopes)


def _single(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if isinstance(value, list):
        raise InvalidRequest(f"parameter {name} given more than once")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > STATE_MAX:
        raise InvalidRequest(f"parameter {name} is malformed or too long")
    return value


_CONSENTED = select(ConsentRow.scopes).where(
    ConsentRow.owner_id == bindparam("owner"),
    ConsentRow.client_id == bindparam("client"),
    ConsentRow.agent_id == bindparam("agent"),
    ConsentRow.agent_acts == bindparam("acts"),
)
_FORGET_CONSENT = delete(ConsentRow).where(
    ConsentRow.owner_id == bindparam("owner"),
    ConsentRow.client_id == bindparam("client"),
    ConsentRow.agent_id == bindparam("agent"),
    ConsentRow.agent_acts == bindparam("acts"),
)


class AuthorizationService:
    def __init__(self, core: IssuerCore, clients: ClientDirectory) -> None:
        self.core = core
        self.clients = clients

    async def check(self, params: dict[str, Any]) -> AuthorizationRequest:
        """An authorization request's parameters checked, in RFC 6749 section 4.1.2.1's order."""
        try:
            client_id = _single(params, "client_id")
            given = _single(params, "redirect_uri")
        except InvalidRequest as exc:
            raise PageError(exc.description) from exc
        if client_id is None:
            raise PageError("the request names no client (client_id is missing)")
        try:
            client = await self.clients.resolve(client_id)
        except InvalidClientMetadataDocument as exc:
            raise PageError(f"the client's metadata document cannot be used: {exc.description}") from exc
        if client is None:
            raise PageError("the client is unknown, or its metadata document could not be used", debug=client_id)
        if client.source == "agent":
            raise PageError("an agent's own client_id cannot be used at the authorization endpoint")
        if given is None:
            if len(client.redirect_uris) != 1:
                raise PageError("redirect_uri is required: the client registered more than one")
            redirect_uri = client.redirect_uris[0]
        elif redirect_uri_matches(client.redirect_uris, given):
            redirect_uri = given
        else:
            raise PageError("redirect_uri is not one the client registered", debug=f"{client_id}: {given}")
        return await self._check_rest(params, client, redirect_uri, given is not None)

    async def _check_rest(
        self, params: dict[str, Any], client: OAuthClient, redirect_uri: str, given: bool
    ) -> AuthorizationRequest:
        """The checks once the client and its redirect URI are established: each failure is a redirect."""
        try:
            state = _single(params, "state")
        except InvalidRequest as exc:
            raise RedirectError(redirect_uri, "invalid_request", exc.description) from exc

        def refuse(error: str, description: str) -> RedirectError:
            return RedirectError(redirect_to(redirect_uri, self.core.issuer_url, state, error=error,
                                             error_description=description), error, description)  # fmt: skip

        try:
            response_type = _single(params, "response_type")
            challenge = _single(params, "code_challenge")
            method = _single(params, "code_challenge_method")
            scope = _single(params, "scope")
            prompt = frozenset((_single(params, "prompt") or "").split())
            dpop_jkt = _single(params, "dpop_jkt")
            if _single(params, "request") or _single(params, "request_uri"):
                raise refuse("request_not_supported", "request objects are not supported")
        except InvalidRequest as exc:
            raise refuse("invalid_request", exc.description) from exc
        if response_type != "code":
            raise refuse("unsupported_response_type", "response_type must be code")
        if GRANT_AUTHORIZATION_CODE not in client.grant_types:
            raise refuse("unauthorized_client", "the client did not register the authorization_code grant")
        if challenge is None:
            raise refuse("invalid_request", "PKCE is required: code_challenge is missing")
        if method != "S256":
            raise refuse("invalid_request", "code_challenge_method must be S256")
        if not CHALLENGE.fullmatch(challenge):
            raise refuse("invalid_request", "code_challenge must be 43 base64url characters (S256)")
        if dpop_jkt is not None and not CHALLENGE.fullmatch(dpop_jkt):
            # Section 10: "the JWK SHA-256 Thumbprint": 43 base64url characters, like an S256 challenge.
            raise refuse("invalid_request", "dpop_jkt must be a JWK SHA-256 thumbprint (43 base64url characters)")
        if "none" in prompt and len(prompt) > 1:
            raise refuse("invalid_request", "prompt=none cannot be combined with other values")
        try:
            resources = resource_param(params)
        except AgentAuthError as exc:
            raise refuse(exc.error, exc.description) from exc
        return AuthorizationRequest(
            client=client, redirect_uri=redirect_uri, redirect_uri_given=given, state=state,
            code_challenge=challenge, scope=scope, resources=resources, prompt=prompt, dpop_jkt=dpop_jkt,
        )  # fmt: skip

    async def target(self, request: AuthorizationRequest, owner_id: str, agent: Agent, agent_acts: bool) -> Target:
        """What a consent grants acting as ``agent``: its resources and scopes (RFC 8707), or the redirect error
        (``invalid_target``, ``invalid_scope``). A step-up (a request for one resource, from a client the owner
        already let act so) adds the requested scopes to those consented before: the token holds both."""
        resolve = self.core.audience.resolve
        try:
            target = await resolve(agent.tenant_id, request.resources, request.scope, agent.scopes)
        except AgentAuthError as exc:
            raise RedirectError(self.error(request, exc.error, exc.description), exc.error, exc.description) from exc
        keys = target.resources if target.resources is not None else (OWN_API,)
        if len(keys) != 1:
            return target
        prior = await self.consented(owner_id, request.client.client_id, agent, agent_acts)
        before = [k.split("#", 1)[1] for k in sorted(prior) if k.split("#", 1)[0] == keys[0]]
        extra = [s for s in before if s not in target.scopes]
        if not extra:
            return target
        try:  # a scope consented before that the resource no longer defines (or the agent lost) is dropped
            return await resolve(agent.tenant_id, request.resources, " ".join((*target.scopes, *extra)), agent.scopes)
        except AgentAuthError:
            return target

    def error(self, request: AuthorizationRequest, error: str, description: str) -> str:
        """Where an error after the checks sends the browser (RFC 6749 section 4.1.2.1)."""
        return redirect_to(
            request.redirect_uri, self.core.issuer_url, request.state, error=error, error_description=description
        )

    async def consented(self, owner_id: str, client_id: str, agent: Agent, agent_acts: bool) -> frozenset[str]:
        params = {"owner": owner_id, "client": client_id, "agent": agent.id, "acts": agent_acts}
        (rows,) = await self.core.ports.reads.fetch(Query(_CONSENTED, params))
        return frozenset(rows[0][0]) if rows else frozenset()

    def denied(self, request: AuthorizationRequest) -> str:
        """Where the person's refusal sends the browser (RFC 6749 section 4.1.2.1 ``access_denied``)."""
        return self.error(request, "access_denied", "the resource owner denied the request")

    async def approve(
        self,
        request: AuthorizationRequest,
        owner_id: str,
        agent: Agent,
        agent_acts: bool,
        target: Target,
        ctx: RequestContext,
    ) -> str:
        """Record the consent and a new code; the URL the browser goes to next (RFC 6749 section 4.1.2)."""
        now = self.core.clock()
        code = secrets.token_urlsafe(32)
        consent = await self.consented(owner_id, request.client.client_id, agent, agent_acts)
        scopes = sorted(consent | consent_keys(target))
        key = {"owner": owner_id, "client": request.client.client_id, "agent": agent.id, "acts": agent_acts}
        event = audit.event(
            ctx, now, action="authorization.granted", tenant_id=agent.tenant_id, actor=owner_id,
            target_type="client", target_id=request.client.client_id[:100],
            details={"agent": agent.id if agent_acts else None, "scope": " ".join(target.scopes),
                     "resources": list(target.resources or ())},
        )  # fmt: skip
        await self.core.ports.writes.run(
            WritePlan((
                Execute(_FORGET_CONSENT, key),
                Insert.of(ConsentRow.__table__, {
                    "owner_id": owner_id, "client_id": request.client.client_id, "agent_id": agent.id,
                    "agent_acts": agent_acts, "scopes": scopes, "updated_at": now,
                }),
                Insert.of(AuthorizationCodeRow.__table__, {
                    "code_hash": self.core.hasher.hash(code), "client_id": request.client.client_id,
                    "redirect_uri": request.redirect_uri, "redirect_uri_given": request.redirect_uri_given,
                    "code_challenge": request.code_challenge, "owner_id": owner_id, "agent_id": agent.id,
                    "agent_acts": agent_acts, "tenant_id": agent.tenant_id, "scopes": list(target.scopes),
                    "resources": list(target.resources) if target.resources is not None else None,
                    "family_id": new_id("rtf"), "created_at": now, "expires_at": now + CODE_TTL, "used_at": None,
                    "dpop_jkt": request.dpop_jkt,
                }),
                Insert.of(AuditEventRow.__table__, event),
            ))
        )  # fmt: skip
        return redirect_to(request.redirect_uri, self.core.issuer_url, request.state, code=code)
