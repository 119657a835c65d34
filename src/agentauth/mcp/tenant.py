"""The tools that manage the agents of an agent's tenant and their API keys: sub-agents (create, list, get,
update, deactivate) and credentials (create, list, get, rotate, revoke).

Each is one ``Operation``: the operation it runs, the use case REST runs for it, with the request model REST
validates and the response model REST returns.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from agentauth.issuer.schemas import (
    BIND_TO_AGENT_KEY,
    DELIVERY_MODE,
    NOTIFICATION_ENDPOINT,
    REQUIRE_DPOP,
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
    Description,
    Name,
    TrustLevel,
    UpdateAgentRequest,
)
from agentauth.mcp.backend import Operation
from agentauth.mcp.base import call
from agentauth.mcp.params import (
    AccessToken,
    Id,
    Limit,
    Offset,
    PublicKey,
    Scopes,
    read_only,
    request_model,
    writes,
)
from agentauth.mcp.registry import tool


@tool(order=17, hints=writes("Create a sub-agent"), operation="agents.create")
async def create_agent(
    name: Annotated[Name, Field(description="A name for the new agent.")],
    agent_type: Annotated[AgentType, Field(description="orchestrator, autonomous, assistant or tool.")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    description: Annotated[Description | None, Field(description="What the agent does.")] = None,
    scopes: Annotated[list[str] | None, Field(description="A subset of your scopes; default all of them.")] = None,
    trust_level: Annotated[TrustLevel | None, Field(description="At most yours; default yours.")] = None,
    public_key: PublicKey = None,
    require_dpop: Annotated[bool | None, Field(description=REQUIRE_DPOP + " At least yours; default yours.")] = None,
    bind_to_agent_key: Annotated[
        bool | None, Field(description=BIND_TO_AGENT_KEY + " At least yours; default yours.")
    ] = None,
    backchannel_token_delivery_mode: Annotated[Literal["poll", "ping"] | None, Field(description=DELIVERY_MODE)] = None,
    backchannel_client_notification_endpoint: Annotated[str | None, Field(description=NOTIFICATION_ENDPOINT)] = None,
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
        require_dpop=require_dpop,
        bind_to_agent_key=bind_to_agent_key,
        backchannel_token_delivery_mode=backchannel_token_delivery_mode,
        backchannel_client_notification_endpoint=backchannel_client_notification_endpoint,
    )
    op = Operation(
        AgentCreated,
        lambda s, p, rc: s.agents.create_child(p, body, rc),
        body=body,
    )
    return await call(ctx, access_token, op)


@tool(order=12, hints=read_only("List agents"), operation="agents.list")
async def list_agents(
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> AgentPage:
    """List the agents of your subtree (you and the agents below you): a page of agents plus total."""
    op = Operation(
        AgentPage,
        lambda s, p, rc: s.agents.list(p, limit, offset, rc),
        query={"limit": limit, "offset": offset},
    )
    return await call(ctx, access_token, op)


@tool(order=13, hints=read_only("Get an agent"), operation="agents.get")
async def get_agent(
    agent_id: Annotated[Id, Field(description="The agent's id (agt_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> AgentOut:
    """Get one agent of your subtree: id, did, name, type, trust level, status, scopes, parent, tenant,
    is_root and is_active."""
    op = Operation(
        AgentOut,
        lambda s, p, rc: s.agents.get(p, agent_id, rc),
        ids={"agent_id": agent_id},
    )
    return await call(ctx, access_token, op)


@tool(order=7, hints=writes("Create an API key"), operation="credentials.create")
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
        ApiKeyCreated,
        lambda s, p, rc: s.api_keys.create(p, body, rc),
        body=body,
    )
    return await call(ctx, access_token, op)


@tool(order=14, hints=read_only("List API keys"), operation="credentials.list")
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
        ApiKeyPage,
        lambda s, p, rc: s.api_keys.list(p, agent_id, limit, offset, rc),
        query={"agent_id": agent_id, "limit": limit, "offset": offset},
    )
    return await call(ctx, access_token, op)


@tool(order=8, hints=writes("Rotate an API key", destructive=True), operation="credentials.rotate")
async def rotate_credential(
    credential_id: Annotated[Id, Field(description="The API key's id (key_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> ApiKeyRotated:
    """Replace an API key: a new key with the same owner, name, scopes and expiry, while the old one is
    revoked at once together with every token issued from it. SAVE the new raw_key now (shown only once)
    and stop using the old key; old_credential_id names the key that was replaced."""
    op = Operation(
        ApiKeyRotated,
        lambda s, p, rc: s.api_keys.rotate(p, credential_id, rc),
        ids={"credential_id": credential_id},
    )
    return await call(ctx, access_token, op)


@tool(order=9, hints=writes("Revoke an API key", destructive=True, idempotent=True), operation="credentials.revoke")
async def revoke_credential(
    credential_id: Annotated[Id, Field(description="The API key's id (key_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> ApiKeyOut:
    """Revoke an API key for good, and every token issued with it. Returns the key with status revoked."""
    op = Operation(
        ApiKeyOut,
        lambda s, p, rc: s.api_keys.revoke(p, credential_id, rc),
        ids={"credential_id": credential_id},
    )
    return await call(ctx, access_token, op)


@tool(order=20, hints=writes("Update an agent"), operation="agents.update")
async def update_agent(
    agent_id: Annotated[Id, Field(description="The agent's id: yourself or an agent below you (agt_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    name: Annotated[Name | None, Field(description="A new name.")] = None,
    description: Annotated[Description | None, Field(description="A new description.")] = None,
    trust_level: Annotated[TrustLevel | None, Field(description="At most yours; not your own.")] = None,
    require_dpop: Annotated[
        bool | None, Field(description=REQUIRE_DPOP + " Raising it raises the subtree; never below the parent's.")
    ] = None,
    bind_to_agent_key: Annotated[
        bool | None, Field(description=BIND_TO_AGENT_KEY + " Raising it raises the subtree; never below the parent's.")
    ] = None,
    backchannel_token_delivery_mode: Annotated[Literal["poll", "ping"] | None, Field(description=DELIVERY_MODE)] = None,
    backchannel_client_notification_endpoint: Annotated[str | None, Field(description=NOTIFICATION_ENDPOINT)] = None,
) -> AgentOut:
    """Change the name, description, trust level, DPoP requirement or CIBA delivery mode (poll, or ping to a
    notification endpoint) of an agent of your subtree (needs agents.write). Give at least one of them; what
    you leave out stays as it is. Returns the updated agent."""
    body = request_model(
        UpdateAgentRequest,
        name=name,
        description=description,
        trust_level=trust_level,
        require_dpop=require_dpop,
        bind_to_agent_key=bind_to_agent_key,
        backchannel_token_delivery_mode=backchannel_token_delivery_mode,
        backchannel_client_notification_endpoint=backchannel_client_notification_endpoint,
    )
    op = Operation(
        AgentOut,
        lambda s, p, rc: s.agents.update(p, agent_id, body, rc),
        ids={"agent_id": agent_id},
        body=body,
    )
    return await call(ctx, access_token, op)


@tool(order=21, hints=writes("Deactivate an agent", destructive=True, idempotent=True), operation="agents.deactivate")
async def deactivate_agent(
    agent_id: Annotated[Id, Field(description="The agent's id (agt_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> AgentOut:
    """Deactivate an agent of your subtree for good, with every agent below it: their API keys, tokens,
    credentials and the delegations they granted are revoked at once. Returns the agent, now inactive."""
    op = Operation(
        AgentOut,
        lambda s, p, rc: s.agents.deactivate(p, agent_id, rc),
        ids={"agent_id": agent_id},
    )
    return await call(ctx, access_token, op)


@tool(order=46, hints=writes("Suspend an agent", destructive=True, idempotent=True), operation="agents.suspend")
async def suspend_agent(
    agent_id: Annotated[Id, Field(description="The agent's id (agt_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> AgentOut:
    """Suspend an agent of your subtree, with every agent below it - reversibly: none of them can authenticate or
    use a token, and offline verifiers refuse their credentials once they refetch the status lists, but no key,
    token or delegation is revoked; resume_agent restores them. Returns the agent, now suspended."""
    op = Operation(AgentOut, lambda s, p, rc: s.agents.suspend(p, agent_id, rc), ids={"agent_id": agent_id})
    return await call(ctx, access_token, op)


@tool(order=47, hints=writes("Resume a suspended agent", idempotent=True), operation="agents.resume")
async def resume_agent(
    agent_id: Annotated[Id, Field(description="The suspended agent's id (agt_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> AgentOut:
    """Resume an agent you suspended, with every suspended agent below it: they act again and their credentials
    verify again. Only the top of a suspension resumes (an agent whose parent is suspended waits for it)."""
    op = Operation(AgentOut, lambda s, p, rc: s.agents.resume(p, agent_id, rc), ids={"agent_id": agent_id})
    return await call(ctx, access_token, op)


@tool(order=22, hints=read_only("Get an API key"), operation="credentials.get")
async def get_credential(
    credential_id: Annotated[Id, Field(description="The API key's id (key_...).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> ApiKeyOut:
    """Get one API key of your subtree (never its secret): owner, name, prefix, scopes, status, expiry and
    last use."""
    op = Operation(
        ApiKeyOut,
        lambda s, p, rc: s.api_keys.get(p, credential_id, rc),
        ids={"credential_id": credential_id},
    )
    return await call(ctx, access_token, op)
