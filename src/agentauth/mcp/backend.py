"""What the tools need from AgentAuth, whether it runs in this process (``embedded``) or behind its REST API
(``remote``).

An authenticated operation is described once as an ``Operation``: the REST route it is (method, path, query,
body, response model), the operation it runs (``name``, from ``issuer/operations.py``, with the ids that fill
its resource) *and* the use case. The remote backend sends the route (whose REST handler declares the same
operation); the embedded backend authenticates the bearer token, authorizes that operation through the policy
engine (as REST's ``Authorized`` does) and runs the use case - so both paths, and REST itself, make one
decision.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from agentauth.bootstrap import Services
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.schemas import QuickstartRequest, QuickstartResponse, TokenResponse

R = TypeVar("R", bound=BaseModel)

UseCase = Callable[[Services, Principal, RequestContext], Awaitable[R]]


@dataclass(frozen=True, slots=True)
class Operation(Generic[R]):
    method: str
    route: tuple[str, ...]  # the REST path's segments, ids included: ("api", "v1", "agents", agent_id)
    response: type[R]
    run: UseCase[R]
    query: Mapping[str, str | int | None] = field(default_factory=dict)
    body: BaseModel | None = None
    name: str = field(kw_only=True)  # the operation (issuer/operations.py), so its action is the REST route's
    ids: Mapping[str, str] = field(default_factory=dict, kw_only=True)  # fill the operation's resource

    @property
    def path(self) -> str:
        """The path as the policy engine sees it (what ``request.url.path`` is in REST)."""
        return "/" + "/".join(self.route)

    @property
    def url_path(self) -> str:
        return "/" + "/".join(quote(part, safe="") for part in self.route)


@dataclass(frozen=True, slots=True)
class VerificationMaterial:
    """What an offline verifier needs: the issuer's identifiers and its published keys."""

    issuer_url: str
    issuer_did: str
    jwks: dict[str, Any]


class Backend(Protocol):
    async def call(self, operation: Operation[R], access_token: str, ctx: RequestContext) -> R:
        """Run an authenticated operation as the holder of ``access_token``."""

    async def discover(self) -> dict[str, Any]:
        """The agent configuration document."""

    async def quickstart(self, request: QuickstartRequest, ctx: RequestContext) -> QuickstartResponse: ...

    async def token(self, params: dict[str, str], ctx: RequestContext) -> TokenResponse:
        """The token endpoint (RFC 6749 section 3.2) with these parameters."""

    async def introspect(self, caller: str | None, token: str, ctx: RequestContext) -> dict[str, Any]:
        """RFC 7662, the caller authenticating with its access token; ``caller`` None: with no credential, the
        token being its own (a refresh token: ``issuer/lifecycle.py``)."""

    async def revoke(self, caller: str | None, token: str, ctx: RequestContext) -> None:
        """RFC 7009, the caller authenticating with its access token (``caller`` None: as ``introspect``)."""

    async def verification_material(self) -> VerificationMaterial: ...

    async def status_list(self, url: str) -> str | None:
        """The status list credential published at ``url`` if it is one of this issuer's lists, else None."""
