"""The tools of a tenant's rules and record: check_permission (a dry run of the policy engine), the policies
themselves (create, list, get, replace, delete; changes are the tenant root's alone) and the audit log. Each is one
``Operation``, as in ``tenant.py``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from agentauth.bootstrap import Services
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.schemas import (
    ActivityOut,
    AuditPage,
    Description,
    EvaluateRequest,
    EvaluateResponse,
    PolicyIn,
    PolicyOut,
    PolicyPage,
    UtcDateTime,
)
from agentauth.mcp.backend import Done, Operation
from agentauth.mcp.base import call
from agentauth.mcp.params import AccessToken, Id, Limit, read_only, request_model, writes
from agentauth.mcp.registry import tool


@tool(order=11, hints=read_only("Check a permission"), operation="policies.evaluate")
async def check_permission(
    agent_id: Annotated[Id, Field(description="The agent to ask about (agt_...).")],
    action: Annotated[
        Literal["read", "write", "delete", "execute", "delegate", "admin"], Field(description="The action.")
    ],
    resource: Annotated[
        str,
        Field(
            min_length=1,
            max_length=1000,
            description="A resource path, e.g. 'files/reports/q3.pdf' or 'api/v1/agents/agt_...'.",
        ),
    ],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> EvaluateResponse:
    """Ask the policy engine whether an agent of your subtree may perform an action on a resource, before
    doing it. A dry run: nothing changes. Returns allowed, the deciding effect and basis (policy, scope,
    delegation or default deny), the matched policy and the reasons."""
    body = request_model(EvaluateRequest, agent_id=agent_id, action=action, resource=resource)
    op = Operation(
        EvaluateResponse,
        lambda s, p, rc: s.policies.evaluate(p, body, rc),
        body=body,
    )
    return await call(ctx, access_token, op)


# Policies are the tenant's: a policy id that is not found is not in the caller's tenant.
POLICY_NOT_FOUND = {"not_found": "No such policy in your tenant: list_policies shows the policy ids you can use."}
Effect = Annotated[
    Literal["allow", "deny", "require_approval"],
    Field(description="deny overrides any allow; require_approval refuses until a person approved the action."),
]
Subjects = Annotated[
    dict[str, Any],
    Field(description='Who: {"all": true} or any of {"agent_ids": [...], "agent_types": [...], "trust_levels": [...]}'),
]
Actions = Annotated[list[str], Field(min_length=1, description="read, write, delete, execute, delegate, admin or '*'.")]
Resources = Annotated[
    list[str], Field(min_length=1, description="Resource path patterns: '*' = one segment, '**' = any depth.")
]
Conditions = Annotated[
    dict[str, Any] | None,
    Field(
        description='Optional: {"time_window": {"start": "09:00", "end": "17:00", "days": ["mon"], "timezone": '
        '"UTC"}, "source_ips": ["10.0.0.0/8"], "max_delegation_depth": 2}.'
    ),
]
Priority = Annotated[int, Field(ge=-1000, le=1000, description="Higher is judged first.")]
Enabled = Annotated[bool, Field(description="A disabled policy is kept but never applies.")]
PolicyName = Annotated[str, Field(min_length=1, max_length=200, description="A name for the policy.")]
PolicyDescription = Annotated[Description | None, Field(description="What the policy is for.")]
PolicyId = Annotated[Id, Field(description="The policy's id (pol_...).")]


class PolicyDeleted(BaseModel):
    success: bool = Field(description="True: the policy is gone.")
    policy_id: str


def _policy(**fields: Any) -> PolicyIn:
    fields["conditions"] = fields["conditions"] or {}
    return request_model(PolicyIn, **fields)


@tool(order=25, hints=writes("Create a policy"), operation="policies.create")
async def create_policy(
    name: PolicyName,
    effect: Effect,
    subjects: Subjects,
    actions: Actions,
    resources: Resources,
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    description: PolicyDescription = None,
    conditions: Conditions = None,
    priority: Priority = 0,
    enabled: Enabled = True,
) -> PolicyOut:
    """Add a policy to your tenant (tenant root only, needs policies.write): allow or deny actions on
    resource patterns for some agents, optionally only under conditions. Deny overrides allow; without an
    applying policy the token's scopes decide. Try it first with check_permission."""
    body = _policy(
        name=name, effect=effect, subjects=subjects, actions=actions, resources=resources,
        description=description, conditions=conditions, priority=priority, enabled=enabled,
    )  # fmt: skip
    op = Operation(PolicyOut, lambda s, p, rc: s.policies.create(p, body, rc), body=body)
    return await call(ctx, access_token, op)


@tool(order=26, hints=read_only("List policies"), operation="policies.list")
async def list_policies(ctx: Context[Any, Any], access_token: AccessToken = None) -> PolicyPage:
    """List your tenant's policies, highest priority first, with their ids, effects, subjects, actions,
    resources and conditions, plus total."""
    op = Operation(PolicyPage, lambda s, p, rc: s.policies.list(p, rc))
    return await call(ctx, access_token, op)


@tool(order=27, hints=read_only("Get a policy"), operation="policies.get", next_steps=POLICY_NOT_FOUND)
async def get_policy(policy_id: PolicyId, ctx: Context[Any, Any], access_token: AccessToken = None) -> PolicyOut:
    """Get one policy of your tenant."""
    op = Operation(PolicyOut, lambda s, p, rc: s.policies.get(p, policy_id, rc), ids={"policy_id": policy_id})
    return await call(ctx, access_token, op)


@tool(
    order=28,
    hints=writes("Replace a policy", idempotent=True),
    operation="policies.replace",
    next_steps=POLICY_NOT_FOUND,
)
async def replace_policy(
    policy_id: PolicyId,
    name: PolicyName,
    effect: Effect,
    subjects: Subjects,
    actions: Actions,
    resources: Resources,
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    description: PolicyDescription = None,
    conditions: Conditions = None,
    priority: Priority = 0,
    enabled: Enabled = True,
) -> PolicyOut:
    """Replace a policy of your tenant with the one given, keeping its id (tenant root only, needs
    policies.write). Every field is replaced: what you leave out takes its default."""
    body = _policy(
        name=name, effect=effect, subjects=subjects, actions=actions, resources=resources,
        description=description, conditions=conditions, priority=priority, enabled=enabled,
    )  # fmt: skip
    op = Operation(
        PolicyOut,
        lambda s, p, rc: s.policies.replace(p, policy_id, body, rc),
        ids={"policy_id": policy_id},
        body=body,
    )
    return await call(ctx, access_token, op)


@tool(
    order=29,
    hints=writes("Delete a policy", destructive=True),
    operation="policies.delete",
    next_steps=POLICY_NOT_FOUND,
)
async def delete_policy(policy_id: PolicyId, ctx: Context[Any, Any], access_token: AccessToken = None) -> PolicyDeleted:
    """Delete a policy of your tenant for good (tenant root only, needs policies.write). What it allowed or
    denied is decided by the other policies and the token scopes from the next request on."""

    async def run(s: Services, p: Principal, rc: RequestContext) -> Done:
        await s.policies.delete(p, policy_id, rc)
        return Done()

    await call(ctx, access_token, Operation(Done, run, ids={"policy_id": policy_id}))
    return PolicyDeleted(success=True, policy_id=policy_id)


@tool(order=30, hints=read_only("List audit events"), operation="audit.list")
async def list_audit_events(
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    limit: Limit = 50,
    cursor: Annotated[str | None, Field(max_length=20, description="next_cursor of the previous page.")] = None,
    action: Annotated[
        str | None, Field(max_length=60, description="Only this action, e.g. credential.created.")
    ] = None,
    outcome: Annotated[Literal["success", "failure"] | None, Field(description="Only this outcome.")] = None,
    actor: Annotated[str | None, Field(max_length=100, description="Only events by this agent id.")] = None,
    target_id: Annotated[str | None, Field(max_length=100, description="Only events about this id.")] = None,
    since: Annotated[
        UtcDateTime | None, Field(description="Only events at or after this time (ISO 8601; UTC if no offset).")
    ] = None,
) -> AuditPage:
    """Read your tenant's audit log, newest first (needs audit.read; an agent below the root sees what its
    own subtree did). Pass next_cursor as cursor for the next page."""
    filters = {"cursor": cursor, "action": action, "outcome": outcome, "actor": actor, "target_id": target_id}
    op = Operation(
        AuditPage,
        lambda s, p, rc: s.audit.list(p, rc, limit=limit, since=since, **filters),
        query={"limit": limit, **filters, "since": since.isoformat() if since else None},
    )
    return await call(ctx, access_token, op)


@tool(order=45, hints=read_only("Token activity"), operation="audit.activity")
async def get_audit_activity(
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    hours: Annotated[int, Field(ge=1, le=168, description="How many hours back, this one included.")] = 24,
) -> ActivityOut:
    """Token issuance and denials of your tenant per hour, and its busiest agents (needs audit.read)."""
    op = Operation(ActivityOut, lambda s, p, rc: s.audit.activity(p, rc, hours=hours), query={"hours": hours})
    return await call(ctx, access_token, op)
