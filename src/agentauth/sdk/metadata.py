"""RFC 9728 protected resource metadata for a resource server that accepts AgentAuth tokens: the document to serve
at ``/.well-known/oauth-protected-resource`` (plus the resource's path, if it has one - section 3.1), which MCP
clients read to find the authorization server (MCP authorization spec) and the ``WWW-Authenticate`` challenges
name with ``resource_metadata``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentauth.sdk.dpop import DPoPSettings
from agentauth.vc.dpop import SIGNING_ALGORITHMS


def dpop_metadata(dpop: DPoPSettings | None) -> dict[str, Any]:
    """The DPoP members of RFC 9728 section 2 for a server with these settings (none without DPoP):
    ``dpop_signing_alg_values_supported`` and ``dpop_bound_access_tokens_required`` (``require_dpop`` or
    ``require_agent_key``)."""
    if dpop is None:
        return {}
    return {
        "dpop_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "dpop_bound_access_tokens_required": dpop.dpop_only,
    }


def protected_resource_metadata(
    resource: str,
    issuer_url: str,
    *,
    scopes: Iterable[str] = (),
    dpop: DPoPSettings | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The RFC 9728 section 2 document of ``resource`` (its identifier: the ``aud`` its tokens carry) protected by
    the AgentAuth issuer at ``issuer_url``; ``extra`` adds or overrides members (``resource_name``,
    ``resource_documentation``, ...)."""
    document: dict[str, Any] = {
        "resource": resource,
        "authorization_servers": [issuer_url.rstrip("/")],
        "bearer_methods_supported": ["header"],
    }
    if scopes:
        document["scopes_supported"] = list(scopes)
    return document | dpop_metadata(dpop) | extra
