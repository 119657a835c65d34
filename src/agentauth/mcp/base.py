"""The server class the tools run in: it carries the backend the tools call (so the tool functions are plain
module-level functions, built into MCP tools once per process), routes every tool failure through
``errors.map_tool_error``, the one mapping, and shapes every successful result (``headline_first``)."""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, InputRequiredResult, TextContent

from agentauth import __version__
from agentauth.issuer.schemas import TokenResponse
from agentauth.mcp.backend import Backend, Operation, R
from agentauth.mcp.errors import map_tool_error
from agentauth.mcp.held import HeldCredential, SecretKeeper, is_placeholder
from agentauth.mcp.params import access_token_of, header_token, request_context
from agentauth.mcp.registry import TOOLS

# The secret an answer exists to hand over, first found wins: quickstart's api_key (it also carries a token
# pair), a new or rotated API key's raw_key, a token grant's access_token.
HEADLINE_SECRETS = ("api_key", "raw_key", "access_token")


def headline_first(result: CallToolResult) -> CallToolResult:
    """The first text item of an answer that hands out a secret is that secret alone, so a client reads it as
    ``result.content[0].text`` (the documented example does); the full result stays in ``structuredContent`` and
    follows as a JSON text item. Other answers and errors are left as they are."""
    structured = result.structured_content
    if result.is_error or not isinstance(structured, dict):
        return result
    for name in HEADLINE_SECRETS:
        secret = structured.get(name)
        if isinstance(secret, str):
            return result.model_copy(update={"content": [TextContent(type="text", text=secret), *result.content]})
    return result


class AgentAuthMCP(MCPServer[Any]):
    def __init__(
        self,
        backend: Backend,
        *,
        tools: list[Tool],
        instructions: str,
        default_api_key: str | None = None,
        held: HeldCredential | None = None,
    ) -> None:
        super().__init__("agentauth", title="AgentAuth", version=__version__, instructions=instructions, tools=tools)
        self.backend = backend
        # authenticate's fallback key: only ever set over stdio (over HTTP it would hand the operator's key to
        # every anonymous caller).
        self.default_api_key = default_api_key
        # stdio with a credentials file: the agent's credential (used when a tool gets no access_token), and the
        # keeper of the secrets results hand out (held.py).
        self.held = held
        self.keeper = SecretKeeper(held) if held is not None else None

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            result = await super().call_tool(name, arguments, context)
        except ToolError as exc:
            raise map_tool_error(name, exc, TOOLS.next_steps(name)) from None
        if not isinstance(result, CallToolResult):
            return result
        if self.keeper is not None and not result.is_error and isinstance(result.structured_content, dict):
            kept = self.keeper.keep(name, result.structured_content)
            if kept is not result.structured_content:
                text = TextContent(type="text", text=json.dumps(kept, indent=2))
                result = result.model_copy(update={"structured_content": kept, "content": [text]})
        return headline_first(result)


def _server(ctx: Context[Any, Any]) -> AgentAuthMCP:
    server = ctx.mcp_server
    if not isinstance(server, AgentAuthMCP):  # pragma: no cover - the tools are only ever registered on one
        raise TypeError("AgentAuth tools run in an AgentAuthMCP server")
    return server


def backend_of(ctx: Context[Any, Any]) -> Backend:
    return _server(ctx).backend


def held_of(ctx: Context[Any, Any]) -> HeldCredential | None:
    return _server(ctx).held


async def held_token_response(ctx: Context[Any, Any]) -> TokenResponse:
    """A new token pair of the held credential, as the token endpoint answered it."""
    held = _server(ctx).held
    assert held is not None
    return TokenResponse.model_validate(await held.renew(backend_of(ctx), request_context(ctx)))


def default_api_key_of(ctx: Context[Any, Any]) -> str | None:
    return _server(ctx).default_api_key


async def call(ctx: Context[Any, Any], access_token: str | None, operation: Operation[R]) -> R:
    """Run the operation of the tool being called - the one it was registered with - with ``operation``'s
    arguments, as the holder of the access token (argument, else the HTTP request's Authorization header): the
    backend authenticates it; the use case authorizes itself."""
    name = TOOLS.operation_of((ctx.request_context.params or {})["name"])
    token = await caller_token(ctx, access_token)
    return await backend_of(ctx).call(name, operation, token, request_context(ctx))


async def caller_token(ctx: Context[Any, Any], given: str | None) -> str:
    """The caller's access token: the argument, else the HTTP request's Authorization header, else (stdio with a
    credentials file) the token of the credential the server holds. A kept secret's placeholder passed back
    counts as no argument."""
    if given is not None and is_placeholder(given):
        given = None
    held = _server(ctx).held
    if given or header_token(ctx) or held is None:
        return access_token_of(given, ctx)
    return await held.access_token(backend_of(ctx), request_context(ctx))
