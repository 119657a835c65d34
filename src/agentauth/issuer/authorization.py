"""Authorization by operation: every use case of AgentAuth's own API names its operation (``issuer/operations.py``)
with ``@use_case("agents.get")`` and is authorized, before its body runs, by one call - ``Authorizer.authorize``:

1. the policy engine, on the operation's action and resource (the call's ids filled in): the token's scopes (and
   the delegation it acts under) give the default allows, the tenant's deny policies take them away;
2. the operation's required scopes, every one of them in the token;
3. who may run it at all: no lasting credential made under a delegation (``lasting``), the tenant's root agent
   alone, never through a delegate (``root_only``).

What depends on the objects a call names (is that agent in the caller's subtree? may it manage that key's owner?)
is the use case's own query and stays in its body (``Principal.may_manage``, the ``_visible``/``_manageable``
helpers). Adapters (REST routes, MCP tools) authenticate the caller and call the use case; none carries
authorization, so a new adapter cannot forget it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from agentauth.errors import AccessDenied, ApprovalRequired, Conflict, InsufficientScope
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.operations import ApiOperation, operation
from agentauth.issuer.policy_engine import REQUIRE_APPROVAL, EvaluationContext, Grant, PolicySet, Subject
from agentauth.issuer.policy_sets import PolicySets
from agentauth.storage.models import UsedAssertionRow
from agentauth.storage.ports import Insert, WritePlan
from agentauth.storage.records import Agent

P = ParamSpec("P")
T = TypeVar("T")
BOUND = "operation"  # the attribute a bound use case carries: its ApiOperation

LASTING_UNDER_DELEGATION = "lasting credentials (API keys, agents) cannot be created under a delegation"


def lineage(agent: Agent) -> tuple[str, ...]:
    """The agent's id and those of the agents above it, root first (its tenant path)."""
    return tuple(agent.path.strip("/").split("/"))


def subject_of(acting: Agent, on_behalf_of: Agent | None = None) -> Subject:
    """The engine's subject for ``acting``, bound by the denials of the agents above it and, when it acts under
    a delegation, of the delegator and the agents above that one (issue 12 item 5: a denied agent must not act
    through a sub-agent or a delegate it creates)."""
    bound = lineage(acting)[:-1] + (lineage(on_behalf_of) if on_behalf_of is not None else ())
    return Subject(acting.id, acting.agent_type, acting.trust_level, tuple(a for a in bound if a != acting.id))


class Authorizer:
    """The one authorization call, on every tenant's compiled policies (``issuer/policy_sets.py``: cached per
    tenant by policy version, so a change made through any replica applies to the next request)."""

    def __init__(self, core: IssuerCore) -> None:
        self.core = core
        self.sets = PolicySets(core.ports.policies, core.ports.writes)

    async def policy_set(self, tenant_id: str, known_version: int | None = None) -> PolicySet:
        """The tenant's compiled policies; ``known_version`` (read moments ago with the caller's token) spares
        the version query when the cached set is current."""
        return (await self.sets.current(tenant_id, known_version)).policy_set

    async def authorize(
        self, principal: Principal, op: ApiOperation, ids: Mapping[str, str], ctx: RequestContext
    ) -> None:
        """May ``principal`` run ``op`` on the resource ``ids`` name? Raises ``AccessDenied`` or
        ``InsufficientScope`` (the order of the checks, and so which answer wins, is the module docstring's)."""
        policy_set = await self.policy_set(principal.tenant_id, principal.policy_version)
        approved = approved_by_owner(principal)
        question = (
            subject_of(principal.acting, principal.agent if principal.actor is not None else None),
            op.action,
            op.resource_for(ids),
            [Grant(principal.scopes, principal.delegation_id, principal.delegation_depth)],
            EvaluationContext(self.core.clock(), ctx.ip, principal.delegation_depth),
        )
        decision = policy_set.evaluate(*question, approved)
        if not decision.allowed:
            if decision.effect == REQUIRE_APPROVAL:
                raise ApprovalRequired("; ".join(decision.reasons))
            if decision.basis == "policy":
                raise AccessDenied("denied by policy: " + "; ".join(decision.reasons))
            raise InsufficientScope("the access token's scopes do not allow this request")
        principal.require(*op.scopes)
        if op.lasting and principal.actor is not None:
            raise AccessDenied(LASTING_UNDER_DELEGATION)
        if op.root_only:
            # Policies govern the whole tenant: a child holding policies.write must not lock its root out. The
            # tenant's policies are the root's own, so the one ownership rule judges them too - a delegate acting
            # for the root (of this tenant or another) acts *for* it, never *on* what it owns.
            if principal.agent.parent_id is not None:
                what = op.name.split(".", 1)[0].replace("_", " ")
                raise AccessDenied(f"only the tenant's root agent can change {what}")
            if not principal.may_manage(principal.agent):
                what = op.name.split(".", 1)[0].replace("_", " ")
                raise AccessDenied(f"a delegate cannot change the {what} of the tenant it acts for")
        # A single-use approval is spent when it is what let this call through (without it, the gate holds).
        once = approved and principal.claims.get("single_use") is True
        if once and policy_set.evaluate(*question).effect == REQUIRE_APPROVAL:
            await self._spend(principal)

    async def _spend(self, principal: Principal) -> None:
        """Record the single-use approval token's one use (``used_assertions``, under ``approval``: the primary
        key refuses a second, across replicas). Spent before the call runs: at most once, even if it then fails."""
        exp = principal.claims.get("exp")
        expires_at = datetime.fromtimestamp(float(exp), UTC) if isinstance(exp, int | float) else self.core.clock()
        used = {"issuer": "approval", "jti": principal.jti, "expires_at": expires_at}
        try:
            await self.core.ports.writes.run(WritePlan((Insert.of(UsedAssertionRow.__table__, used),)))
        except Conflict as exc:
            raise AccessDenied("this single-use approval was already used: ask for a new one") from exc


def approved_by_owner(principal: Principal) -> list[Any]:
    """The ``authorization_details`` an owner approved for the caller's token (CIBA), if any."""
    details = principal.claims.get("authorization_details")
    return details if isinstance(details, list) else []


class Guarded(Protocol):
    """A service whose use cases authorize themselves."""

    authz: Authorizer


S = TypeVar("S", bound=Guarded)
Method = Callable[Concatenate[S, Principal, P], Awaitable[T]]


def use_case(name: str, **sources: str) -> Callable[[Method[S, P, T]], Method[S, P, T]]:
    """Bind the decorated method to operation ``name``: every call is authorized (``Authorizer.authorize``) before
    the body runs. The method takes ``(self, principal, ..., ctx)``; each id of the operation's resource comes
    from the parameter of the same name, or the one ``sources`` names (``credential_id="key_id"``). Checked
    here, at import: a wrong name fails loudly, never silently."""
    op = operation(name)

    def bind(method: Method[S, P, T]) -> Method[S, P, T]:
        names = list(inspect.signature(method).parameters)
        if names[:2] != ["self", "principal"] or "ctx" not in names:
            raise TypeError(f"{method.__qualname__}: a use case takes (self, principal, ..., ctx)")
        params = {param: sources.get(param, param) for param in op.params}
        missing = sorted(set(params.values()) - set(names))
        if missing or set(sources) - op.params:
            raise TypeError(f"{method.__qualname__}: operation {name} takes {sorted(op.params)}, missing {missing}")
        # Where each needed argument sits in *args (after self and principal), or its keyword.
        where = {arg: names.index(arg) - 2 for arg in {*params.values(), "ctx"}}

        @functools.wraps(method)
        async def authorized(self: S, principal: Principal, /, *args: P.args, **kwargs: P.kwargs) -> T:
            def argument(arg: str) -> Any:
                index = where[arg]
                return args[index] if index < len(args) else kwargs[arg]

            ids = {param: str(argument(arg)) for param, arg in params.items()}
            await self.authz.authorize(principal, op, ids, argument("ctx"))
            return await method(self, principal, *args, **kwargs)

        authorized.__dict__[BOUND] = op
        return authorized

    return bind


def bound_operation(method: object) -> ApiOperation | None:
    """The operation a use case is bound to (``use_case``), or None."""
    found = getattr(method, BOUND, None)
    return found if isinstance(found, ApiOperation) else None
