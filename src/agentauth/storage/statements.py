"""The statements of the storage ports, built once from the models for both implementations.

``sqlalchemy_ports`` executes them through an ``AsyncSession``; ``sqlite_onehop`` compiles the same expressions
for the sqlite3 module (``compile_sqlite``), so the two read and write the same columns under the same
conditions - what differs is only who converts the values (SQLAlchemy's column types, or ``sqlite_onehop``'s
converters, which ``tests/storage/test_port_contracts.py`` holds to the same results).

A builder given ``keys=None`` filters on the keys bound as one parameter ``:keys`` (``KeysIn``) however many
keys there are, so a statement compiled once serves every round: on SQLite a JSON array read by ``json_each``
(``sqlite_onehop``), on PostgreSQL an array, ``= ANY(:keys)`` (``asyncpg_ports``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Select,
    Text,
    Update,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    true,
    union,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.expression import ClauseElement, any_
from sqlalchemy.sql.visitors import InternalTraversal

from agentauth.storage.models import (
    AgentRow,
    ApiKeyRow,
    AuthorizationCodeRow,
    CredentialRow,
    DelegationRow,
    PolicyRow,
    PolicyVersionRow,
    RefreshTokenRow,
    StatusListRow,
)
from agentauth.storage.records import (
    Agent,
    AgentStatus,
    ApiKeyStatus,
    CredentialKind,
    DelegationStatus,
    RefreshTokenStatus,
    StatusListState,
    TokenState,
)

AGENT_COLUMNS = tuple(AgentRow.__table__.columns)
API_KEY_COLUMNS = tuple(ApiKeyRow.__table__.columns)
# The leading columns of ``token_states`` before the agent's.
TOKEN_STATE_COLUMNS = 6


class KeysIn(ColumnElement[bool]):
    """``column IN`` the keys bound as one parameter ``:keys``, in the form each backend binds a set in: SQLite,
    a JSON array text (``IN (SELECT value FROM json_each(:keys))``); PostgreSQL, an array (``= ANY(:keys)``, the
    parameter typed by the server from the column, so no cast that could shorten a key)."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a comparison already: no "= 1" on SQLite, which would hide the index
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]  # noqa: RUF012

    def __init__(self, column: Any) -> None:
        self.column = column


@compiles(KeysIn)
def _keys_in_json(element: KeysIn, compiler: Any, **kw: Any) -> str:
    keys = select(func.json_each(bindparam("keys")).table_valued("value").c.value)
    return str(compiler.process(element.column.in_(keys), **kw))


@compiles(KeysIn, "postgresql")
def _keys_in_array(element: KeysIn, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column == any_(bindparam("keys")), **kw))


def keys_in(column: Any, keys: Sequence[Any] | None) -> ColumnElement[bool]:
    """``column IN keys``; with ``keys`` None, ``column IN`` the keys bound as ``:keys`` (``KeysIn``)."""
    if keys is not None:
        return cast("ColumnElement[bool]", column.in_(list(keys)))
    return KeysIn(column)


def live_credential(now: Any) -> ColumnElement[bool]:
    """SQL form of ``records.credential_live``: not revoked, not expired."""
    return cast("ColumnElement[bool]", CredentialRow.revoked_at.is_(None) & (CredentialRow.expires_at > now))


def token_states(jtis: Sequence[str] | None) -> Select[Any]:
    """(jti, kind, client_id, revoked_at, expires_at, policy version, *agent columns) per issued credential."""
    return (
        select(CredentialRow.jti, CredentialRow.kind, CredentialRow.client_id, CredentialRow.revoked_at,
               CredentialRow.expires_at, PolicyVersionRow.version, *AGENT_COLUMNS)
        .join(AgentRow, AgentRow.id == CredentialRow.agent_id)
        .outerjoin(PolicyVersionRow, PolicyVersionRow.tenant_id == AgentRow.tenant_id)
        .where(keys_in(CredentialRow.jti, jtis))
    )  # fmt: skip


def api_keys_with_agents(prefixes: Sequence[str] | None) -> Select[Any]:
    """(*API key columns, *agent columns) per key prefix."""
    return (
        select(*API_KEY_COLUMNS, *AGENT_COLUMNS)
        .join(AgentRow, AgentRow.id == ApiKeyRow.agent_id)
        .where(keys_in(ApiKeyRow.prefix, prefixes))
    )


def live_keys(key_ids: Sequence[str] | None, lock: bool = False) -> Select[str, datetime]:
    """(key id, its agent's ``updated_at``) of those keys still active and owned by an active agent. ``lock``
    (PostgreSQL): FOR SHARE on both rows, in key-id order, so two replicas' rounds over overlapping keys queue
    rather than cross."""
    query = (
        select(ApiKeyRow.id, AgentRow.updated_at)
        .join(AgentRow, AgentRow.id == ApiKeyRow.agent_id)
        .where(
            keys_in(ApiKeyRow.id, key_ids),
            ApiKeyRow.status == ApiKeyStatus.ACTIVE,
            AgentRow.status == AgentStatus.ACTIVE,
        )
    )
    return query.order_by(ApiKeyRow.id).with_for_update(read=True) if lock else query


def live_agents(agent_ids: Sequence[str] | None, lock: bool = False) -> Select[str, datetime]:
    """(agent id, ``updated_at``) of those agents still active. ``lock`` (PostgreSQL): FOR SHARE, in id order,
    as ``live_keys``."""
    query = select(AgentRow.id, AgentRow.updated_at).where(
        keys_in(AgentRow.id, agent_ids), AgentRow.status == AgentStatus.ACTIVE
    )
    return query.order_by(AgentRow.id).with_for_update(read=True) if lock else query


def redeem_codes(hashes: Sequence[str] | None, now: Any) -> Update:
    """Spend those of the authorization codes ``hashes`` still unused and unexpired at ``now``; returns the hashes
    it spent (a code used before, or expired, is left as it is)."""
    code = AuthorizationCodeRow
    return (
        update(code)
        .where(keys_in(code.code_hash, hashes), code.used_at.is_(None), code.expires_at > now)
        .values(used_at=now)
        .returning(code.code_hash)
    )


def touch_keys(key_ids: Sequence[str] | None, now: Any) -> Update:
    """Move the keys' last-used hint to ``now`` - except keys another transaction holds a lock on, which are
    skipped rather than waited for (PostgreSQL ``FOR NO KEY UPDATE SKIP LOCKED``; SQLite has one writer). The
    issuing round holds FOR SHARE on its keys; updating a row another replica's round also held FOR SHARE waited
    for that round, which waited the same way for this one: "deadlock detected" (issue 12 item 14). The hint has a
    minute's resolution, so a later round sets it."""
    unlocked = (
        select(ApiKeyRow.id)
        .where(keys_in(ApiKeyRow.id, key_ids))
        .order_by(ApiKeyRow.id)
        .with_for_update(key_share=True, skip_locked=True)
    )
    return update(ApiKeyRow).where(ApiKeyRow.id.in_(unlocked)).values(last_used_at=now)


def revoke_credentials(jtis: Sequence[str] | None, now: Any) -> Update:
    """Revoke those of ``jtis`` still live; RETURNING (jti, kind, tenant_id, status_list_id, refresh_family_id)."""
    return (
        update(CredentialRow)
        .where(keys_in(CredentialRow.jti, jtis), live_credential(now))
        .values(revoked_at=now)
        .returning(CredentialRow.jti, CredentialRow.kind, CredentialRow.tenant_id, CredentialRow.status_list_id,
                   CredentialRow.refresh_family_id)
    )  # fmt: skip


def families_of(jtis: Sequence[str] | None) -> Select[str, str | None]:
    """(jti, refresh family) of those of ``jtis`` minted with a refresh token - revoked or expired included: a dead
    access token still names the grant its refresh token belongs to."""
    return select(CredentialRow.jti, CredentialRow.refresh_family_id).where(
        keys_in(CredentialRow.jti, jtis), CredentialRow.refresh_family_id.is_not(None)
    )


def revoke_families(family_ids: Sequence[str] | None) -> Update:
    """Revoke every refresh token of these families not yet revoked; RETURNING (family_id, tenant_id)."""
    return (
        update(RefreshTokenRow)
        .where(keys_in(RefreshTokenRow.family_id, family_ids), RefreshTokenRow.status != RefreshTokenStatus.REVOKED)
        .values(status=RefreshTokenStatus.REVOKED)
        .returning(RefreshTokenRow.family_id, RefreshTokenRow.tenant_id)
    )


def bump_list_versions(list_ids: Sequence[int] | None) -> Update:
    """The status lists whose bits changed: verifiers' copies are stale from the next version on."""
    return update(StatusListRow).where(keys_in(StatusListRow.id, list_ids)).values(version=StatusListRow.version + 1)


def list_state(list_id: Any) -> Select[Any]:
    return select(StatusListRow.state).where(StatusListRow.id == list_id)


def count_reserved(list_id: Any, got: Any, per_list: Any) -> Update:
    """Add ``got`` reserved blocks to a list; it turns full once all ``per_list`` are reserved."""
    allocated = StatusListRow.allocated + got
    return (
        update(StatusListRow)
        .where(StatusListRow.id == list_id)
        .values(
            allocated=allocated,
            state=case((allocated >= per_list, StatusListState.FULL), else_=StatusListRow.state),
        )
    )


def subtree_range(root_path: str) -> dict[str, str]:
    """The bounds of ``agent_page``'s subtree range: a materialized path "/a/b/" is a prefix of exactly the paths
    in ["/a/b/", "/a/b0") (the next character after "/"), a range the path index serves - no LIKE to escape."""
    return {"lo": root_path, "hi": root_path[:-1] + chr(ord(root_path[-1]) + 1)}


def _visible(peers: bool) -> ColumnElement[bool]:
    """The agents a root sees: its subtree - bound ``:lo``/``:hi`` (``subtree_range``) - and, with ``peers``, its
    delegation peers: agents of another tenant (``:tenant``) with a live direct delegation with the root
    (``:agent``) either way at ``:now``."""
    condition: ColumnElement[bool] = (AgentRow.path >= bindparam("lo")) & (AgentRow.path < bindparam("hi"))
    if peers:
        live = (DelegationRow.status == DelegationStatus.ACTIVE, DelegationRow.expires_at > bindparam("now"))
        peer_ids = union(
            select(DelegationRow.delegate_id).where(DelegationRow.delegator_id == bindparam("agent"), *live),
            select(DelegationRow.delegator_id).where(DelegationRow.delegate_id == bindparam("agent"), *live),
        )
        condition = condition | (AgentRow.id.in_(peer_ids) & (AgentRow.tenant_id != bindparam("tenant")))
    return condition


def paged(table: Any, condition: ColumnElement[bool]) -> tuple[Select[Any], Select[Any]]:
    """(count, page of ``table``'s columns) of the rows ``condition`` names, bound ``:limit`` and ``:offset``;
    ordered by creation, then id, so pages are stable and the count is exactly what paging through returns."""
    count = select(func.count()).select_from(table).where(condition)
    page = (
        select(*table.columns)
        .where(condition)
        .order_by(table.c.created_at, table.c.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return count, page


def agent_page(peers: bool) -> tuple[Select[Any], Select[Any]]:
    """(count, page of agent columns) of what a root sees (``_visible``)."""
    return paged(AgentRow.__table__, _visible(peers))


def agent_page_values(root: Agent, now: Any, limit: int, offset: int, peers: bool) -> dict[str, Any]:
    """The values ``agent_page`` binds for ``root`` (``now`` as the implementation binds an instant)."""
    values: dict[str, Any] = subtree_range(root.path) | {"limit": limit, "offset": offset}
    if peers:
        values |= {"agent": root.id, "tenant": root.tenant_id, "now": now}
    return values


def token_state(row: Sequence[Any], agent: Agent, instant: Any = None) -> TokenState:
    """A ``token_states`` row (its leading columns; ``agent`` read from the rest) as a record, ``instant``
    turning the implementation's timestamps into aware datetimes (None: they already are)."""
    jti, kind, client_id, revoked_at, expires_at, version = row[:TOKEN_STATE_COLUMNS]
    if instant is not None:
        revoked_at, expires_at = instant(revoked_at), instant(expires_at)
    assert expires_at is not None
    return TokenState(jti, CredentialKind(kind), client_id, revoked_at, expires_at, agent, int(version or 0))


def row_as(columns: Sequence[Any], values: Sequence[Any]) -> Any:
    """``values`` (a slice of a ``Reads.fetch`` row) as an object with ``columns``' keys as attributes - what a
    repository's ``to_record`` reads from an ORM row."""
    return SimpleNamespace(**{column.key: value for column, value in zip(columns, values, strict=True)})


def visible_agent(peers: bool) -> Select[Any]:
    """The agent columns of agent ``:id`` if the root sees it (``_visible``): at most one row."""
    return select(*AGENT_COLUMNS).where(AgentRow.id == bindparam("id"), _visible(peers))


@dataclass(frozen=True, slots=True)
class SqliteStatement:
    """A statement compiled for the sqlite3 module (qmark): its SQL and its parameters in order, each with the
    value the expression bound (a status literal) unless given by name to ``params``."""

    sql: str
    names: tuple[str, ...]
    defaults: tuple[Any, ...]

    def params(self, **values: Any) -> tuple[Any, ...]:
        return tuple(values.get(name, default) for name, default in zip(self.names, self.defaults, strict=True))


def compile_sqlite(statement: ClauseElement) -> SqliteStatement:
    compiled = statement.compile(dialect=sqlite_dialect(paramstyle="qmark"))
    names = tuple(getattr(compiled, "positiontup", None) or ())
    params = compiled.params
    return SqliteStatement(str(compiled), names, tuple(params.get(name) for name in names))


# -- policies (check_permission) --

POLICY_COLUMNS = tuple(PolicyRow.__table__.columns)
# The columns of ``permission_subject`` after the agent's: member, peer, then the delegation's id, scopes, depth.
PERMISSION_EXTRA_COLUMNS = 5


def policy_version() -> Select[Any]:
    """The policy version of the tenant ``:tenant`` (no row: it never had a policy)."""
    return select(PolicyVersionRow.version).where(PolicyVersionRow.tenant_id == bindparam("tenant"))


def tenant_policies() -> Select[Any]:
    """(version, *policy columns) of the tenant ``:tenant``, by priority descending then id: the policies joined
    to their version row, so one statement - one snapshot on either backend - reads both (one row of NULL policy
    columns when the tenant has a version but no policy left; none when it never had one)."""
    return (
        select(PolicyVersionRow.version, *POLICY_COLUMNS)
        .select_from(PolicyVersionRow)
        .outerjoin(PolicyRow, PolicyRow.tenant_id == PolicyVersionRow.tenant_id)
        .where(PolicyVersionRow.tenant_id == bindparam("tenant"))
        .order_by(PolicyRow.priority.desc(), PolicyRow.id)
    )


def permission_subject() -> Select[Any]:
    """(*agent columns, member, peer, delegation id, scopes as JSON text, depth) for the agent ``:agent`` as the
    caller ``:caller`` of tenant ``:tenant`` sees it at ``:now``: member is 1 when its path lies in the caller's
    subtree (``:lo``/``:hi``, ``subtree_range``), peer is 1 when it is of another tenant with a live direct
    delegation with the caller either way; one row per distinct grant (scopes, depth) of the live delegations of
    ``:tenant`` to it, named by the first such delegation (by depth, then id), or one of NULL delegation columns
    when there is none. Delegations granting the same scopes at the same depth decide alike: an agent holding
    thousands of them (each delegation call makes one) costs one row, not thousands (measured: 1,200 live
    delegations made a check 27 ms of CPU)."""
    now: Any = bindparam("now")
    other = aliased(DelegationRow)
    either_way = or_(
        (other.delegator_id == bindparam("caller")) & (other.delegate_id == AgentRow.id),
        (other.delegator_id == AgentRow.id) & (other.delegate_id == bindparam("caller")),
    )
    peer_link = exists().where(either_way, other.status == DelegationStatus.ACTIVE, other.expires_at > now)
    member = case(((AgentRow.path >= bindparam("lo")) & (AgentRow.path < bindparam("hi")), 1), else_=0)
    peer = case((and_(AgentRow.tenant_id != bindparam("tenant"), peer_link), 1), else_=0)
    scopes = sql_cast(DelegationRow.scopes, Text)  # json has no equality on PostgreSQL; its text has
    grants = (
        select(func.min(DelegationRow.id).label("id"), scopes.label("scopes"), DelegationRow.depth.label("depth"))
        .where(
            DelegationRow.delegate_id == bindparam("agent"),
            DelegationRow.tenant_id == bindparam("tenant"),
            DelegationRow.status == DelegationStatus.ACTIVE,
            DelegationRow.expires_at > now,
        )
        .group_by(scopes, DelegationRow.depth)
        .subquery()
    )
    return (
        select(*AGENT_COLUMNS, member, peer, grants.c.id, grants.c.scopes, grants.c.depth)
        .outerjoin(grants, true())
        .where(AgentRow.id == bindparam("agent"))
        .order_by(grants.c.depth, grants.c.id)
    )
