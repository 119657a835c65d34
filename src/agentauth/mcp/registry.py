"""The one MCP tool registry: each tool is registered once, where its function is defined, with everything the
server needs about it - its schema (from the typed signature, as the MCP SDK derives it), its place in the list,
its hints (MCP tool annotations), the operation it runs and any error hints of its own.

    @tool(order=13, hints=read_only("Get an agent"), operation="agents.get")
    async def get_agent(agent_id: ..., ctx: Context, access_token: AccessToken = None) -> AgentOut: ...

The served tools and their order are the registry's (``server.tool_set``), so a tool cannot be registered and
not served; a test fails when an operation of the REST API has no tool (``operations.OPERATIONS``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mcp_types import ToolAnnotations

from agentauth.issuer.operations import operation as api_operation

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ToolEntry:
    name: str
    fn: Callable[..., Any]
    hints: ToolAnnotations
    order: int
    # The operation the tool runs (issuer/operations.py); None for the tools of an agent's own identity and tokens,
    # which call the grant, introspection and revocation endpoints or verify offline.
    operation: str | None
    # Error code -> what to do next, for this tool, in place of errors.NEXT_STEP's general sentence.
    next_steps: Mapping[str, str] = field(default_factory=dict)


class ToolRegistry:
    def __init__(self) -> None:
        self._entries: dict[str, ToolEntry] = {}

    def tool(
        self,
        *,
        order: int,
        hints: ToolAnnotations,
        operation: str | None = None,
        next_steps: Mapping[str, str] | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as the tool of its name. A name or a place taken twice, or an unknown
        operation, fails at import."""

        def register(fn: F) -> F:
            name = fn.__name__
            if name in self._entries:
                raise ValueError(f"MCP tool {name} is registered twice")
            taken = [e.name for e in self._entries.values() if e.order == order]
            if taken:
                raise ValueError(f"MCP tool {name}: order {order} is {taken[0]}'s")
            if operation is not None:
                api_operation(operation)  # an unknown operation fails here
            if hints.title is None:
                raise ValueError(f"MCP tool {name} needs a title")
            self._entries[name] = ToolEntry(name, fn, hints, order, operation, dict(next_steps or {}))
            return fn

        return register

    def operation_of(self, name: str) -> str:
        """The operation the tool ``name`` runs; a tool registered without one has none to run."""
        operation = self._entries[name].operation
        if operation is None:
            raise LookupError(f"MCP tool {name} runs no operation of the API")
        return operation

    def entries(self) -> tuple[ToolEntry, ...]:
        """Every registered tool, in its order: what the server serves."""
        return tuple(sorted(self._entries.values(), key=lambda e: e.order))

    def next_steps(self, name: str) -> Mapping[str, str]:
        entry = self._entries.get(name)
        return entry.next_steps if entry is not None else {}


TOOLS = ToolRegistry()
tool = TOOLS.tool
