"""The MCP server with every tool, and the schema difference between transports.

Over HTTP an access token may come from the ``Authorization: Bearer`` header, so ``access_token`` is optional in
the tools' schemas; over stdio there are no headers and the schema marks it required, as the MCP issue documents
- unless the server holds the agent's credential (a credentials file), when it is optional again.
"""

from __future__ import annotations

import functools
import logging

from mcp.server.mcpserver.tools import Tool

# Importing the tool modules registers their tools (registry.tool): every tool of AgentAuth is in one of them.
from agentauth.mcp import approvals, delegations, identity, policies, resource_servers, tenant, webhooks  # noqa: F401
from agentauth.mcp.backend import Backend
from agentauth.mcp.base import AgentAuthMCP
from agentauth.mcp.held import HeldCredential
from agentauth.mcp.params import ACCESS_TOKEN_HELP, HELD_HELP
from agentauth.mcp.registry import TOOLS

INSTRUCTIONS = """\
AgentAuth gives you (an AI agent) a verifiable identity and OAuth tokens.
1. No identity yet: call quickstart once. Save api_key, private_key_jwk and refresh_token at once: they are
   shown only once. Already have an API key: call authenticate.
2. Pass access_token to the other tools. It expires at expires_at; call refresh_token (with your refresh token)
   before refresh_before, and save the new refresh token: each one works only once.
3. Manage what you own: create_agent (sub-agents), create_credential / rotate_credential / revoke_credential
   (API keys), create_delegation / exchange_delegation / revoke_delegation (lend scopes to another agent),
   check_permission (dry-run a policy decision), verify_token (check any AgentAuth token offline).
4. A tenant root also sets its tenant's policies (create_policy, list_policies, replace_policy, delete_policy)
   and reads its audit log (list_audit_events).
Errors read "<error code>: <what went wrong>. <what to do next>".
"""
HELD_INSTRUCTIONS = """\
AgentAuth gives you (an AI agent) a verifiable identity and OAuth tokens. This server holds your agent's
credential and authenticates for you: call the tools without access_token (no identity yet: call quickstart once;
its credentials are stored for you). Secrets - API keys, tokens, webhook secrets - never appear in results: a
result names the file (readable by the user only) they were stored in. Never ask for or repeat a secret.
Manage what you own: create_agent, create_credential / rotate_credential / revoke_credential, create_delegation /
exchange_delegation / revoke_delegation, check_permission, verify_token; a tenant root also sets policies, reads
its audit log and manages resource servers and webhooks.
Errors read "<error code>: <what went wrong>. <what to do next>".
"""

# Where the caller may be the token itself, access_token stays optional on every transport.
SELF_AUTHENTICATING = ("introspect_token", "revoke_token")


def _require_access_token(tool: Tool) -> None:
    properties = tool.parameters.get("properties", {})
    if "access_token" in properties and tool.name not in SELF_AUTHENTICATING:
        properties["access_token"] = {"type": "string", "title": "Access Token", "description": ACCESS_TOKEN_HELP}
        required = tool.parameters.setdefault("required", [])
        if "access_token" not in required:
            required.append("access_token")


def _held_access_token(tool: Tool) -> None:
    properties = tool.parameters.get("properties", {})
    if "access_token" in properties and tool.name not in SELF_AUTHENTICATING:
        properties["access_token"] = properties["access_token"] | {"description": HELD_HELP}


@functools.cache
def tool_set(token_in_header: bool, held: bool = False) -> tuple[Tool, ...]:
    """The tools with their schemas, built once per process (deriving the schemas costs ~0.1 s; every app and
    server instance shares them - they hold no state). ``held``: the server holds the agent's credential, so
    access_token is optional and says so."""
    tools = []
    for entry in TOOLS.entries():
        tool = Tool.from_function(entry.fn, name=entry.name, annotations=entry.hints, title=entry.hints.title)
        if held:
            _held_access_token(tool)
        elif not token_in_header:
            _require_access_token(tool)
        tools.append(tool)
    return tuple(tools)


def build_server(
    backend: Backend,
    *,
    token_in_header: bool,
    default_api_key: str | None = None,
    held: HeldCredential | None = None,
) -> AgentAuthMCP:
    """Every tool over ``backend``. ``token_in_header``: the transport is HTTP, so an access token may come from
    the Authorization header; ``default_api_key``: authenticate's fallback key (stdio only); ``held``: the agent
    credential of a credentials file (stdio only) - tools called without access_token act as that agent and the
    secrets results hand out are kept in files (``held.py``)."""
    root = logging.getLogger()
    guard = logging.NullHandler()
    if not root.handlers:
        # MCPServer calls logging.basicConfig; the host (CLI, uvicorn, tests) decides how logs look, not the SDK.
        root.addHandler(guard)
    try:
        return AgentAuthMCP(
            backend,
            tools=list(tool_set(token_in_header, held is not None)),
            instructions=INSTRUCTIONS if held is None else HELD_INSTRUCTIONS,
            default_api_key=default_api_key,
            held=held,
        )
    finally:
        root.removeHandler(guard)
