"""The tools of an agent's own identity and tokens: discover, quickstart, authenticate, refresh_token,
introspect_token, revoke_token, exchange_delegation (RFC 8693) and verify_token (offline verification).

Tool and parameter names are a published contract (MCP issue): keep them. Docstrings are what the model reads.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from agentauth.errors import InvalidClient, InvalidRequest, InvalidToken
from agentauth.issuer.schemas import AgentType, Description, Name, QuickstartRequest, QuickstartResponse, TokenResponse
from agentauth.issuer.secrets import REFRESH_TOKEN_PREFIX
from agentauth.issuer.tokens import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_JWT,
)
from agentauth.mcp import verify as offline
from agentauth.mcp.base import backend_of, caller_token, default_api_key_of, held_of, held_token_response
from agentauth.mcp.held import is_placeholder
from agentauth.mcp.params import (
    AccessToken,
    PublicKey,
    Scopes,
    header_token,
    read_only,
    request_context,
    request_model,
    writes,
)
from agentauth.mcp.registry import tool
from agentauth.mcp.verify import VerifyResult

# A refresh token alone that is not one of ours proves nothing; the answer names no reason beyond that.
_NOT_OUR_REFRESH_TOKEN = "not a refresh token issued by this AgentAuth; to {verb} another token, pass your access_token"


class RevokeResult(BaseModel):
    success: bool = Field(description="Always true: revocation is idempotent (RFC 7009 section 2.2).")
    detail: str


@tool(order=1, hints=read_only("Discover AgentAuth"))
async def discover(ctx: Context[Any, Any]) -> dict[str, Any]:
    """Describe this AgentAuth: grant types, scopes (with what each allows), token lifetimes, agent types,
    trust levels, registration mode and every endpoint URL. Call it first when you do not know the server."""
    return await backend_of(ctx).discover()


@tool(order=2, hints=writes("Register a new agent"))
async def quickstart(
    name: Annotated[Name, Field(description="A name for your agent.")],
    agent_type: Annotated[AgentType, Field(description="orchestrator, autonomous, assistant or tool.")],
    ctx: Context[Any, Any],
    description: Annotated[Description | None, Field(description="What the agent does.")] = None,
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
    request = request_model(
        QuickstartRequest,
        name=name,
        agent_type=agent_type,
        description=description,
        public_key=public_key,
        registration_token=registration_token,
    )
    return await backend_of(ctx).quickstart(request, request_context(ctx))


@tool(order=3, hints=writes("Get tokens with an API key"))
async def authenticate(
    ctx: Context[Any, Any],
    api_key: Annotated[
        str | None,
        Field(
            description="Secret: your API key (ak_live_...). Default: AGENTAUTH_API_KEY of a stdio server, or the "
            "credential it holds."
        ),
    ] = None,
    scopes: Scopes = None,
) -> TokenResponse:
    """Exchange your API key for a new access token and refresh token (OAuth client_credentials). Call it at
    the start of a session or when refresh_token fails. Save refresh_token; use access_token with the other
    tools. scopes narrows the token to fewer scopes than the key holds."""
    key = api_key if api_key and not is_placeholder(api_key) else default_api_key_of(ctx)
    if not key and held_of(ctx) is not None:
        return await held_token_response(ctx)  # the credential this server holds
    if not key:
        raise InvalidClient("no API key: pass api_key (from quickstart or create_credential)")
    params = {"grant_type": GRANT_CLIENT_CREDENTIALS, "client_secret": key}
    if scopes:
        params["scope"] = " ".join(scopes)
    return await backend_of(ctx).token(params, request_context(ctx))


@tool(order=4, hints=writes("Refresh tokens"))
async def refresh_token(
    ctx: Context[Any, Any],
    refresh_token_value: Annotated[
        str | None,
        Field(
            description="Secret: your current refresh token (rt_...). Leave out when this server holds your "
            "credential (it refreshes for you)."
        ),
    ] = None,
) -> TokenResponse:
    """Trade your refresh token for a new access token and a new refresh token. Call it before
    refresh_before, or when a tool says invalid_token because your access token expired. Refresh tokens are
    single-use: save the new refresh_token and forget the old one (presenting a used one again revokes the
    whole token family)."""
    if refresh_token_value is None or is_placeholder(refresh_token_value):
        if held_of(ctx) is None:
            raise InvalidRequest("refresh_token_value is required: pass your current refresh token (rt_...)")
        return await held_token_response(ctx)
    params = {"grant_type": GRANT_REFRESH_TOKEN, "refresh_token": refresh_token_value}
    return await backend_of(ctx).token(params, request_context(ctx))


@tool(order=5, hints=read_only("Introspect a token"))
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
    unknown, or not yours to see). Without access_token an access token introspects itself, and a refresh
    token needs none: holding it is enough to learn its own state."""
    rc = request_context(ctx)
    caller = access_token or header_token(ctx)
    backend = backend_of(ctx)
    if token.startswith(REFRESH_TOKEN_PREFIX):
        # The refresh token is its own credential (issuer/lifecycle.py): a caller's token, even an expired one,
        # must not stand in its way. Only when it is not one of ours does the caller's authentication matter.
        try:
            return await backend.introspect(None, token, rc)
        except InvalidToken:
            if caller is None:
                raise InvalidToken(_NOT_OUR_REFRESH_TOKEN.format(verb="introspect")) from None
        return await backend.introspect(caller, token, rc)
    if caller is not None:
        return await backend.introspect(caller, token, rc)
    try:
        return await backend.introspect(token, token, rc)
    except InvalidToken:
        return {"active": False}  # it cannot even authenticate itself


@tool(order=6, hints=writes("Revoke a token", destructive=True, idempotent=True))
async def revoke_token(
    token: Annotated[str, Field(description="The access token or refresh token to revoke.")],
    ctx: Context[Any, Any],
    access_token: Annotated[
        str | None,
        Field(description="Your access token, if not the token itself (or the Authorization header)."),
    ] = None,
) -> RevokeResult:
    """Revoke an access token or a refresh token (RFC 7009) - for example at the end of a task or when a
    token may have leaked. Revoking either one revokes the pair: a refresh token takes the access tokens
    issued from it, an access token takes its refresh token. Succeeds also for unknown or already revoked
    tokens. Without access_token an access token revokes itself, and a refresh token needs none."""
    rc = request_context(ctx)
    caller = access_token or header_token(ctx)
    backend = backend_of(ctx)
    if token.startswith(REFRESH_TOKEN_PREFIX):
        try:
            await backend.revoke(None, token, rc)
        except InvalidToken:
            if caller is None:  # not one of our refresh tokens, and nothing else proves anything
                raise InvalidToken(_NOT_OUR_REFRESH_TOKEN.format(verb="revoke")) from None
            await backend.revoke(caller, token, rc)
    elif caller is None:
        # Already revoked or expired: nothing left to do (RFC 7009 section 2.2).
        with contextlib.suppress(InvalidToken):
            await backend.revoke(token, token, rc)
    else:
        await backend.revoke(caller, token, rc)
    return RevokeResult(success=True, detail="the token is revoked if it was one you may revoke")


@tool(order=19, hints=writes("Act under a delegation"))
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
        "actor_token": await caller_token(ctx, access_token),
        "actor_token_type": TOKEN_TYPE_ACCESS,
    }
    if scopes:
        params["scope"] = " ".join(scopes)
    return await backend_of(ctx).token(params, request_context(ctx))


@tool(order=18, hints=read_only("Verify a token offline"))
async def verify_token(
    ctx: Context[Any, Any],
    token: Annotated[str, Field(description="An access token, identity credential or delegation credential.")],
    audience: Annotated[str | None, Field(description="Also require this aud (access tokens).")] = None,
) -> VerifyResult:
    """Verify an AgentAuth token or credential fully offline, as any third party would: signature against
    the published keys, algorithm, issuer, expiry, revocation status and, for delegated tokens, every link
    of the delegation chain. Returns valid true with the claims, or valid false with a reason code."""
    return await offline.verify_token(backend_of(ctx), token, audience, datetime.now(UTC))
