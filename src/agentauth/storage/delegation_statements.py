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

from agentauth.storage.models import AgentRow, AuditEventRow, CredentialRow, DelegationRow, StatusListRow
from agentauth.storage.records import AgentStatus, DelegationStatus
from agentauth.storage.statements import subtree_range

# Core tables, not the mapped classes: a statement of mapped attributes runs through the ORM's compile and
# result machinery on every execution in an ``AsyncSession`` (and an INSERT ... SELECT given parameters is taken
# for an ORM bulk insert); these need none of it.
_delegations = cast(Table, DelegationRow.__table__)
_agents = cast(Table, AgentRow.__table__)
_credentials = cast(Table, CredentialRow.__table__)
_status_lists = cast(Table, StatusListRow.__table__)
_AUDIT = cast(Table, AuditEventRow.__table__)
_D, _A, _C, _S = _delegations.c, _agents.c, _credentials.c, _status_lists.c

DELEGATION_COLUMNS = tuple(_delegations.columns)
AGENT_COLUMNS = tuple(_agents.columns)
# A row of ``CHAIN_WITH_AGENTS``: the link, its delegate, its delegator.
LINK = slice(0, len(DELEGATION_COLUMNS))
LINK_DELEGATE = slice(LINK.stop, LINK.stop + len(AGENT_COLUMNS))
LINK_DELEGATOR = slice(LINK_DELEGATE.stop, LINK_DELEGATE.stop + len(AGENT_COLUMNS))


def _chain(start: ColumnElement[bool]) -> CTE:
    """The ids of the delegation ``start`` selects and of its ancestors."""
    up = select(_D.id, _D.parent_id).where(start).cte("chain", recursive=True)
    return up.union_all(select(_D.id, _D.parent_id).join(up, _D.id == up.c.parent_id))


def _live() -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """SQL form of ``Delegation.live_at`` at ``:now``."""
    return _D.status == DelegationStatus.ACTIVE, _D.expires_at > bindparam("now")


# Stage 1 reads.
AGENT: Select[Any] = select(*AGENT_COLUMNS).where(_A.id == bindparam("agent"))
# The delegation ``:delegation`` and its ancestors, root first.
CHAIN: Select[Any] = (
    select(*DELEGATION_COLUMNS)
    .where(_D.id.in_(select(_chain(_D.id == bindparam("delegation")).c.id)))
    .order_by(_D.depth)
)


def _chain_with_agents(start: ColumnElement[bool]) -> Select[Any]:
    """The delegation ``start`` selects and its ancestors, root first, each with its delegate and delegator."""
    delegate, delegator = _agents.alias(), _agents.alias()
    return (
        select(
            *DELEGATION_COLUMNS,
            *(delegate.c[c.key] for c in AGENT_COLUMNS),
            *(delegator.c[c.key] for c in AGENT_COLUMNS),
        )
        .join(delegate, delegate.c.id == _D.delegate_id)
        .join(delegator, delegator.c.id == _D.delegator_id)
        .where(_D.id.in_(select(_chain(start).c.id)))
        .order_by(_D.depth)
    )


# Of the delegation whose credential is ``:jti`` / of the delegation ``:delegation``.
CHAIN_WITH_AGENTS: Select[Any] = _chain_with_agents(_D.credential_jti == bindparam("jti"))
CHAIN_WITH_AGENTS_BY_ID: Select[Any] = _chain_with_agents(_D.id == bindparam("delegation"))

# Stage 2 re-checks (``Require``): each returns one row per row still as stage 1 saw it.
ACTIVE_AGENT: Select[Any] = (
    select(_A.id).where(_A.id == bindparam("agent"), _A.status == AgentStatus.ACTIVE).with_for_update(read=True)
)
LIVE_DELEGATION: Select[Any] = (
    select(_D.id).where(_D.id == bindparam("delegation"), *_live()).with_for_update(read=True)
)
# The live links of the chain ending in ``:delegation``: the whole chain while it is live.
LIVE_CHAIN: Select[Any] = (
    select(_D.id)
    .where(_D.id.in_(select(_chain(_D.id == bindparam("delegation")).c.id)), *_live())
    .with_for_update(read=True)
)
_links = _chain(_D.id == bindparam("delegation"))
# The active agents among the chain's delegators and delegates (each once).
ACTIVE_CHAIN_AGENTS: Select[Any] = (
    select(_A.id)
    .where(
        _A.id.in_(
            union(
                select(_D.delegator_id).where(_D.id.in_(select(_links.c.id))),
                select(_D.delegate_id).where(_D.id.in_(select(_links.c.id))),
            )
        ),
        _A.status == AgentStatus.ACTIVE,
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
    _D.path >= bindparam("lo"),
    _D.path < bindparam("hi"),
    _D.status == DelegationStatus.ACTIVE,
)
_RESTING = (
    _C.delegation_id.in_(select(_D.id).where(*_ACTIVE_SUBTREE)),
    _C.revoked_at.is_(None),
    _C.expires_at > bindparam("now"),
)
_EVENT_COLUMNS = ("tenant_id", "actor", "action", "target_type", "target_id", "outcome", "reason", "request_id", "ip",
                  "created_at", "details")  # fmt: skip


def _bound(name: str) -> Any:
    """An audit column's value bound by name, typed as the column is (so each implementation converts it alike)."""
    return bindparam(name, type_=_AUDIT.c[name].type)


LOCK_SUBTREE: Update = (
    update(_delegations).where(*_ACTIVE_SUBTREE).values(status=_D.status)  # changes nothing: locks
)
AUDIT_REVOKED_DELEGATIONS: Insert = insert(_AUDIT).from_select(
    _EVENT_COLUMNS[:-1],
    select(
        _D.tenant_id, _bound("actor"), _bound("action"), _bound("target_type"), _D.id,
        *(_bound(name) for name in _EVENT_COLUMNS[5:-1]),
    ).where(*_ACTIVE_SUBTREE),
)  # fmt: skip
# ``:action`` follows the credential's kind: "access" + "_credential.revoked".
AUDIT_REVOKED_CREDENTIALS: Insert = insert(_AUDIT).from_select(
    _EVENT_COLUMNS,
    select(
        _C.tenant_id, _bound("actor"), _C.kind + _bound("action"), _bound("target_type"),
        _C.jti, *(_bound(name) for name in _EVENT_COLUMNS[5:]),
    ).where(*_RESTING),
)  # fmt: skip
BUMP_RESTING_LISTS: Update = (
    update(_status_lists).where(_S.id.in_(select(_C.status_list_id).where(*_RESTING))).values(version=_S.version + 1)
)
REVOKE_RESTING: Update = update(_credentials).where(*_RESTING).values(revoked_at=bindparam("now"))
REVOKE_SUBTREE: Update = (
    update(_delegations).where(*_ACTIVE_SUBTREE).values(status=DelegationStatus.REVOKED, revoked_at=bindparam("now"))
)
