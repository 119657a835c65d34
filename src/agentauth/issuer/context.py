"""Who is calling and from where: the inputs every use case receives besides its own parameters."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from agentauth.errors import InsufficientScope
from agentauth.issuer.dpop import DPoPBinding
from agentauth.storage.records import Agent


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str = field(default_factory=lambda: secrets.token_hex(8))
    ip: str | None = None
    # A token request's checked DPoP proof (``issuer/dpop.py``): every grant binds what it issues to its key and
    # records its single use with what it writes. None: a bearer token request.
    dpop: DPoPBinding | None = None
    # The key of the DPoP proof a transport checked for the HTTP request carrying this call (``/mcp``): a bound
    # access token the call presents must be bound to it (``TokenService.authenticate_bearer(proven_jkt=...)``).
    holder_jkt: str | None = None
    # The owner account acting through the console (``api/console.py``): the use cases run as the tenant root,
    # and every audit event the call records names the person in its details (``audit.event``).
    owner_id: str | None = None
    # The operator acting from the command line (``agentauth admin suspend|resume|stop``): recorded like an owner.
    operator: str | None = None

    @property
    def dpop_jkt(self) -> str | None:
        return self.dpop.jkt if self.dpop is not None else None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated agent acting with the scopes of the access token it presented."""

    agent: Agent
    scopes: frozenset[str]
    jti: str
    client_id: str
    token_exp: int
    claims: dict[str, object] = field(default_factory=dict, compare=False)
    # For a token obtained by token exchange: the delegate acting on ``agent``'s behalf (RFC 8693 ``act``),
    # the delegation it acts under (the chain's last link) and the chain's length.
    actor: Agent | None = None
    delegation_id: str | None = None
    delegation_depth: int = 0
    # The tenant's policy version read with the token's state, so route authorization needs no extra query.
    policy_version: int | None = None

    @property
    def tenant_id(self) -> str:
        return self.agent.tenant_id

    @property
    def acting(self) -> Agent:
        """Who is actually making the request: the delegate under a delegation, else the subject."""
        return self.actor or self.agent

    def may_manage(self, owner: Agent) -> bool:
        """Whether this principal may change what ``owner`` owns: the agent itself, its API keys, its tokens,
        the delegations it granted. The one ownership rule of every use case that changes something.

        ``owner`` must be in the token's tenant and in the subtree of the token's subject. Under a delegation the
        token speaks for the delegator but the delegate acts, so ``owner`` must also lie in the acting delegate's
        own subtree and never be the delegator itself (its ancestors are outside its subtree already): a delegate
        acts *for* the delegator within what the delegation covers and what it could manage on its own, never *on*
        the delegator. A delegate of another tenant therefore manages nothing of the delegator's tenant."""
        if owner.tenant_id != self.tenant_id or not owner.path.startswith(self.agent.path):
            return False
        if self.actor is None:
            return True
        return owner.id != self.agent.id and owner.path.startswith(self.actor.path)

    def require(self, *scopes: str) -> None:
        missing = [s for s in scopes if s not in self.scopes]
        if missing:
            raise InsufficientScope(f"this request needs scope {' '.join(missing)}")
