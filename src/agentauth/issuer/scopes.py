"""The scope catalogue (RFC 6749 section 3.3 scope tokens) and the agent vocabularies.

A root agent made by quickstart holds every scope; everything it creates (child agents, API keys, tokens,
delegations) holds a subset of what its creator holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from agentauth.errors import InvalidScope

SCOPES: Final[dict[str, str]] = {
    "api.read": "Call read operations of resource servers that accept AgentAuth tokens.",
    "api.write": "Call write operations of resource servers that accept AgentAuth tokens.",
    "agents.read": "Read agents in your subtree.",
    "agents.write": "Create, update and deactivate agents in your subtree.",
    "credentials.read": "List API keys in your subtree (never their secrets).",
    "credentials.write": "Create, rotate and revoke API keys in your subtree.",
    "delegations.read": "Read delegations you granted or received.",
    "delegations.write": "Delegate your authority to other agents of your tenant, and revoke delegations.",
    "policies.read": "Read your tenant's policies and evaluate permissions.",
    "policies.write": "Create, change and delete your tenant's policies.",
    "tokens.introspect": "Introspect tokens of your tenant (RFC 7662).",
    "audit.read": "Read your tenant's audit log.",
    "resource_servers.read": "Read the resource servers (APIs, MCP servers) your tenant registered.",
    "resource_servers.write": "Register, change and delete your tenant's resource servers (tenant root only).",
    "webhooks.read": "Read your tenant's webhooks and their delivery log.",
    "webhooks.write": "Create, change and delete your tenant's webhooks (tenant root only).",
}
ALL_SCOPES: Final = tuple(SCOPES)

AGENT_TYPES: Final = ("orchestrator", "autonomous", "assistant", "tool")
# Ordered lowest to highest: an agent never creates a child above its own level.
TRUST_LEVELS: Final = ("untrusted", "basic", "verified", "trusted")
DEFAULT_TRUST_LEVEL: Final = "basic"


def parse_scope(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """A ``scope`` parameter (space-separated string or list) as an ordered, de-duplicated tuple; None if absent."""
    if value is None:
        return None
    items = value.split() if isinstance(value, str) else list(value)
    if not all(isinstance(s, str) for s in items):
        raise InvalidScope("scope must be a space-separated string or a list of strings")
    unknown = sorted({s for s in items if s not in SCOPES})
    if unknown:
        raise InvalidScope(f"unknown scope(s): {', '.join(unknown)}")
    return tuple(dict.fromkeys(items))


def narrow(requested: tuple[str, ...] | None, allowed: Iterable[str]) -> tuple[str, ...]:
    """``requested`` if it is a subset of ``allowed`` (RFC 6749 section 3.3), else ``invalid_scope``.

    No request means everything allowed.
    """
    allowed_t = tuple(allowed)
    if requested is None:
        return allowed_t
    excess = sorted(set(requested) - set(allowed_t))
    if excess:
        raise InvalidScope(f"scope exceeds what is granted: {', '.join(excess)}")
    return requested
