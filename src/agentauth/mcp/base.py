"""The server class the tools run in: it carries the backend the tools call (so the tool functions are plain
module-level functions, built into MCP tools once per process) and routes every tool failure through
``errors.map_tool_error``, the one mapping."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, InputRequiredResult

from agentauth import __version__
from agentauth.mcp.backend import Backend
from agentauth.mcp.errors import map_tool_error


class AgentAuthMCP(MCPServer[Any]):
    def __init__(
        self, backend: Backend, *, tools: list[Tool], instructions: str, default_api_key: str | None = None
    ) -> None:
        super().__init__("agentauth", title="AgentAuth", version=__version__, instructions=instructions, tools=tools)
        self.backend = backend
        # authenticate's fallback key: only ever set over stdio (over HTTP it would hand the operator's key to
        # every anonymous caller).
        self.default_api_key = default_api_key

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            raise map_tool_error(name, exc) from None


def _server(ctx: Context[Any, Any]) -> AgentAuthMCP:
    server = ctx.mcp_server
    if not isinstance(server, AgentAuthMCP):  # pragma: no cover - the tools are only ever registered on one
        raise TypeError("AgentAuth tools run in an AgentAuthMCP server")
    return server


def backend_of(ctx: Context[Any, Any]) -> Backend:
    return _server(ctx).backend


def default_api_key_of(ctx: Context[Any, Any]) -> str | None:
    return _server(ctx).default_api_key
