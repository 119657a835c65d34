"""The service's public URL layout: where the REST adapter serves each endpoint, defined once.

The REST routers mount at these paths; ``bootstrap`` hands the use cases the absolute URLs they embed in what
they issue (the token endpoint, an audience of jwt-bearer assertions per RFC 7523 section 3; the status-list
URL in every credential's ``credentialStatus``); the discovery documents list them. ``issuer/`` is told these
URLs and holds no REST path of its own.

Issued credentials and verifiers (``agentauth.sdk.mirror``) carry the status-list URLs: a path here, once
released, is part of every credential signed with it.
"""

from __future__ import annotations

API_V1 = "/api/v1"
AUTH = f"{API_V1}/auth"
TOKEN = f"{AUTH}/token"
INTROSPECT = f"{AUTH}/introspect"
REVOKE = f"{AUTH}/revoke"
BACKCHANNEL = f"{AUTH}/bc-authorize"  # OpenID CIBA Core section 7: the backchannel authentication endpoint
# RFC 7591 dynamic client registration: the RFC 8414 ``registration_endpoint``.
REGISTER = f"{AUTH}/register"
# The authorization endpoint (RFC 6749 section 3.1): a page for people, so outside the JSON API.
AUTHORIZE = "/authorize"
# Owner accounts (pages for people, like the authorization endpoint).
LOGIN = "/login"
SIGNUP = "/signup"
LOGOUT = "/logout"
ACCOUNT = "/account"
# The owner console (issue 17): an owner's tenants, agents, API keys and audit log.
CONSOLE = "/console"
AGENTS = f"{API_V1}/agents"
QUICKSTART = f"{AGENTS}/quickstart"
CREDENTIALS = f"{API_V1}/credentials"
DELEGATIONS = f"{API_V1}/delegations"
POLICIES = f"{API_V1}/policies"
EVALUATE = f"{POLICIES}/evaluate"
AUDIT_EVENTS = f"{API_V1}/audit/events"
RESOURCE_SERVERS = f"{API_V1}/resource-servers"
WEBHOOKS = f"{API_V1}/webhooks"
STATUS_LISTS = f"{API_V1}/status-lists"
JWKS = "/.well-known/jwks.json"
DID_DOCUMENT = "/.well-known/did.json"
MCP = "/mcp"
OPENAPI = "/openapi.json"
DOCS = "/docs"

# The ``endpoints`` of the agent configuration document, in the order it lists them.
ENDPOINTS = {
    "authorization_endpoint": AUTHORIZE,
    "token_endpoint": TOKEN,
    "registration_endpoint": REGISTER,
    "jwks_uri": JWKS,
    "did_document": DID_DOCUMENT,
    "agents_endpoint": AGENTS,
    "quickstart_endpoint": QUICKSTART,
    "credentials_endpoint": CREDENTIALS,
    "delegations_endpoint": DELEGATIONS,
    "policies_endpoint": POLICIES,
    "evaluate_endpoint": EVALUATE,
    "introspection_endpoint": INTROSPECT,
    "revocation_endpoint": REVOKE,
    "backchannel_authentication_endpoint": BACKCHANNEL,
    "audit_endpoint": AUDIT_EVENTS,
    "status_lists_endpoint": STATUS_LISTS,
    "mcp_endpoint": MCP,
    "openapi": OPENAPI,
    "docs": DOCS,
}


def endpoint_urls(base: str) -> dict[str, str]:
    """``ENDPOINTS`` as absolute URLs under the issuer URL ``base``."""
    return {name: f"{base}{path}" for name, path in ENDPOINTS.items()}


def status_list_url_template(base: str) -> str:
    """The URL of status list ``{list_id}`` (a ``str.format`` template), under the issuer URL ``base``."""
    return f"{base.rstrip('/')}{STATUS_LISTS}/{{list_id}}"


# A list's twin of purpose ``suspension`` is published at the list's URL followed by this.
SUSPENSION_SUFFIX = "/suspension"


def status_list_url_templates(base: str) -> dict[str, str]:
    """Per status purpose, the URL template of list ``{list_id}`` (revocation) and of its suspension twin."""
    revocation = status_list_url_template(base)
    return {"revocation": revocation, "suspension": revocation + SUSPENSION_SUFFIX}
