"""The tools of delegations: lend a subset of your scopes to another agent (create), list, get, the chain a
delegation rests on, and revoke (cascading). Each is one ``Operation``, as in ``tenant.py``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from agentauth.issuer.delegations import DEFAULT_MAX_CHAIN_DEPTH
from agentauth.issuer.schemas import CreateDelegationRequest, DelegationChain, DelegationOut, DelegationPage
from agentauth.mcp.backend import Operation
from agentauth.mcp.base import call
from agentauth.mcp.params import AccessToken, Id, Limit, Offset, read_only, request_model, writes
from agentauth.mcp.registry import tool


@tool(order=10, hints=writes("Delegate scopes"), operation="delegations.create")
async def create_delegation(
    delegate_agent_id: Annotated[Id, Field(description="The agent of your tenant to delegate to (agt_...).")],
    scopes: Annotated[list[str], Field(min_length=1, description="The scopes to lend: a subset of yours.")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    max_chain_depth: Annotated[
        int,
        Field(
            ge=0,
            le=10,
            description="How many further hops the delegate may re-delegate. The default 3 is capped at what "
            "a delegation you act under allows.",
        ),
    ] = DEFAULT_MAX_CHAIN_DEPTH,
    expires_in_hours: Annotated[
        int | None, Field(ge=1, le=8760, description="Default 24 hours, never past a parent delegation.")
    ] = None,
) -> DelegationOut:
    """Lend a subset of your scopes to another agent of your tenant, as a signed AgentDelegationCredential
    (field credential). Give that credential to the delegate: it calls exchange_delegation with it to get
    tokens acting on your behalf. Save the delegation id to revoke it later (revoke_delegation)."""
    body = request_model(
        CreateDelegationRequest,
        delegate_agent_id=delegate_agent_id,
        scopes=scopes,
        # Left to the use case, the default is 3 for a root grant and the parent's depth minus one below it.
        max_chain_depth=None if max_chain_depth == DEFAULT_MAX_CHAIN_DEPTH else max_chain_depth,
        expires_in_hours=expires_in_hours,
    )
    op = Operation(
        DelegationOut,
        lambda s, p, rc: s.delegations.create(p, body, rc),
        body=body,
    )
    return await call(ctx, access_token, op)


@tool(order=15, hints=read_only("List delegations"), operation="delegations.list")
async def list_delegations(
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    role: Annotated[
        Literal["delegator", "delegate"] | None,
        Field(description="Only those you granted (delegator) or received (delegate)."),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DelegationPage:
    """List the delegations you granted or received, with their status, scopes, expiry and credential."""
    op = Operation(
        DelegationPage,
        lambda s, p, rc: s.delegations.list(p, role, limit, offset, rc),
        query={"role": role, "limit": limit, "offset": offset},
    )
    return await call(ctx, access_token, op)


@tool(order=16, hints=writes("Revoke a delegation", destructive=True, idempotent=True), operation="delegations.revoke")
async def revoke_delegation(
    delegation_id: Annotated[Id, Field(description="The delegation's id (dlg_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> DelegationOut:
    """Revoke a delegation you granted (or one below you): it, every delegation made under it and every
    token resting on them stop working at once. Returns the delegation with status revoked."""
    op = Operation(
        DelegationOut,
        lambda s, p, rc: s.delegations.revoke(p, delegation_id, rc),
        ids={"delegation_id": delegation_id},
    )
    return await call(ctx, access_token, op)


@tool(order=23, hints=read_only("Get a delegation"), operation="delegations.get")
async def get_delegation(
    delegation_id: Annotated[Id, Field(description="The delegation's id (dlg_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> DelegationOut:
    """Get one delegation you granted, received or can see in your subtree: its agents, scopes, depth,
    status, expiry and its signed credential (field credential)."""
    op = Operation(
        DelegationOut,
        lambda s, p, rc: s.delegations.get(p, delegation_id, rc),
        ids={"delegation_id": delegation_id},
    )
    return await call(ctx, access_token, op)


@tool(order=24, hints=read_only("Get a delegation chain"), operation="delegations.chain")
async def get_delegation_chain(
    delegation_id: Annotated[Id, Field(description="The delegation's id (dlg_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> DelegationChain:
    """Get the chain a delegation rests on, root grant first: every link, the scopes in effect at the end
    of it and the agent that granted the root."""
    op = Operation(
        DelegationChain,
        lambda s, p, rc: s.delegations.chain(p, delegation_id, rc),
        ids={"delegation_id": delegation_id},
    )
    return await call(ctx, access_token, op)
