"""The operations of AgentAuth's own API, each defined once: a name, the policy engine's action and the resource
it acts on (a path template filled with the ids of the call).

The action of an operation is a property of the operation, not of the HTTP verb that reaches it (issue 12,
item 3: ``POST /agents/{id}/deactivate`` and the MCP ``revoke_credential`` tool once counted as ``write`` while
their ``DELETE`` twins counted as ``delete``, so a deny on ``delete`` was bypassed). REST routes and MCP tools
name the operation they run (``api/deps.py: authorize``, ``mcp/backend.py: Operation.name``); twins name the
same one and are judged alike, on the same resource.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from agentauth.issuer.policy_engine import ACTIONS


@dataclass(frozen=True, slots=True)
class ApiOperation:
    name: str
    action: str
    resource: str  # "api/v1/agents/{agent_id}": what policies match, the ids of the call filled in

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"operation {self.name}: unknown action {self.action!r}")

    @property
    def params(self) -> frozenset[str]:
        return frozenset(f for _, f, _, _ in string.Formatter().parse(self.resource) if f)

    def resource_for(self, ids: Mapping[str, str]) -> str:
        """The resource of one call; exactly the template's ids must be given."""
        if set(ids) != self.params:
            raise ValueError(f"operation {self.name} takes {sorted(self.params)}, given {sorted(ids)}")
        return self.resource.format_map(ids)


def _table(*operations: ApiOperation) -> dict[str, ApiOperation]:
    table = {op.name: op for op in operations}
    assert len(table) == len(operations), "an operation name is defined twice"
    return table


OPERATIONS: Final = _table(
    ApiOperation("agents.create", "write", "api/v1/agents"),
    ApiOperation("agents.list", "read", "api/v1/agents"),
    ApiOperation("agents.get", "read", "api/v1/agents/{agent_id}"),
    ApiOperation("agents.update", "write", "api/v1/agents/{agent_id}"),
    ApiOperation("agents.deactivate", "delete", "api/v1/agents/{agent_id}"),
    ApiOperation("credentials.create", "write", "api/v1/credentials"),
    ApiOperation("credentials.list", "read", "api/v1/credentials"),
    ApiOperation("credentials.get", "read", "api/v1/credentials/{credential_id}"),
    ApiOperation("credentials.rotate", "write", "api/v1/credentials/{credential_id}/rotate"),
    ApiOperation("credentials.revoke", "delete", "api/v1/credentials/{credential_id}"),
    ApiOperation("delegations.create", "delegate", "api/v1/delegations"),
    ApiOperation("delegations.list", "read", "api/v1/delegations"),
    ApiOperation("delegations.get", "read", "api/v1/delegations/{delegation_id}"),
    ApiOperation("delegations.chain", "read", "api/v1/delegations/{delegation_id}/chain"),
    ApiOperation("delegations.revoke", "delete", "api/v1/delegations/{delegation_id}"),
    ApiOperation("policies.evaluate", "read", "api/v1/policies/evaluate"),  # a dry run: it changes nothing
    ApiOperation("policies.create", "write", "api/v1/policies"),
    ApiOperation("policies.list", "read", "api/v1/policies"),
    ApiOperation("policies.get", "read", "api/v1/policies/{policy_id}"),
    ApiOperation("policies.replace", "write", "api/v1/policies/{policy_id}"),
    ApiOperation("policies.delete", "delete", "api/v1/policies/{policy_id}"),
    ApiOperation("audit.list", "read", "api/v1/audit/events"),
)


def operation(name: str) -> ApiOperation:
    """The operation named ``name``; an unknown name fails where it is declared (at import), never silently."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise LookupError(f"no operation named {name!r} in agentauth.issuer.operations") from None
