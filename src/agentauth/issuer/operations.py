"""The operations of AgentAuth's own API, each defined once: a name, the policy engine's action, the resource
it acts on (a path template filled with the ids of the call), the scopes it requires and the rules on who may
run it at all (``lasting``, ``root_only``).

Each use case binds its operation (``issuer/authorization.py: use_case``) and so authorizes itself, in one call,
whichever adapter runs it: REST routes and MCP tools only authenticate the caller and call the use case. The
action is a property of the operation, not of the HTTP verb that reaches it (issue 12, item 3: ``POST
/agents/{id}/deactivate`` and the MCP ``revoke_credential`` tool once counted as ``write`` while their ``DELETE``
twins counted as ``delete``, so a deny on ``delete`` was bypassed); twins run the same use case and are judged
alike, on the same resource.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from agentauth.issuer.policy_engine import ACTIONS
from agentauth.issuer.scopes import SCOPES


@dataclass(frozen=True, slots=True)
class ApiOperation:
    name: str
    action: str
    resource: str  # "api/v1/agents/{agent_id}": what policies match, the ids of the call filled in
    scopes: tuple[str, ...]  # every one required of the caller's token
    # Creates a lasting credential (an API key, an agent with its own key): refused to a token acting under a
    # delegation, which is temporary and revocable while what it made would not be.
    lasting: bool = False
    # Governs the whole tenant: only its root agent, acting for itself (never through a delegate).
    root_only: bool = False

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"operation {self.name}: unknown action {self.action!r}")
        unknown = [s for s in self.scopes if s not in SCOPES]
        if not self.scopes or unknown:
            raise ValueError(f"operation {self.name}: required scopes {self.scopes!r} (unknown: {unknown})")

    @property
    def params(self) -> frozenset[str]:
        return frozenset(f for _, f, _, _ in string.Formatter().parse(self.resource) if f)

    def resource_for(self, ids: Mapping[str, str]) -> str:
        """The resource of one call; exactly the template's ids must be given."""
        if set(ids) != self.params:
            raise ValueError(f"operation {self.name} takes {sorted(self.params)}, given {sorted(ids)}")
        return self.resource.format_map(ids)


# The key under which the REST API's OpenAPI description names the operation a route runs: what a client of that
# API (the REST-backed MCP backend) looks an operation's route up by, instead of knowing URLs.
OPENAPI_EXTENSION: Final = "x-agentauth-operation"


def _table(*operations: ApiOperation) -> dict[str, ApiOperation]:
    table = {op.name: op for op in operations}
    assert len(table) == len(operations), "an operation name is defined twice"
    return table


OPERATIONS: Final = _table(
    ApiOperation("agents.create", "write", "api/v1/agents", ("agents.write",), lasting=True),
    ApiOperation("agents.list", "read", "api/v1/agents", ("agents.read",)),
    ApiOperation("agents.get", "read", "api/v1/agents/{agent_id}", ("agents.read",)),
    ApiOperation("agents.update", "write", "api/v1/agents/{agent_id}", ("agents.write",)),
    ApiOperation("agents.deactivate", "delete", "api/v1/agents/{agent_id}", ("agents.write",)),
    ApiOperation("agents.suspend", "write", "api/v1/agents/{agent_id}/suspend", ("agents.write",)),
    ApiOperation("agents.resume", "write", "api/v1/agents/{agent_id}/resume", ("agents.write",)),
    ApiOperation("credentials.create", "write", "api/v1/credentials", ("credentials.write",), lasting=True),
    ApiOperation("credentials.list", "read", "api/v1/credentials", ("credentials.read",)),
    ApiOperation("credentials.get", "read", "api/v1/credentials/{credential_id}", ("credentials.read",)),
    ApiOperation(
        "credentials.rotate", "write", "api/v1/credentials/{credential_id}/rotate", ("credentials.write",), lasting=True
    ),
    ApiOperation("credentials.revoke", "delete", "api/v1/credentials/{credential_id}", ("credentials.write",)),
    ApiOperation("delegations.create", "delegate", "api/v1/delegations", ("delegations.write",)),
    ApiOperation("delegations.list", "read", "api/v1/delegations", ("delegations.read",)),
    ApiOperation("delegations.get", "read", "api/v1/delegations/{delegation_id}", ("delegations.read",)),
    ApiOperation("delegations.chain", "read", "api/v1/delegations/{delegation_id}/chain", ("delegations.read",)),
    ApiOperation("delegations.revoke", "delete", "api/v1/delegations/{delegation_id}", ("delegations.write",)),
    # A dry run: it changes nothing.
    ApiOperation("policies.evaluate", "read", "api/v1/policies/evaluate", ("policies.read",)),
    ApiOperation("policies.create", "write", "api/v1/policies", ("policies.write",), root_only=True),
    ApiOperation("policies.list", "read", "api/v1/policies", ("policies.read",)),
    ApiOperation("policies.get", "read", "api/v1/policies/{policy_id}", ("policies.read",)),
    ApiOperation("policies.replace", "write", "api/v1/policies/{policy_id}", ("policies.write",), root_only=True),
    ApiOperation("policies.delete", "delete", "api/v1/policies/{policy_id}", ("policies.write",), root_only=True),
    ApiOperation("audit.list", "read", "api/v1/audit/events", ("audit.read",)),
    ApiOperation("audit.activity", "read", "api/v1/audit/activity", ("audit.read",)),
    ApiOperation(
        "resource_servers.create", "write", "api/v1/resource-servers", ("resource_servers.write",), root_only=True
    ),
    ApiOperation("resource_servers.list", "read", "api/v1/resource-servers", ("resource_servers.read",)),
    ApiOperation("resource_servers.get", "read", "api/v1/resource-servers/{server_id}", ("resource_servers.read",)),
    ApiOperation(
        "resource_servers.update",
        "write",
        "api/v1/resource-servers/{server_id}",
        ("resource_servers.write",),
        root_only=True,
    ),
    ApiOperation(
        "resource_servers.delete",
        "delete",
        "api/v1/resource-servers/{server_id}",
        ("resource_servers.write",),
        root_only=True,
    ),
    ApiOperation("webhooks.create", "write", "api/v1/webhooks", ("webhooks.write",), root_only=True),
    ApiOperation("webhooks.list", "read", "api/v1/webhooks", ("webhooks.read",)),
    ApiOperation("webhooks.get", "read", "api/v1/webhooks/{webhook_id}", ("webhooks.read",)),
    ApiOperation("webhooks.update", "write", "api/v1/webhooks/{webhook_id}", ("webhooks.write",), root_only=True),
    ApiOperation("webhooks.delete", "delete", "api/v1/webhooks/{webhook_id}", ("webhooks.write",), root_only=True),
    ApiOperation("webhooks.deliveries", "read", "api/v1/webhooks/{webhook_id}/deliveries", ("webhooks.read",)),
    ApiOperation(
        "webhooks.redeliver",
        "write",
        "api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}",
        ("webhooks.write",),
        root_only=True,
    ),
)


def operation(name: str) -> ApiOperation:
    """The operation named ``name``; an unknown name fails where it is declared (at import), never silently."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise LookupError(f"no operation named {name!r} in agentauth.issuer.operations") from None
