"""The MCP tools: every AgentAuth operation an agent needs, as thin adapters over the issuer's use cases.

Tool names and parameter names are a published contract (MCP issue): keep them. Each tool builds the same
request model REST validates and returns the same response model REST serializes. Where a tool takes
``access_token``, over HTTP the token may come from the ``Authorization: Bearer`` header instead; over stdio
there are no headers, so the schema marks it required.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, Field, StringConstraints

from agentauth import __version__
from agentauth.errors import InvalidClient, InvalidToken
from agentauth.issuer.context import RequestContext
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
    EvaluateRequest,
    EvaluateResponse,
    QuickstartRequest,
    QuickstartResponse,
    TokenResponse,
    TrustLevel,
)
from agentauth.issuer.secrets import REFRESH_TOKEN_PREFIX
from agentauth.issuer.tokens import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_JWT,
)
from agentauth.mcp import verify as offline
from agentauth.mcp.backend import Backend, Operation
from agentauth.mcp.errors import map_tool_error
from agentauth.mcp.verify import VerifyResult

log = logging.getLogger("agentauth.mcp")

INSTRUCTIONS = """\
AgentAuth gives you (an AI agent) a verifiable identity and OAuth tokens.
1. No identity yet: call quickstart once. Save api_key, private_key_jwk and refresh_token at once: they are
   shown only once. Already have an API key: call authenticate.
2. Pass access_token to the other tools. It expires at expires_at; call refresh_token (with your refresh token)
   before refresh_before, and save the new refresh token: each one works only once.
3. Manage what you own: create_agent (sub-agents), create_credential / rotate_credential / revoke_credential
   (API keys), create_delegation / exchange_delegation / revoke_delegation (lend scopes to another agent),
   check_permission (dry-run a policy decision), verify_token (check any AgentAuth token offline).
Errors read "<error code>: <what went wrong>. <what to do next>".
"""

ACCESS_TOKEN_HELP = (
    "Your access token (access_token from quickstart, authenticate or refresh_token). "
    "Over HTTP it may be omitted when the Authorization: Bearer header carries it."
)

Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
AccessToken = Annotated[str | None, Field(description=ACCESS_TOKEN_HELP)]
Scopes = Annotated[
    list[str] | None,
    Field(description='Scope names (see discover), e.g. ["agents.read"]. Omit for everything you may have.'),
]
Limit = Annotated[int, Field(ge=1, le=100, description="Page size, 1-100.")]
Offset = Annotated[int, Field(ge=0, description="Items to skip.")]
PublicKey = Annotated[
    str | dict[str, Any] | None,
    Field(description="Bring your own key: a did:key or an Ed25519 public JWK. Omit to have a key pair generated."),
]


class RevokeResult(BaseModel):
    success: bool = Field(description="Always true: revocation is idempotent (RFC 7009 section 2.2).")
    detail: str


def _request_context(ctx: Context[Any, Any]) -> RequestContext:
    """Client address and request id of the HTTP request carrying this call (none over stdio)."""
    request = ctx.request_context.request
    client = getattr(request, "client", None)
    ip = getattr(client, "host", None)
    scope = getattr(request, "scope", None)
    state = scope.get("state") if isinstance(scope, dict) else None
    request_id = state.get("request_id") if isinstance(state, dict) else None
    if isinstance(request_id, str):
        return RequestContext(request_id=request_id, ip=ip if isinstance(ip, str) else None)
    return RequestContext(ip=ip if isinstance(ip, str) else None)


def _header_token(ctx: Context[Any, Any]) -> str | None:
    headers = ctx.headers
    value = headers.get("authorization") if headers is not None else None
    if isinstance(value, str) and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


def _access_token(given: str | None, ctx: Context[Any, Any]) -> str:
    token = given or _header_token(ctx)
    if not token:
        raise InvalidToken("an access token is required: pass access_token (from quickstart or authenticate)")
    return token


def _read_only(title: str) -> ToolAnnotations:
    return ToolAnnotations(title=title, read_only_hint=True, open_world_hint=False)


def _writes(title: str, *, destructive: bool = False, idempotent: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        title=title,
        read_only_hint=False,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


def _tools(backend: Backend, default_api_key: str | None) -> list[tuple[Callable[..., Any], ToolAnnotations]]:  # noqa: PLR0915
    """The tool functions; their docstrings are the descriptions the model reads."""

    async def discover() -> dict[str, Any]:
        """Describe this AgentAuth: grant types, scopes (with what each allows), token lifetimes, agent types,
        trust levels, registration mode and every endpoint URL. Call it first when you do not know the server."""
        return await backend.discover()

    async def quickstart(
        name: Annotated[str, Field(description="A name for your agent.")],
        agent_type: Annotated[AgentType, Field(description="orchestrator, autonomous, assistant or tool.")],
        ctx: Context[Any, Any],
        description: Annotated[str | None, Field(description="What the agent does.")] = None,
        public_key: PublicKey = None,
        registration_token: Annotated[
            str | None, Field(description="Only when the server's registration mode is 'token'.")
        ] = None,
    ) -> QuickstartResponse:
        """Register a new agent, with a tenant of its own, in one call: a did:key identity, an identity
        credential, an API key and a token pair. Call it once, when you have no AgentAuth identity yet.
        SAVE NOW, shown only once: api_key (to authenticate later), private_key_jwk (your did:key private key, when
        generated) and refresh_token. Use access_token with the other tools until expires_at; refresh before
        refresh_before."""
        request = QuickstartRequest(
            name=name,
            agent_type=agent_type,
            description=description,
            public_key=public_key,
            registration_token=registration_token,
        )
        return await backend.quickstart(request, _request_context(ctx))

    async def authenticate(
        ctx: Context[Any, Any],
        api_key: Annotated[
            str | None,
            Field(description="Your API key (ak_live_...). Default: AGENTAUTH_API_KEY of a stdio server."),
        ] = None,
        scopes: Scopes = None,
    ) -> TokenResponse:
        """Exchange your API key for a new access token and refresh token (OAuth client_credentials). Call it at
        the start of a session or when refresh_token fails. Save refresh_token; use access_token with the other
        tools. scopes narrows the token to fewer scopes than the key holds."""
        key = api_key or default_api_key
        if not key:
            raise InvalidClient("no API key: pass api_key (from quickstart or create_credential)")
        params = {"grant_type": GRANT_CLIENT_CREDENTIALS, "client_secret": key}
        if scopes:
            params["scope"] = " ".join(scopes)
        return await backend.token(params, _request_context(ctx))

    async def refresh_token(
        refresh_token_value: Annotated[str, Field(description="Your current refresh token (rt_...).")],
        ctx: Context[Any, Any],
    ) -> TokenResponse:
        """Trade your refresh token for a new access token and a new refresh token. Call it before
        refresh_before, or when a tool says invalid_token because your access token expired. Refresh tokens are
        single-use: save the new refresh_token and forget the old one (presenting a used one again revokes the
        whole token family)."""
        params = {"grant_type": GRANT_REFRESH_TOKEN, "refresh_token": refresh_token_value}
        return await backend.token(params, _request_context(ctx))

    async def introspect_token(
        token: Annotated[str, Field(description="The access token or refresh token to examine.")],
        ctx: Context[Any, Any],
        access_token: Annotated[
            str | None,
            Field(description="Your access token, if not the token itself (or the Authorization header)."),
        ] = None,
    ) -> dict[str, Any]:
        """Ask AgentAuth whether a token is active right now (RFC 7662). Answers {"active": true, ...} with its
        scope, subject, client, expiry, agent and delegation chain, or just {"active": false} (revoked, expired,
        unknown, or not yours to see). Without access_token an access token introspects itself."""
        rc = _request_context(ctx)
        caller = access_token or _header_token(ctx)
        if caller is not None:
            return await backend.introspect(caller, token, rc)
        if token.startswith(REFRESH_TOKEN_PREFIX):
            raise InvalidToken("to introspect a refresh token, pass your access_token too")
        try:
            return await backend.introspect(token, token, rc)
        except InvalidToken:
            return {"active": False}  # it cannot even authenticate itself

    async def revoke_token(
        token: Annotated[str, Field(description="The access token or refresh token to revoke.")],
        ctx: Context[Any, Any],
        access_token: Annotated[
            str | None,
            Field(description="Your access token, if not the token itself (or the Authorization header)."),
        ] = None,
    ) -> RevokeResult:
        """Revoke an access token or a refresh token (RFC 7009) - for example at the end of a task or when a
        token may have leaked. Revoking a refresh token also revokes the access tokens issued from it. Succeeds
        also for unknown or already revoked tokens. Without access_token an access token revokes itself."""
        rc = _request_context(ctx)
        caller = access_token or _header_token(ctx)
        if caller is None:
            if token.startswith(REFRESH_TOKEN_PREFIX):
                raise InvalidToken("to revoke a refresh token, pass your access_token too")
            # Already revoked or expired: nothing left to do (RFC 7009 section 2.2).
            with contextlib.suppress(InvalidToken):
                await backend.revoke(token, token, rc)
        else:
            await backend.revoke(caller, token, rc)
        return RevokeResult(success=True, detail="the token is revoked if it was one you may revoke")

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
        body = CreateApiKeyRequest(agent_id=agent_id, scopes=scopes, name=name, expires_in_days=expires_in_days)
        op = Operation(
            "POST",
            ("api", "v1", "credentials"),
            ApiKeyCreated,
            lambda s, p, rc: s.api_keys.create(p, body, rc),
            body=body,
        )
        return await backend.call(op, _access_token(access_token, ctx), _request_context(ctx))

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
        )
        return await backend.call(op, _access_token(access_token, ctx), _request_context(ctx))

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
        )
        return await backend.call(op, _access_token(access_token, ctx), _request_context(ctx))

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
        )
        return await backend.call(op, _access_token(access_token, ctx), _request_context(ctx))

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
        body = CreateDelegationRequest(
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
        )
        return await backend.call(op, _access_token(access_token, ctx), _request_context(ctx))

    async def exchange_delegation(
        credential: Annotated[str, Field(description="The delegation credential (the credential field).")],
        ctx: Context[Any, Any],
        access_token: AccessToken = None,
        scopes: Scopes = None,
    ) -> TokenResponse:
        """As the delegate, exchange a delegation credential for an access token acting on the delegator's
        behalf (RFC 8693 token exchange). access_token is your own token. The result has no refresh token:
        exchange again when it expires."""
        params = {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "subject_token": credential,
            "subject_token_type": TOKEN_TYPE_JWT,
            "actor_token": _access_token(access_token, ctx),
            "actor_token_type": TOKEN_TYPE_ACCESS,
        }
        if scopes:
            params["scope"] = " ".join(scopes)
        return await backend.token(params, _request_context(ctx))

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
        )
        return await backend.call(op, _access_token(access_token, ctx), _request_context(ctx))

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
        )
        return await backend.call(op, _access_token(access_token, ctx), _request_context(ctx))

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
        body = EvaluateRequest(agent_id=agent_id, action=action, resource=resource)
        op = Operation(
            "POST",
            ("api", "v1", "policies", "evaluate"),
            EvaluateResponse,
            lambda s, p, rc: s.policies.evaluate(p, body, rc),
            body=body,
        )
        return await backend.call(op, _access_token(access_token, ctx), _request_context(ctx))

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
        )
        return await backend.call(op, _access_token(access_token, ctx), _request_context(ctx))

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
        )
        return await backend.call(op, _access_token(access_token, ctx), _request_context(ctx))

    async def create_agent(
        name: Annotated[str, Field(description="A name for the new agent.")],
        agent_type: Annotated[AgentType, Field(description="orchestrator, autonomous, assistant or tool.")],
        ctx: Context[Any, Any],
        access_token: AccessToken = None,
        description: Annotated[str | None, Field(description="What the agent does.")] = None,
        scopes: Annotated[list[str] | None, Field(description="A subset of your scopes; default all of them.")] = None,
        trust_level: Annotated[TrustLevel | None, Field(description="At most yours; default yours.")] = None,
        public_key: PublicKey = None,
    ) -> AgentCreated:
        """Create an agent below you in your tenant (a sub-agent), with its own did:key and identity
        credential. SAVE private_key_jwk now if one was generated (shown only once). Give it an API key with
        create_credential(agent_id=...) so it can authenticate, or lend it scopes with create_delegation."""
        body = CreateAgentRequest(
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
        )
        return await backend.call(op, _access_token(access_token, ctx), _request_context(ctx))

    async def verify_token(
        token: Annotated[str, Field(description="An access token, identity credential or delegation credential.")],
        audience: Annotated[str | None, Field(description="Also require this aud (access tokens).")] = None,
    ) -> VerifyResult:
        """Verify an AgentAuth token or credential fully offline, as any third party would: signature against
        the published keys, algorithm, issuer, expiry, revocation status and, for delegated tokens, every link
        of the delegation chain. Returns valid true with the claims, or valid false with a reason code."""
        return await offline.verify_token(backend, token, audience, datetime.now(UTC))

    return [
        (discover, _read_only("Discover AgentAuth")),
        (quickstart, _writes("Register a new agent")),
        (authenticate, _writes("Get tokens with an API key")),
        (refresh_token, _writes("Refresh tokens")),
        (introspect_token, _read_only("Introspect a token")),
        (revoke_token, _writes("Revoke a token", destructive=True, idempotent=True)),
        (create_credential, _writes("Create an API key")),
        (rotate_credential, _writes("Rotate an API key", destructive=True)),
        (revoke_credential, _writes("Revoke an API key", destructive=True, idempotent=True)),
        (create_delegation, _writes("Delegate scopes")),
        (check_permission, _read_only("Check a permission")),
        (list_agents, _read_only("List agents")),
        (get_agent, _read_only("Get an agent")),
        (list_credentials, _read_only("List API keys")),
        (list_delegations, _read_only("List delegations")),
        (revoke_delegation, _writes("Revoke a delegation", destructive=True, idempotent=True)),
        (create_agent, _writes("Create a sub-agent")),
        (verify_token, _read_only("Verify a token offline")),
        (exchange_delegation, _writes("Act under a delegation")),
    ]


class AgentAuthMCP(MCPServer[Any]):
    """``MCPServer`` whose tool failures go through ``errors.map_tool_error``, the one mapping."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            raise map_tool_error(name, exc) from None


def _require_access_token(tool: Tool) -> None:
    """Over stdio there is no header to carry the token: the schema says what the contract says, required."""
    properties = tool.parameters.get("properties", {})
    if "access_token" in properties and tool.name not in ("introspect_token", "revoke_token"):
        properties["access_token"] = {"type": "string", "title": "Access Token", "description": ACCESS_TOKEN_HELP}
        required = tool.parameters.setdefault("required", [])
        if "access_token" not in required:
            required.append("access_token")


def build_server(backend: Backend, *, token_in_header: bool, default_api_key: str | None = None) -> AgentAuthMCP:
    """The MCP server with every tool over ``backend``. ``token_in_header``: the transport is HTTP, so an access
    token may come from the Authorization header; ``default_api_key``: authenticate's fallback key (stdio only:
    over HTTP it would hand the operator's key to every anonymous caller)."""
    tools = []
    for fn, hints in _tools(backend, default_api_key):
        tool = Tool.from_function(fn, annotations=hints, title=hints.title)
        if not token_in_header:
            _require_access_token(tool)
        tools.append(tool)
    root = logging.getLogger()
    guard = logging.NullHandler()
    if not root.handlers:
        # MCPServer calls logging.basicConfig; the host (CLI, uvicorn, tests) decides how logs look, not the SDK.
        root.addHandler(guard)
    try:
        return AgentAuthMCP("agentauth", title="AgentAuth", version=__version__, instructions=INSTRUCTIONS, tools=tools)
    finally:
        root.removeHandler(guard)
