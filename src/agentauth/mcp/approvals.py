"""The tools of human approval (OpenID CIBA + RFC 9396): ``request_approval`` asks the agent's owner to approve
an exact action, ``approval_status`` polls for the answer and, once approved, returns the token that carries
the approved ``authorization_details``. Both authenticate as the agent's client, with its API key (an argument,
``AGENTAUTH_API_KEY`` of a stdio server, or the credential the server holds) - as the endpoints do."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from agentauth.errors import AgentAuthError, InvalidClient
from agentauth.issuer.approvals import GRANT_CIBA
from agentauth.issuer.schemas import TokenResponse
from agentauth.mcp.base import backend_of, default_api_key_of, held_of
from agentauth.mcp.held import is_placeholder
from agentauth.mcp.params import Scopes, read_only, request_context, writes
from agentauth.mcp.registry import tool

ApiKey = Annotated[
    str | None,
    Field(
        description="Secret: your API key (ak_live_...). Default: AGENTAUTH_API_KEY of a stdio server, or the "
        "credential it holds."
    ),
]
# A poll's refusal code -> what it means for the agent.
POLL_ANSWERS = {
    "authorization_pending": "pending",
    "slow_down": "pending",
    "access_denied": "denied",
    "expired_token": "expired",
}


class ApprovalRequested(BaseModel):
    auth_req_id: str = Field(description="Pass it to approval_status. Not a secret by itself: only you can poll it.")
    expires_in: int = Field(description="Seconds the owner has to decide.")
    interval: int = Field(description="Wait at least this many seconds between two approval_status calls.")


class ApprovalStatus(BaseModel):
    status: Literal["pending", "approved", "denied", "expired"]
    detail: str = Field(description="What to do next.")
    interval: int | None = Field(None, description="When pending: seconds to wait before asking again.")
    token: TokenResponse | None = Field(
        None, description="When approved: the access token carrying the approved authorization_details (once)."
    )


def _client_key(ctx: Context[Any, Any], api_key: str | None) -> str:
    if api_key and not is_placeholder(api_key):
        return api_key
    key = default_api_key_of(ctx)
    held = held_of(ctx)
    if not key and held is not None and held.credentials is not None:
        key = held.credentials.api_key
    if not key:
        raise InvalidClient("no API key: pass api_key (from quickstart or create_credential)")
    return key


@tool(order=43, hints=writes("Ask your owner to approve an action"))
async def request_approval(
    login_hint: Annotated[str, Field(max_length=320, description="The email of an owner of your tenant.")],
    ctx: Context[Any, Any],
    authorization_details: Annotated[
        list[dict[str, Any]] | None,
        Field(
            description='What exactly you will do (RFC 9396), e.g. [{"type": "payment", "amount": "45.00", '
            '"currency": "USD", "creditor": "ACME"}]; each type one of the server\'s '
            "authorization_details_types_supported. The owner sees it verbatim; the token carries it."
        ),
    ] = None,
    binding_message: Annotated[
        str | None, Field(max_length=200, description="One line shown to the owner with the request.")
    ] = None,
    scopes: Scopes = None,
    requested_expiry: Annotated[int | None, Field(ge=1, description="Seconds the owner may take.")] = None,
    single_use: Annotated[
        bool, Field(description="The token is spent at its first use (one action, once). Default false.")
    ] = False,
    api_key: ApiKey = None,
) -> ApprovalRequested:
    """Before an action that needs a person (a payment, a deletion, anything your policy says needs approval),
    ask your owner to approve exactly that action. Then call approval_status with the auth_req_id, waiting the
    interval between calls, until it is approved, denied or expired. Do not act before it is approved."""
    params = {"client_secret": _client_key(ctx, api_key), "login_hint": login_hint}
    if authorization_details is not None:
        params["authorization_details"] = json.dumps(authorization_details)
    if binding_message is not None:
        params["binding_message"] = binding_message
    if scopes:
        params["scope"] = " ".join(scopes)
    if requested_expiry is not None:
        params["requested_expiry"] = str(requested_expiry)
    if single_use:
        params["single_use"] = "true"
    answer = await backend_of(ctx).backchannel(params, request_context(ctx))
    return ApprovalRequested.model_validate(answer)


@tool(order=44, hints=read_only("Check an approval request"))
async def approval_status(
    auth_req_id: Annotated[str, Field(min_length=1, max_length=200, description="From request_approval.")],
    ctx: Context[Any, Any],
    api_key: ApiKey = None,
) -> ApprovalStatus:
    """Whether your owner approved a request_approval yet. pending: wait interval seconds and ask again;
    approved: the result holds the token for exactly the approved action (returned once - use it for that
    action only); denied or expired: do not do it (ask again only if your owner wants you to)."""
    params = {"grant_type": GRANT_CIBA, "auth_req_id": auth_req_id, "client_secret": _client_key(ctx, api_key)}
    try:
        token = await backend_of(ctx).token(params, request_context(ctx))
    except AgentAuthError as exc:
        status = POLL_ANSWERS.get(exc.error)
        if status is None:
            raise
        if status == "pending":
            wait = "wait longer between calls" if exc.error == "slow_down" else "wait, then call approval_status again"
            interval = 10 if exc.error == "slow_down" else 5
            return ApprovalStatus(
                status="pending", detail=f"Your owner has not decided yet: {wait}.", interval=interval
            )
        verdict = "denied it" if status == "denied" else "did not decide in time"
        final: Literal["denied", "expired"] = "denied" if status == "denied" else "expired"
        return ApprovalStatus(status=final, detail=f"Your owner {verdict}: do not perform the action.")
    return ApprovalStatus(status="approved", detail="Approved: act now, for exactly what was approved.", token=token)
