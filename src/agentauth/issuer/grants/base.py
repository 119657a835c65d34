"""The interface of a token endpoint grant (RFC 6749 section 4; extension grants, section 4.5).

A grant is a class: the ``grant_type`` it answers (a registered name or an absolute URI), the form parameters
it reads (``Parameter``: the token endpoint's OpenAPI form is made of them) and ``handle``, which turns one
request's parameters into a ``TokenResponse`` or raises an ``agentauth.errors`` error. It is built once per
``TokenService`` with the services it may use (``GrantServices``) and registered with one line in
``agentauth.issuer.grants``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from agentauth.errors import AgentAuthError, InvalidClient, InvalidDPoPProof, InvalidGrant, InvalidRequest
from agentauth.issuer import audit
from agentauth.issuer.apikeys import ApiKeyService
from agentauth.issuer.clients import ClientDirectory
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.hotpath import ClientCredentialsIssuer
from agentauth.issuer.schemas import TokenResponse
from agentauth.vc import DPoPRequest, Verifier

MAX_PARAMETER_LENGTH = 16_384


@dataclass(frozen=True)
class Parameter:
    """A form parameter a grant reads (RFC 6749 appendix A spells their syntax)."""

    name: str
    description: str
    required: bool = False


# RFC 8707 section 2, on every grant (``issuer/audience.py`` resolves it).
RESOURCE_PARAMETER = Parameter(
    "resource",
    "RFC 8707: the absolute URI of the resource server the token is for (may repeat); sets aud. "
    "Default: AgentAuth's own API.",
)


class GrantServices(Protocol):
    """What a grant may use; ``TokenService`` provides it."""

    core: IssuerCore
    api_keys: ApiKeyService
    client_credentials: ClientCredentialsIssuer
    clients: ClientDirectory

    def self_verifier(self) -> Verifier: ...

    async def authenticate_bearer(
        self, token: str | None, dpop: DPoPRequest | None = None, proven_jkt: str | None = None
    ) -> Principal: ...


class Grant(ABC):
    grant_type: ClassVar[str]
    parameters: ClassVar[tuple[Parameter, ...]]
    # True when ``handle`` puts every refusal (invalid_client, invalid_grant) into the audit trail itself;
    # otherwise the token endpoint records it after ``handle`` raised.
    records_own_failures: ClassVar[bool] = False
    # RFC 8414 section 2: the authorization endpoint's ``response_type`` values this grant redeems (``code`` for
    # the authorization code grant); the metadata's ``response_types_supported`` is their union.
    response_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, services: GrantServices) -> None:
        self.services = services
        self.core = services.core

    @abstractmethod
    async def handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        """Answer one token request with this grant."""


class RecordsRefusals(Grant):
    """A grant whose refusals of the client or of the grant (``invalid_client``, ``invalid_grant``, a bad DPoP
    proof) are recorded as ``token.denied``, each in its own transaction; other answers (``invalid_request``, the
    polling answers of CIBA) are not."""

    records_own_failures = True

    async def handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        try:
            return await self._handle(params, ctx)
        except (InvalidClient, InvalidGrant, InvalidDPoPProof) as exc:
            await record_refusal(self.core, ctx, self.grant_type, exc)
            raise

    @abstractmethod
    async def _handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        """Answer one token request; raise to refuse it."""


def param(params: dict[str, Any], name: str, required: bool = False) -> str | None:
    """One request parameter: a string, or None when absent or empty (RFC 6749 section 3.1: "Parameters sent
    without a value MUST be treated as if they were omitted")."""
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"missing parameter: {name}")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"parameter {name} must be a string")
    if len(value) > MAX_PARAMETER_LENGTH:
        raise InvalidRequest(f"parameter {name} is too long")
    return value


def required_param(params: dict[str, Any], name: str) -> str:
    value = param(params, name, required=True)
    assert value is not None
    return value


async def record_refusal(core: IssuerCore, ctx: RequestContext, grant_type: str, exc: AgentAuthError) -> None:
    """The audit event of a refused token request, in its own transaction."""
    await audit.record_failure(
        core.sessions, ctx, core.clock, action="token.denied", reason=f"{grant_type}: {exc.debug or exc.description}"
    )
