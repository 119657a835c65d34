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

from typing import Any, cast

from sqlalchemy import CTE, ColumnElement, Insert, Select, Table, Update, bindparam, insert, select, union, update
from sqlalchemy.orm import aliased

from agentauth.storage.models import AgentRow, AuditEventRow, CredentialRow, DelegationRow, StatusListRow
from agentauth.storage.records import AgentStatus, DelegationStatus
from agentauth.storage.statements import subtree_range

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


def _chain_with_agents(start: ColumnElement[bool]) -> Select[Any]:
    """The delegation ``start`` selects and its ancestors, root first, each with its delegate and delegator."""
    delegate, delegator = aliased(AgentRow), aliased(AgentRow)
    return (
        select(
            *DELEGATION_COLUMNS,
            *(getattr(delegate, c.key) for c in AGENT_COLUMNS),
            *(getattr(delegator, c.key) for c in AGENT_COLUMNS),
        )
        .join(delegate, delegate.id == DelegationRow.delegate_id)
        .join(delegator, delegator.id == DelegationRow.delegator_id)
        .where(DelegationRow.id.in_(select(_chain(start).c.id)))
        .order_by(DelegationRow.depth)
    )


# Of the delegation whose credential is ``:jti`` / of the delegation ``:delegation``.
CHAIN_WITH_AGENTS: Select[Any] = _chain_with_agents(DelegationRow.credential_jti == bindparam("jti"))
CHAIN_WITH_AGENTS_BY_ID: Select[Any] = _chain_with_agents(DelegationRow.id == bindparam("delegation"))

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

# Revoking a delegation: the active delegations of the subtree ``[:lo, :hi)`` (``statements.subtree_range`` of its
# path), the live credentials resting on them, and one audit event per row revoked - the constant columns of the
# event (``audit.event``'s) bound by name, the rest from the row. Run in this order, all before the delegations
# turn revoked (which the other steps select by). ``LOCK_SUBTREE`` first takes the subtree's rows (PostgreSQL: a
# plan re-checking one of them with FOR SHARE committed before, or waits for this one), so every later step
# sees the same rows.


def subtree(path: str) -> dict[str, str]:
    """The ``:lo`` / ``:hi`` of the subtree at ``path`` (a delegation's and every one below it)."""
    return subtree_range(path)


_ACTIVE_SUBTREE = (
    DelegationRow.path >= bindparam("lo"),
    DelegationRow.path < bindparam("hi"),
    DelegationRow.status == DelegationStatus.ACTIVE,
)
_RESTING = (
    CredentialRow.delegation_id.in_(select(DelegationRow.id).where(*_ACTIVE_SUBTREE)),
    CredentialRow.revoked_at.is_(None),
    CredentialRow.expires_at > bindparam("now"),
)
_AUDIT = cast(Table, AuditEventRow.__table__)
_EVENT_COLUMNS = ("tenant_id", "actor", "action", "target_type", "target_id", "outcome", "reason", "request_id", "ip",
                  "created_at", "details")  # fmt: skip


def _bound(name: str) -> Any:
    """An audit column's value bound by name, typed as the column is (so each implementation converts it alike)."""
    return bindparam(name, type_=_AUDIT.c[name].type)


# On the tables, not the mapped classes: an ``AsyncSession`` runs an INSERT ... SELECT of a mapped class given
# parameters as an ORM bulk insert.
LOCK_SUBTREE: Update = (
    update(DelegationRow).where(*_ACTIVE_SUBTREE).values(status=DelegationRow.status)  # changes nothing: locks
)
AUDIT_REVOKED_DELEGATIONS: Insert = insert(_AUDIT).from_select(
    _EVENT_COLUMNS[:-1],
    select(
        DelegationRow.tenant_id, _bound("actor"), _bound("action"), _bound("target_type"), DelegationRow.id,
        *(_bound(name) for name in _EVENT_COLUMNS[5:-1]),
    ).where(*_ACTIVE_SUBTREE),
)  # fmt: skip
# ``:action`` follows the credential's kind: "access" + "_credential.revoked".
AUDIT_REVOKED_CREDENTIALS: Insert = insert(_AUDIT).from_select(
    _EVENT_COLUMNS,
    select(
        CredentialRow.tenant_id, _bound("actor"), CredentialRow.kind + _bound("action"), _bound("target_type"),
        CredentialRow.jti, *(_bound(name) for name in _EVENT_COLUMNS[5:]),
    ).where(*_RESTING),
)  # fmt: skip
BUMP_RESTING_LISTS: Update = (
    update(StatusListRow)
    .where(StatusListRow.id.in_(select(CredentialRow.status_list_id).where(*_RESTING)))
    .values(version=StatusListRow.version + 1)
)
REVOKE_RESTING: Update = update(CredentialRow).where(*_RESTING).values(revoked_at=bindparam("now"))
REVOKE_SUBTREE: Update = (
    update(DelegationRow).where(*_ACTIVE_SUBTREE).values(status=DelegationStatus.REVOKED, revoked_at=bindparam("now"))
)
