"""Who is calling and from where: the inputs every use case receives besides its own parameters."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from agentauth.errors import InsufficientScope
from agentauth.storage.records import Agent


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str = field(default_factory=lambda: secrets.token_hex(8))
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated agent acting with the scopes of the access token it presented."""

    agent: Agent
    scopes: frozenset[str]
    jti: str
    client_id: str
    token_exp: int
    claims: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def tenant_id(self) -> str:
        return self.agent.tenant_id

    def require(self, *scopes: str) -> None:
        missing = [s for s in scopes if s not in self.scopes]
        if missing:
            raise InsufficientScope(f"this request needs scope {' '.join(missing)}")
