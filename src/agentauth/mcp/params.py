"""What every tool shares: parameter types, the caller's address and request id, the access token (argument
or ``Authorization: Bearer`` header), request-model validation and the tools' hints (MCP tool annotations)."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from agentauth.errors import InvalidRequest, InvalidToken
from agentauth.issuer.context import RequestContext
from agentauth.mcp.errors import validation_problems

M = TypeVar("M", bound=BaseModel)

ACCESS_TOKEN_HELP = "Secret: your access token (access_token from quickstart, authenticate or refresh_token)."
HELD_HELP = (
    "Leave out: this server holds your agent's credential and authenticates for you. Secret: pass a token only "
    "to act as another agent."
)
# Where ``http.BearerChallenge`` leaves the key of the DPoP proof it checked for the HTTP request (RFC 9449).
HOLDER_STATE = "agentauth_dpop_jkt"
HEADER_HELP = " Over HTTP it may be omitted when the Authorization: Bearer header carries it."

Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
AccessToken = Annotated[str | None, Field(description=ACCESS_TOKEN_HELP + HEADER_HELP)]
Scopes = Annotated[
    list[str] | None,
    Field(description='Scope names (see discover), e.g. ["agents.read"]. Omit for everything you may have.'),
]
Limit = Annotated[int, Field(ge=1, le=100, description="Page size, 1-100.")]
# The upper bound is SQL BIGINT's: larger offsets cannot reach the database as integers.
Offset = Annotated[int, Field(ge=0, le=2**63 - 1, description="Items to skip.")]
PublicKey = Annotated[
    str | dict[str, Any] | None,
    Field(description="Bring your own key: a did:key or an Ed25519 public JWK. Omit to have a key pair generated."),
]


def request_context(ctx: Context[Any, Any]) -> RequestContext:
    """Client address and request id of the HTTP request carrying this call (none over stdio)."""
    request = ctx.request_context.request
    client = getattr(request, "client", None)
    ip = getattr(client, "host", None)
    scope = getattr(request, "scope", None)
    state = scope.get("state") if isinstance(scope, dict) else None
    request_id = state.get("request_id") if isinstance(state, dict) else None
    holder = state.get(HOLDER_STATE) if isinstance(state, dict) else None
    address = ip if isinstance(ip, str) else None
    holder_jkt = holder if isinstance(holder, str) else None
    if isinstance(request_id, str):
        return RequestContext(request_id=request_id, ip=address, holder_jkt=holder_jkt)
    return RequestContext(ip=address, holder_jkt=holder_jkt)


def header_token(ctx: Context[Any, Any]) -> str | None:
    """The token of the HTTP request's ``Authorization: Bearer`` or ``DPoP`` header (the transport checked a
    DPoP token's proof: ``HOLDER_STATE``)."""
    headers = ctx.headers
    value = headers.get("authorization") if headers is not None else None
    if isinstance(value, str) and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    if isinstance(value, str) and value[:5].lower() == "dpop ":
        return value[5:].strip() or None
    return None


def access_token_of(given: str | None, ctx: Context[Any, Any]) -> str:
    token = given or header_token(ctx)
    if not token:
        raise InvalidToken("an access token is required: pass access_token (from quickstart or authenticate)")
    return token


def request_model(model: type[M], **fields: Any) -> M:
    """The request model REST would validate; its refusal is the caller's ``invalid_request``."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise InvalidRequest(validation_problems(exc)) from exc


def read_only(title: str) -> ToolAnnotations:
    return ToolAnnotations(title=title, read_only_hint=True, open_world_hint=False)


def writes(title: str, *, destructive: bool = False, idempotent: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        title=title,
        read_only_hint=False,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )
