"""The tools that manage what an agent owns in its tenant: sub-agents, API keys, delegations, and
check_permission (a dry run of the policy engine).

Each is one ``Operation``: the REST route it mirrors and the use case REST runs for it, with the request model
REST validates and the response model REST returns.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from agentauth.issuer.delegations import DEFAULT_MAX_CHAIN_DEPTH
from agentauth.issuer.schemas import (
    AgentCreated,
    AgentOut,
    AgentPage,
    AgentType,
    ApiKeyCreated,
    ApiKeyOut,
    ApiKeyPage,
    ApiKeyRotated,
    CreateAgentRequest,
    CreateApiKeyRequest,
    CreateDelegationRequest,
    DelegationOut,
    DelegationPage,
    Description,
    EvaluateRequest,
    EvaluateResponse,
    Name,
    TrustLevel,
)
from agentauth.mcp.backend import Operation, R
from agentauth.mcp.base import backend_of
from agentauth.mcp.params import (
    AccessToken,
    Id,
    Limit,
    Offset,
    PublicKey,
    Scopes,
    ToolSpec,
    access_token_of,
    read_only,
    request_context,
    request_model,
    writes,
)


async def _run(ctx: Context[Any, Any], access_token: str | None, operation: Operation[R]) -> R:
    """As the holder of the access token (argument, else Authorization header) of the HTTP request, if any."""
    return await backend_of(ctx).call(operation, access_token_of(access_token, ctx), request_context(ctx))


async def create_agent(
    name: Annotated[Name, Field(description="A name for the new agent.")],
    agent_type: Annotated[AgentType, Field(description="orchestrator, autonomous, assistant or tool.")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    description: Annotated[Description | None, Field(description="What the agent does.")] = None,
    scopes: Annotated[list[str] | None, Field(description="A subset of your scopes; default all of them.")] = None,
    trust_level: Annotated[TrustLevel | None, Field(description="At most yours; default yours.")] = None,
    public_key: PublicKey = None,
) -> AgentCreated:
    """Create an agent below you in your tenant (a sub-agent), with its own did:key and identity
    credential. SAVE private_key_jwk now if one was generated (shown only once). Give it an API key with
    create_credential(agent_id=...) so it can authenticate, or lend it scopes with create_delegation."""
    body = request_model(
        CreateAgentRequest,
        name=name,
        agent_type=agent_type,
        description=description,
        scopes=scopes,
        trust_level=trust_level,
        public_key=public_key,
    )
    op = Operation(
        "POST",
        ("api", "v1", "agents"),
        AgentCreated,
        lambda s, p, rc: s.agents.create_child(p, body, rc),
        body=body,
        name="agents.create",
    )
    return await _run(ctx, access_token, op)


async def list_agents(
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> AgentPage:
    """List the agents of your subtree (you and the agents below you): a page of agents plus total."""
    op = Operation(
        "GET",
        ("api", "v1", "agents"),
        AgentPage,
        lambda s, p, rc: s.agents.list(p, limit, offset),
        query={"limit": limit, "offset": offset},
        name="agents.list",
    )
    return await _run(ctx, access_token, op)


async def get_agent(
    agent_id: Annotated[Id, Field(description="The agent's id (agt_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> AgentOut:
    """Get one agent of your subtree: id, did, name, type, trust level, status, scopes, parent, tenant,
    is_root and is_active."""
    op = Operation(
        "GET",
        ("api", "v1", "agents", agent_id),
        AgentOut,
        lambda s, p, rc: s.agents.get(p, agent_id),
        name="agents.get",
        ids={"agent_id": agent_id},
    )
    return await _run(ctx, access_token, op)


async def create_credential(
    agent_id: Annotated[Id, Field(description="Whose key: yourself or an agent below you (agt_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    scopes: Scopes = None,
    name: Annotated[str | None, Field(max_length=200, description="A label for the key.")] = None,
    expires_in_days: Annotated[int | None, Field(ge=1, le=3650, description="Default: never.")] = None,
) -> ApiKeyCreated:
    """Create an API key for yourself or an agent of your subtree (needs credentials.write). SAVE raw_key
    now: it is shown only once. The key authenticates with authenticate(api_key=...)."""
    body = request_model(
        CreateApiKeyRequest, agent_id=agent_id, scopes=scopes, name=name, expires_in_days=expires_in_days
    )
    op = Operation(
        "POST",
        ("api", "v1", "credentials"),
        ApiKeyCreated,
        lambda s, p, rc: s.api_keys.create(p, body, rc),
        body=body,
        name="credentials.create",
    )
    return await _run(ctx, access_token, op)


async def list_credentials(
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    agent_id: Annotated[Id | None, Field(description="Only this agent's keys.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> ApiKeyPage:
    """List the API keys of your subtree (never their secrets): id, owner, prefix, scopes, status, expiry,
    last use. Use it to find a credential_id to rotate or revoke."""
    op = Operation(
        "GET",
        ("api", "v1", "credentials"),
        ApiKeyPage,
        lambda s, p, rc: s.api_keys.list(p, agent_id, limit, offset),
        query={"agent_id": agent_id, "limit": limit, "offset": offset},
        name="credentials.list",
    )
    return await _run(ctx, access_token, op)


async def rotate_credential(
    credential_id: Annotated[Id, Field(description="The API key's id (key_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> ApiKeyRotated:
    """Replace an API key: a new key with the same owner, name, scopes and expiry, while the old one is
    revoked at once together with every token issued from it. SAVE the new raw_key now (shown only once)
    and stop using the old key; old_credential_id names the key that was replaced."""
    op = Operation(
        "POST",
        ("api", "v1", "credentials", credential_id, "rotate"),
        ApiKeyRotated,
        lambda s, p, rc: s.api_keys.rotate(p, credential_id, rc),
        name="credentials.rotate",
        ids={"credential_id": credential_id},
    )
    return await _run(ctx, access_token, op)


async def revoke_credential(
    credential_id: Annotated[Id, Field(description="The API key's id (key_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> ApiKeyOut:
    """Revoke an API key for good, and every token issued with it. Returns the key with status revoked."""
    op = Operation(
        "POST",
        ("api", "v1", "credentials", credential_id, "revoke"),
        ApiKeyOut,
        lambda s, p, rc: s.api_keys.revoke(p, credential_id, rc),
        name="credentials.revoke",
        ids={"credential_id": credential_id},
    )
    return await _run(ctx, access_token, op)


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
        "POST",
        ("api", "v1", "delegations"),
        DelegationOut,
        lambda s, p, rc: s.delegations.create(p, body, rc),
        body=body,
        name="delegations.create",
    )
    return await _run(ctx, access_token, op)


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
        "GET",
        ("api", "v1", "delegations"),
        DelegationPage,
        lambda s, p, rc: s.delegations.list(p, role, limit, offset),
        query={"role": role, "limit": limit, "offset": offset},
        name="delegations.list",
    )
    return await _run(ctx, access_token, op)


async def revoke_delegation(
    delegation_id: Annotated[Id, Field(description="The delegation's id (dlg_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> DelegationOut:
    """Revoke a delegation you granted (or one below you): it, every delegation made under it and every
    token resting on them stop working at once. Returns the delegation with status revoked."""
    op = Operation(
        "POST",
        ("api", "v1", "delegations", delegation_id, "revoke"),
        DelegationOut,
        lambda s, p, rc: s.delegations.revoke(p, delegation_id, rc),
        name="delegations.revoke",
        ids={"delegation_id": delegation_id},
    )
    return await _run(ctx, access_token, op)


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
        "POST",
        ("api", "v1", "policies", "evaluate"),
        EvaluateResponse,
        lambda s, p, rc: s.policies.evaluate(p, body, rc),
        body=body,
        name="policies.evaluate",
    )
    return await _run(ctx, access_token, op)


TOOLS: dict[str, ToolSpec] = {
    "create_agent": (create_agent, writes("Create a sub-agent")),
    "list_agents": (list_agents, read_only("List agents")),
    "get_agent": (get_agent, read_only("Get an agent")),
    "create_credential": (create_credential, writes("Create an API key")),
    "list_credentials": (list_credentials, read_only("List API keys")),
    "rotate_credential": (rotate_credential, writes("Rotate an API key", destructive=True)),
    "revoke_credential": (revoke_credential, writes("Revoke an API key", destructive=True, idempotent=True)),
    "create_delegation": (create_delegation, writes("Delegate scopes")),
    "list_delegations": (list_delegations, read_only("List delegations")),
    "revoke_delegation": (revoke_delegation, writes("Revoke a delegation", destructive=True, idempotent=True)),
    "check_permission": (check_permission, read_only("Check a permission")),
}
