"""The statements of the agent and API-key use cases on the general ports (``ports.Reads`` / ``ports.Writes``):
module constants built once, values as named ``bindparam``s, run by every implementation of the ports.

The cascades (revoking a key, deactivating a subtree) are set-at-a-time: each revoked set is named by one SQL
condition, and its audit events are written by an ``INSERT ... SELECT`` over the same condition *before* the
``UPDATE`` that revokes it (``Audited``) - so the events name exactly the rows the plan revokes, without a round
trip per row and without depending on the clock (a ``revoked_at = now`` filter would also catch a row revoked
earlier at the same instant). PostgreSQL (READ COMMITTED): the audited SELECT locks its rows (FOR UPDATE, which
SQLite's compiler leaves out - it has one writer), so a concurrent revocation of one of them either committed
before - and the row is no longer selected - or waits for this plan and then finds it revoked.

Bound names never equal a column name of the table an INSERT or UPDATE writes (SQLAlchemy reserves those).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from agentauth.storage import delegations
from agentauth.storage.agents import to_record as agent_record
from agentauth.storage.api_keys import to_record as key_record
from agentauth.storage.models import (
    AgentRow,
    ApiKeyRow,
    ApprovalRequestRow,
    AuditEventRow,
    CredentialRow,
    DelegationRow,
    RefreshTokenRow,
    StatusListRow,
)
from agentauth.storage.ports import Execute
from agentauth.storage.records import Agent, AgentStatus, ApiKey, ApiKeyStatus, DelegationStatus, RefreshTokenStatus
from agentauth.storage.statements import AGENT_COLUMNS, API_KEY_COLUMNS, live_credential, paged, row_as

_NOW: Any = bindparam("now")


def agent_active(row: Any = AgentRow) -> ColumnElement[bool]:
    """SQL form of ``Agent.is_active``."""
    return cast("ColumnElement[bool]", row.status == AgentStatus.ACTIVE)


def key_active() -> ColumnElement[bool]:
    """SQL form of the status half of ``ApiKey.usable_at`` (the expiry is the caller's, at its ``now``)."""
    return ApiKeyRow.status == ApiKeyStatus.ACTIVE


def subtree_pattern(root_path: str) -> str:
    """``:subtree`` for ``SUBTREE``: the LIKE pattern of every path starting with ``root_path`` (escaped with "/",
    as ``startswith(..., autoescape=True)`` escapes: ids contain "_")."""
    return root_path.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


# -- reads (``Reads.fetch``) ---------------------------------------------------------------------------------

# (*agent columns) of agent ``:agent``.
AGENT = select(*AGENT_COLUMNS).where(AgentRow.id == bindparam("agent"))
# (*API key columns, *agent columns) of key ``:key`` and its owner.
KEY_AND_OWNER = (
    select(*API_KEY_COLUMNS, *AGENT_COLUMNS)
    .join(AgentRow, AgentRow.id == ApiKeyRow.agent_id)
    .where(ApiKeyRow.id == bindparam("key"))
)


def agent_of(row: Sequence[Any]) -> Agent:
    """The agent of an ``AGENT`` row."""
    return agent_record(row_as(AGENT_COLUMNS, row))


def key_and_owner(row: Sequence[Any]) -> tuple[ApiKey, Agent]:
    """(key, owner) of a ``KEY_AND_OWNER`` row."""
    split = len(API_KEY_COLUMNS)
    return key_record(row_as(API_KEY_COLUMNS, row[:split])), agent_record(row_as(AGENT_COLUMNS, row[split:]))


# A row if ``:agent`` and ``:other`` have a live direct delegation either way at ``:now`` (``delegations.live``).
PEERS = (
    select(DelegationRow.id)
    .where(
        or_(
            (DelegationRow.delegator_id == bindparam("agent")) & (DelegationRow.delegate_id == bindparam("other")),
            (DelegationRow.delegator_id == bindparam("other")) & (DelegationRow.delegate_id == bindparam("agent")),
        ),
        *delegations.live(_NOW),
    )
    .limit(1)
)


def _keys_page(condition: ColumnElement[bool]) -> tuple[Select[Any], Select[Any]]:
    """(count, page of API key columns) of the keys ``condition`` names (``statements.paged``)."""
    return paged(ApiKeyRow.__table__, condition)


def key_of(row: Sequence[Any]) -> ApiKey:
    """The key of a ``KEYS_OF_AGENT`` / ``KEYS_OF_SUBTREE`` page row."""
    return key_record(row_as(API_KEY_COLUMNS, row))


# -- re-checks and single-row writes (``Require`` / ``Execute``) ---------------------------------------------

# Agent ``:agent`` if still active; FOR SHARE on PostgreSQL, so a deactivation of it waits for the plan and then
# sees (and revokes) what the plan added below it.
ACTIVE_AGENT = select(AgentRow.id).where(AgentRow.id == bindparam("agent"), agent_active()).with_for_update(read=True)
# Key ``:key`` active -> revoked at ``:now`` (rotated: ``:successor``); changes one row or none.
REVOKE_KEY = (
    update(ApiKeyRow)
    .where(ApiKeyRow.id == bindparam("key"), key_active())
    .values(status=ApiKeyStatus.REVOKED, revoked_at=_NOW, replaced_by=bindparam("successor"))
)
# The last-used hint of ``:key``, unless another transaction holds the key (see ``statements.touch_keys``).
_UNLESS_HELD = (
    select(ApiKeyRow.id).where(ApiKeyRow.id == bindparam("key")).with_for_update(key_share=True, skip_locked=True)
)
TOUCH_KEY = update(ApiKeyRow).where(ApiKeyRow.id.in_(_UNLESS_HELD)).values(last_used_at=_NOW)
# The given fields of active agent ``:agent`` (a NULL ``:new_*`` keeps the field), ``updated_at`` to ``:now``.
UPDATE_AGENT = (
    update(AgentRow)
    .where(AgentRow.id == bindparam("agent"), agent_active())
    .values(
        name=func.coalesce(bindparam("new_name", type_=AgentRow.name.type), AgentRow.name),
        description=func.coalesce(bindparam("new_description", type_=AgentRow.description.type), AgentRow.description),
        trust_level=func.coalesce(bindparam("new_trust_level", type_=AgentRow.trust_level.type), AgentRow.trust_level),
        updated_at=_NOW,
    )
)

# CIBA ping mode: the notification endpoint of active agent ``:agent`` (NULL: poll mode).
SET_NOTIFICATION_ENDPOINT = (
    update(AgentRow)
    .where(AgentRow.id == bindparam("agent"), agent_active())
    .values(notification_endpoint=bindparam("endpoint", type_=AgentRow.notification_endpoint.type), updated_at=_NOW)
)

# -- set-at-a-time cascades ---------------------------------------------------------------------------------

_AUDIT_COLUMNS = tuple(column for column in AuditEventRow.__table__.columns if column.key != "id")
_EVENT = "ev_"


@dataclass(frozen=True, slots=True)
class Audited:
    """``INSERT INTO audit_events SELECT``: one event per row a condition selects. The columns ``from_rows``
    names come from the row; the others are one ``audit.event``'s values, bound as ``ev_<column>``."""

    statement: Insert
    names: frozenset[str]

    def step(self, event: Mapping[str, Any], **values: Any) -> Execute:
        """The plan step writing these events: ``event`` (an ``audit.event``) with the condition's ``values``."""
        bound = {_EVENT + key: value for key, value in event.items()} | values
        return Execute(self.statement, {key: value for key, value in bound.items() if key in self.names})


def audited(condition: ColumnElement[bool], **from_rows: Any) -> Audited:
    values = [from_rows.get(c.key, bindparam(_EVENT + c.key, type_=c.type)) for c in _AUDIT_COLUMNS]
    source = select(*values).where(condition).with_for_update()
    # The table, not the model: through a session, an INSERT on the model would take the ORM's bulk path.
    statement = insert(cast(Table, AuditEventRow.__table__)).from_select([c.key for c in _AUDIT_COLUMNS], source)
    return Audited(statement, frozenset(statement.compile().params))


@dataclass(frozen=True, slots=True)
class CredentialCascade:
    """Revoking the live credentials a condition names (bound ``:now``): their audit events (the action is the
    credential's kind followed by ``ev_action``), the version bump of the status lists whose bits change, and
    the revocation itself - run in this order."""

    audit: Audited
    bump_lists: Update
    revoke: Update


def credential_cascade(which: ColumnElement[bool]) -> CredentialCascade:
    doomed = which & live_credential(_NOW)
    return CredentialCascade(
        audited(
            doomed,
            tenant_id=CredentialRow.tenant_id,
            action=CredentialRow.kind + bindparam(_EVENT + "action", type_=CredentialRow.kind.type),
            target_id=CredentialRow.jti,
        ),
        update(StatusListRow)
        .where(StatusListRow.id.in_(select(CredentialRow.status_list_id).where(doomed)))
        .values(version=StatusListRow.version + 1),
        update(CredentialRow).where(doomed).values(revoked_at=_NOW),
    )


# One API key's cascade (bound ``:key``): the refresh tokens and credentials issued with it.
KEY_REFRESH_TOKENS = (
    update(RefreshTokenRow)
    .where(RefreshTokenRow.api_key_id == bindparam("key"), RefreshTokenRow.status != RefreshTokenStatus.REVOKED)
    .values(status=RefreshTokenStatus.REVOKED)
)
KEY_CREDENTIALS = credential_cascade(CredentialRow.api_key_id == bindparam("key"))

# A subtree's cascade (bound ``:subtree``, ``subtree_pattern``): its agents, their keys, refresh tokens and
# credentials, and the delegations granted by or to any of them with everything below those.
_IN_SUBTREE = AgentRow.path.like(bindparam("subtree"), escape="/")
SUBTREE: Select[Any] = select(AgentRow.id).where(_IN_SUBTREE)
# The keys of agent ``:agent``, and of the agents of a subtree (``:subtree``): (count, page).
KEYS_OF_AGENT = _keys_page(ApiKeyRow.agent_id == bindparam("agent"))
KEYS_OF_SUBTREE = _keys_page(ApiKeyRow.agent_id.in_(SUBTREE))
# Deactivation takes suspended agents too (suspend, then revoke: the kill switch's two steps).
_NOT_DEACTIVATED = AgentRow.status != AgentStatus.DEACTIVATED
SUBTREE_AGENTS = audited(_IN_SUBTREE & _NOT_DEACTIVATED, target_id=AgentRow.id)
DEACTIVATE_SUBTREE = (
    update(AgentRow)
    .where(_IN_SUBTREE, _NOT_DEACTIVATED)
    .values(status=AgentStatus.DEACTIVATED, deactivated_at=_NOW, updated_at=_NOW)
)
# The kill switch closes the approval requests (CIBA) of the subtree's agents still waiting or not yet collected:
# a later poll answers access_denied. Statuses named one by one (no IN list: statements compile once).
DENY_SUBTREE_APPROVALS = (
    update(ApprovalRequestRow)
    .where(
        or_(ApprovalRequestRow.status == "pending", ApprovalRequestRow.status == "approved"),
        ApprovalRequestRow.agent_id.in_(SUBTREE),
    )
    .values(status="denied", decided_at=_NOW, decided_by="agent deactivated")
)
# The DPoP requirement (``records.DPoPRequirement``) of active agent ``:agent`` to ``:level``, ``updated_at`` to
# ``:now`` - only if ``:level`` is at least its parent's as the plan runs (no row changes otherwise: the parent's
# was raised meanwhile). Then every active agent below it that requires less is raised to ``:level``, so no
# agent ever requires less than its parent; moving ``updated_at`` makes a grant signed from an older snapshot
# of one of them judge it again (``issuer/agent_snapshots.py``).
_PARENT = aliased(AgentRow)
_PARENTS_DPOP = func.coalesce(
    select(_PARENT.dpop_requirement).where(_PARENT.id == AgentRow.parent_id).scalar_subquery(), 0
)
SET_DPOP = (
    update(AgentRow)
    .where(AgentRow.id == bindparam("agent"), agent_active(), bindparam("level") >= _PARENTS_DPOP)
    .values(dpop_requirement=bindparam("level"), updated_at=_NOW)
)
RAISE_SUBTREE_DPOP = (
    update(AgentRow)
    .where(
        _IN_SUBTREE, AgentRow.id != bindparam("agent"), agent_active(), AgentRow.dpop_requirement < bindparam("level")
    )
    .values(dpop_requirement=bindparam("level"), updated_at=_NOW)
)
_SUBTREE_KEYS = ApiKeyRow.agent_id.in_(SUBTREE) & key_active()
SUBTREE_KEYS = audited(_SUBTREE_KEYS, target_id=ApiKeyRow.id)
REVOKE_SUBTREE_KEYS = update(ApiKeyRow).where(_SUBTREE_KEYS).values(status=ApiKeyStatus.REVOKED, revoked_at=_NOW)
SUBTREE_REFRESH_TOKENS = (
    update(RefreshTokenRow)
    .where(RefreshTokenRow.agent_id.in_(SUBTREE), RefreshTokenRow.status != RefreshTokenStatus.REVOKED)
    .values(status=RefreshTokenStatus.REVOKED)
)
SUBTREE_CREDENTIALS = credential_cascade(CredentialRow.agent_id.in_(SUBTREE))

# The active delegations at or below an active delegation granted by or to an agent of the subtree (what
# ``revocation.revoke_delegation_subtrees`` revokes for ``delegations.paths_involving``). Aliased throughout, so
# the UPDATE below reads it as one uncorrelated set, computed before any row changes. A path prefix by
# ``substr``: exact whatever the collation, and no LIKE to escape in SQL.
_D, _P = aliased(DelegationRow, name="d"), aliased(DelegationRow, name="p")
_INVOLVING = (
    (_P.status == DelegationStatus.ACTIVE)
    & or_(_P.delegator_id.in_(SUBTREE), _P.delegate_id.in_(SUBTREE))
    & (func.substr(_D.path, 1, func.length(_P.path)) == _P.path)
)
_DOOMED_DELEGATIONS = select(_D.id).where(_D.status == DelegationStatus.ACTIVE, exists().where(_INVOLVING))
SUBTREE_DELEGATIONS = audited(
    DelegationRow.id.in_(_DOOMED_DELEGATIONS), tenant_id=DelegationRow.tenant_id, target_id=DelegationRow.id
)
DELEGATION_CREDENTIALS = credential_cascade(CredentialRow.delegation_id.in_(_DOOMED_DELEGATIONS))
REVOKE_SUBTREE_DELEGATIONS = (
    update(DelegationRow)
    .where(DelegationRow.id.in_(_DOOMED_DELEGATIONS))
    .values(status=DelegationStatus.REVOKED, revoked_at=_NOW)
)


# -- suspension (the kill switch's reversible half) ---------------------------------------------------------
# Suspending a subtree (bound ``:subtree``, ``:now``): its active agents turn suspended (one audit event each),
# and the suspension bit is set on every live credential they hold and on the credentials of the active direct
# delegations granted by or to any of them - a chain through a suspended agent fails offline at that link. Keys,
# refresh tokens and delegations stay as they are: the server refuses a suspended agent everywhere it refuses a
# deactivated one (``Agent.is_active``), and resuming restores all of it.
_SUSPENDED_AGENT = AgentRow.status == AgentStatus.SUSPENDED
SUBTREE_ACTIVE_AGENTS = audited(_IN_SUBTREE & agent_active(), target_id=AgentRow.id)
SUSPEND_SUBTREE = (
    update(AgentRow).where(_IN_SUBTREE, agent_active()).values(status=AgentStatus.SUSPENDED, updated_at=_NOW)
)
_DIRECT_DELEGATIONS = select(DelegationRow.id).where(
    DelegationRow.status == DelegationStatus.ACTIVE,
    or_(DelegationRow.delegator_id.in_(SUBTREE), DelegationRow.delegate_id.in_(SUBTREE)),
)
_TOUCHED = or_(CredentialRow.agent_id.in_(SUBTREE), CredentialRow.delegation_id.in_(_DIRECT_DELEGATIONS))
_TO_SUSPEND = _TOUCHED & live_credential(_NOW) & CredentialRow.suspended_at.is_(None)
# The lists whose suspension bits a plan changes are bumped first (named by the rows before they change).
SUSPEND_LISTS = (
    update(StatusListRow)
    .where(StatusListRow.id.in_(select(CredentialRow.status_list_id).where(_TO_SUSPEND)))
    .values(suspension_version=StatusListRow.suspension_version + 1)
)
SUSPEND_CREDENTIALS = update(CredentialRow).where(_TO_SUSPEND).values(suspended_at=_NOW)
# Resuming (``:subtree``, ``:now``): the suspended agents of the subtree turn active, then the suspension bit is
# cleared on each credential of theirs, or of a delegation of theirs, that no suspended agent still holds - the
# credential's own agent, or the delegator of its delegation (a delegation to a suspended agent is that agent's).
SUBTREE_SUSPENDED_AGENTS = audited(_IN_SUBTREE & _SUSPENDED_AGENT, target_id=AgentRow.id)
RESUME_SUBTREE = (
    update(AgentRow).where(_IN_SUBTREE, _SUSPENDED_AGENT).values(status=AgentStatus.ACTIVE, updated_at=_NOW)
)
_HOLDER = aliased(AgentRow, name="holder")
_DELEGATOR = aliased(AgentRow, name="delegator")
_SUSPENDED_DELEGATION = aliased(DelegationRow, name="sd")
_STILL_SUSPENDED = or_(
    exists().where(_HOLDER.id == CredentialRow.agent_id, _HOLDER.status == AgentStatus.SUSPENDED),
    exists().where(
        _SUSPENDED_DELEGATION.id == CredentialRow.delegation_id,
        _DELEGATOR.id == _SUSPENDED_DELEGATION.delegator_id,
        _DELEGATOR.status == AgentStatus.SUSPENDED,
    ),
)
_ANY_DELEGATION = select(DelegationRow.id).where(
    or_(DelegationRow.delegator_id.in_(SUBTREE), DelegationRow.delegate_id.in_(SUBTREE))
)
_TO_RESUME = (
    CredentialRow.suspended_at.is_not(None)
    & or_(CredentialRow.agent_id.in_(SUBTREE), CredentialRow.delegation_id.in_(_ANY_DELEGATION))
    & ~_STILL_SUSPENDED
)
RESUME_LISTS = (
    update(StatusListRow)
    .where(StatusListRow.id.in_(select(CredentialRow.status_list_id).where(_TO_RESUME)))
    .values(suspension_version=StatusListRow.suspension_version + 1)
)
RESUME_CREDENTIALS = update(CredentialRow).where(_TO_RESUME).values(suspended_at=None)
# Agent ``:agent`` suspended, with a parent that is not (a root has none): only the top of a suspension resumes.
RESUMABLE = select(AgentRow.id).where(
    AgentRow.id == bindparam("agent"),
    _SUSPENDED_AGENT,
    ~exists().where(_PARENT.id == AgentRow.parent_id, _PARENT.status == AgentStatus.SUSPENDED),
)
# (list id, when its revocation list was last signed, when its suspension twin was) of every status list holding
# a credential of the subtree ``:subtree`` or of a delegation given or received in it: the lists a kill switch on
# the subtree changes (the console shows when verifiers have each change: ``StatusRegistry.reached_by``).
SUBTREE_LISTS = (
    select(StatusListRow.id, StatusListRow.published_at, StatusListRow.suspension_published_at)
    .where(
        StatusListRow.id.in_(
            select(CredentialRow.status_list_id).where(
                or_(CredentialRow.agent_id.in_(SUBTREE), CredentialRow.delegation_id.in_(_ANY_DELEGATION))
            )
        )
    )
    .order_by(StatusListRow.id)
)
