"""The statements of the delegation use cases on the general ports (``ports.Reads`` / ``ports.Writes``): Core
statements built once, values as named ``bindparam``s, for every implementation alike.

A chain is found by walking ``parent_id`` up (a recursive CTE, one primary-key step per link), so a statement
needs one id, never a list of them, and is the same for every chain length. ``Require`` statements take
FOR SHARE on the rows they re-check (PostgreSQL; SQLite has one writer and renders none): a revocation or
deactivation that committed first is seen, and one that comes later waits for the plan's round and then
sees what it wrote - the cascade's later statements (credentials by delegation, delegations by agent) run
after that wait, and ``delegations.revoke_subtrees`` passes again for the rows its first statement could not
see.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, ColumnElement, Select, bindparam, select, union
from sqlalchemy.orm import aliased

from agentauth.storage.models import AgentRow, DelegationRow
from agentauth.storage.records import AgentStatus, DelegationStatus

DELEGATION_COLUMNS = tuple(DelegationRow.__table__.columns)
AGENT_COLUMNS = tuple(AgentRow.__table__.columns)
# A row of ``CHAIN_WITH_AGENTS``: the link, its delegate, its delegator.
LINK = slice(0, len(DELEGATION_COLUMNS))
LINK_DELEGATE = slice(LINK.stop, LINK.stop + len(AGENT_COLUMNS))
LINK_DELEGATOR = slice(LINK_DELEGATE.stop, LINK_DELEGATE.stop + len(AGENT_COLUMNS))


def _chain(start: ColumnElement[bool]) -> CTE:
    """The ids of the delegation ``start`` selects and of its ancestors."""
    up = select(DelegationRow.id, DelegationRow.parent_id).where(start).cte("chain", recursive=True)
    return up.union_all(select(DelegationRow.id, DelegationRow.parent_id).join(up, DelegationRow.id == up.c.parent_id))


def _live() -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """SQL form of ``Delegation.live_at`` at ``:now``."""
    return DelegationRow.status == DelegationStatus.ACTIVE, DelegationRow.expires_at > bindparam("now")


# Stage 1 reads.
AGENT: Select[Any] = select(*AGENT_COLUMNS).where(AgentRow.id == bindparam("agent"))
# The delegation ``:delegation`` and its ancestors, root first.
CHAIN: Select[Any] = (
    select(*DELEGATION_COLUMNS)
    .where(DelegationRow.id.in_(select(_chain(DelegationRow.id == bindparam("delegation")).c.id)))
    .order_by(DelegationRow.depth)
)
_delegate, _delegator = aliased(AgentRow), aliased(AgentRow)
# The delegation whose credential is ``:jti`` and its ancestors, root first, each with its delegate and delegator.
CHAIN_WITH_AGENTS: Select[Any] = (
    select(
        *DELEGATION_COLUMNS,
        *(getattr(_delegate, c.key) for c in AGENT_COLUMNS),
        *(getattr(_delegator, c.key) for c in AGENT_COLUMNS),
    )
    .join(_delegate, _delegate.id == DelegationRow.delegate_id)
    .join(_delegator, _delegator.id == DelegationRow.delegator_id)
    .where(DelegationRow.id.in_(select(_chain(DelegationRow.credential_jti == bindparam("jti")).c.id)))
    .order_by(DelegationRow.depth)
)

# Stage 2 re-checks (``Require``): each returns one row per row still as stage 1 saw it.
ACTIVE_AGENT: Select[Any] = (
    select(AgentRow.id)
    .where(AgentRow.id == bindparam("agent"), AgentRow.status == AgentStatus.ACTIVE)
    .with_for_update(read=True)
)
LIVE_DELEGATION: Select[Any] = (
    select(DelegationRow.id).where(DelegationRow.id == bindparam("delegation"), *_live()).with_for_update(read=True)
)
# The live links of the chain ending in ``:delegation``: the whole chain while it is live.
LIVE_CHAIN: Select[Any] = (
    select(DelegationRow.id)
    .where(DelegationRow.id.in_(select(_chain(DelegationRow.id == bindparam("delegation")).c.id)), *_live())
    .with_for_update(read=True)
)
_links = _chain(DelegationRow.id == bindparam("delegation"))
# The active agents among the chain's delegators and delegates (each once).
ACTIVE_CHAIN_AGENTS: Select[Any] = (
    select(AgentRow.id)
    .where(
        AgentRow.id.in_(
            union(
                select(DelegationRow.delegator_id).where(DelegationRow.id.in_(select(_links.c.id))),
                select(DelegationRow.delegate_id).where(DelegationRow.id.in_(select(_links.c.id))),
            )
        ),
        AgentRow.status == AgentStatus.ACTIVE,
    )
    .with_for_update(read=True)
)
