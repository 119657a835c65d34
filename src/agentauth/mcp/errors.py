"""The one place MCP maps failures to tool errors (``isError`` results the model reads and acts on).

* ``AgentAuthError`` (an agent's mistake: bad token, missing scope, unknown id): ``"<rfc error code>: <public
  description>. <what to do next>"``, logged at INFO with its private debug text.
* Arguments that fail the tool's input schema: ``invalid_request`` naming the fields (never echoing the values,
  which may be secrets).
* Storage failures arrive translated (``storage/failures.py``), as ``AgentAuthError`` like the rest: a database
  outage is ``temporarily_unavailable``, a taken unique value ``conflict`` - the same answers as REST.
* Anything else: a generic ``server_error``; the exception is logged with its traceback, never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from pydantic import ValidationError

from agentauth.errors import AgentAuthError, RateLimited

log = logging.getLogger("agentauth.mcp")

# A sentence per RFC error code telling the model what to do next.
NEXT_STEP: dict[str, str] = {
    "invalid_token": "Get a fresh access token with authenticate (or refresh_token) and pass it as access_token.",
    "insufficient_scope": "Your access token lacks the scope this tool needs: authenticate with a key that holds it "
    "(see discover for the scope list) or ask the agent above you to delegate it.",
    "invalid_client": "The API key was not accepted: check it, or call quickstart to register and get one.",
    "invalid_grant": "That refresh token or delegation can no longer be used: call authenticate with your API key "
    "for a new token pair.",
    "invalid_scope": "Ask only for scopes listed by discover that your key or token already holds.",
    "unsupported_grant_type": "Use one of the grant types listed by discover.",
    "invalid_request": "Correct the arguments named above and call the tool again.",
    "access_denied": "This is not permitted for you; do not retry it unchanged.",
    "not_found": "The id does not exist in your part of the tenant: list_agents, list_credentials and "
    "list_delegations show the ids you can use.",
    "conflict": "The object is not in a state that allows this (for example it is already revoked).",
    "temporarily_unavailable": "Retry in a few seconds.",
    "server_error": "Retry later; if it persists, report it to the operator of this AgentAuth.",
}


def describe(exc: AgentAuthError, next_steps: Mapping[str, str] | None = None) -> str:
    """``code: description. next step`` - the text of the tool error; ``next_steps``: the tool's own (registry)."""
    text = f"{exc.error}: {exc.description.rstrip('.')}."
    if isinstance(exc, RateLimited):
        return f"{text} Wait {exc.retry_after} seconds before calling again."
    step = (next_steps or {}).get(exc.error) or NEXT_STEP.get(exc.error)
    return f"{text} {step}" if step else text


def validation_problems(exc: ValidationError) -> str:
    """Which fields are wrong and why - never the rejected values, which may be secrets."""
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(problems) or "invalid arguments"


def map_tool_error(tool: str, error: ToolError, next_steps: Mapping[str, str] | None = None) -> ToolError:
    """The tool error to return for ``error`` raised while running ``tool`` (its ``__cause__`` is the original);
    ``next_steps``: the tool's own error hints (``registry.ToolEntry``)."""
    cause = error.__cause__
    if isinstance(cause, AgentAuthError):
        if cause.debug:
            log.info("tool %s -> %s: %s", tool, cause.error, cause.debug)
        return ToolError(describe(cause, next_steps))
    if isinstance(cause, ValidationError) and not isinstance(error, UnexpectedToolError):
        # The arguments do not match the input schema (a ValidationError raised inside a tool is a bug).
        return ToolError(f"invalid_request: {validation_problems(cause)}. {NEXT_STEP['invalid_request']}")
    if cause is None:
        return error  # raised by the SDK itself, e.g. an unknown tool name
    log.error("tool %s failed unexpectedly", tool, exc_info=cause)
    return ToolError(describe(AgentAuthError("the server could not complete the request")))
