"""What the tools need from AgentAuth, whether it runs in this process (``embedded``) or behind its REST API
(``remote``).

An authenticated tool call is one ``Operation``: the arguments of the operation its tool declared (from
``issuer/operations.py``) - the ids that fill its resource, the other parameters and the request body - and the
use case that runs it in process. The embedded backend authenticates the bearer token and runs the use case, which
authorizes itself (``issuer/authorization.py``); the remote backend sends the arguments to the route the REST
API's own description names for that operation (its OpenAPI ``x-agentauth-operation``), whose handler runs the
same use case. No adapter carries authorization, so both paths, and REST itself, make one decision.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from agentauth.bootstrap import Services
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.schemas import QuickstartRequest, QuickstartResponse, TokenResponse

R = TypeVar("R", bound=BaseModel)

UseCase = Callable[[Services, Principal, RequestContext], Awaitable[R]]


class Done(BaseModel):
    """The answer of a use case that returns nothing (REST: 204 No Content)."""


@dataclass(frozen=True, slots=True)
class Operation(Generic[R]):
    """What a tool's call of its operation carries; which operation it is, the tool declared where it was
    registered (``registry.tool(operation=...)``), and ``base.call`` names it from there."""

    response: type[R]
    run: UseCase[R]
    ids: Mapping[str, str] = field(default_factory=dict)  # fill the operation's resource (REST: path parameters)
    query: Mapping[str, str | int | None] = field(default_factory=dict)  # the other parameters (REST: query)
    body: BaseModel | None = None


@dataclass(frozen=True, slots=True)
class VerificationMaterial:
    """What an offline verifier needs: the issuer's identifiers and its published keys."""

    issuer_url: str
    issuer_did: str
    jwks: dict[str, Any]


class Backend(Protocol):
    async def call(self, name: str, operation: Operation[R], access_token: str, ctx: RequestContext) -> R:
        """Run the operation ``name`` (issuer/operations.py) with ``operation``'s arguments as the holder of
        ``access_token``."""

    async def discover(self) -> dict[str, Any]:
        """The agent configuration document."""

    async def quickstart(self, request: QuickstartRequest, ctx: RequestContext) -> QuickstartResponse: ...

    async def token(self, params: dict[str, str], ctx: RequestContext) -> TokenResponse:
        """The token endpoint (RFC 6749 section 3.2) with these parameters."""

    async def backchannel(self, params: dict[str, str], ctx: RequestContext) -> dict[str, Any]:
        """The backchannel authentication endpoint (OpenID CIBA section 7) with these parameters."""

    async def introspect(self, caller: str | None, token: str, ctx: RequestContext) -> dict[str, Any]:
        """RFC 7662, the caller authenticating with its access token; ``caller`` None: with no credential, the
        token being its own (a refresh token: ``issuer/lifecycle.py``)."""

    async def revoke(self, caller: str | None, token: str, ctx: RequestContext) -> None:
        """RFC 7009, the caller authenticating with its access token (``caller`` None: as ``introspect``)."""

    async def verification_material(self) -> VerificationMaterial: ...

    async def status_list(self, url: str) -> str | None:
        """The status list credential published at ``url`` if it is one of this issuer's lists, else None."""
