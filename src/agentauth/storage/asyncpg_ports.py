"""The storage ports on PostgreSQL through asyncpg directly (see ``ports``): the statements of ``statements``
(and the plans' ``Insert`` / ``Require`` steps) compiled once for the postgresql+asyncpg dialect, executed on
raw asyncpg connections kept in an asyncpg pool of the port's own.

Through ``AsyncSession`` every call paid greenlet hops, the ORM's result machinery and, per pool checkout,
SQLAlchemy's pre-ping (a transaction around ``;``: three round trips) - while PostgreSQL sat "idle in
transaction" waiting on Python. Here a read is one round trip (asyncpg keeps each connection's prepared
statements), a write round BEGIN, one round trip per statement (``executemany`` for inserts: pipelined) and
COMMIT, a plan of ``Writes`` one more for its savepoint.

Why a pool of our own, filled from the engine: each connection is *opened* by the SQLAlchemy engine (its
``connect_args``: connect and statement timeouts, ``statement_timeout``; its ``do_connect`` events; the
dialect's JSON codecs) and detached from SQLAlchemy's pool into an asyncpg pool of ``AGENTAUTH_DB_POOL_SIZE``
connections (``PoolLimits``; waiting at most ``Timeouts.pool``). Checking one out of SQLAlchemy's pool per call
would cost a greenlet hop and the pre-ping; asyncpg's pool costs neither, and it hands connections back
without asyncpg's reset query (another round trip) since nothing here changes a session's state (an open
transaction is still rolled back). ``engine.dispose()`` expires them too, so a reconnect - after an outage, or
to another address - goes through the engine as SQLAlchemy's own connections do. SQLAlchemy's pool keeps
serving the repositories' unit-of-work sessions.

Values are converted by the models' column types themselves - each bind and result processor of the
postgresql+asyncpg dialect (``UTCDateTime``: aware UTC; ``JSON``: ``json.dumps`` text, Python None as JSON
null, exactly as SQLAlchemy writes it) on connections with the dialect's own codecs (JSON decoded by the
driver): SQLAlchemy reads back exactly what was written here, and the other way round. Statuses are ``StrEnum``s,
bound as their text. Failures go through ``failures.translate`` like every other path (unique violation ->
``Conflict``, SQLSTATE class 22 -> ``InvalidRequest``, anything else - unreachable, timed out, pool exhausted
- ``TemporarilyUnavailable``).

Adding a port method: build its Core statement in ``statements`` (a builder given ``keys=None`` binds a set of
keys as one array, ``:keys``), compile it here once (``_STATEMENT = compile_pg(statements.builder(None))``),
and run it in a method - ``await self._fetch(_STATEMENT, keys=[...])`` for rows, ``_rows`` to read them as the
ORM would (``_row_reader(columns)``), ``await _execute(connection, _STATEMENT, ...)`` inside a ``self._write()``
transaction for a change. Named values are converted by the statement's own bind types.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Integer, Table, bindparam, event, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.util import await_only

from agentauth.errors import AgentAuthError
from agentauth.storage import statements
from agentauth.storage.agents import to_record as agent_record
from agentauth.storage.api_keys import to_record as key_record
from agentauth.storage.batch import MicroBatcher
from agentauth.storage.db import POOL_SIZE, PoolLimits, Timeouts
from agentauth.storage.failures import translate
from agentauth.storage.models import (
    AgentRow,
    ApiKeyRow,
    AuditEventRow,
    CredentialRow,
    RefreshTokenRow,
    StatusBlockRow,
    UTCDateTime,
)
from agentauth.storage.ports import Insert, IssuancePlan, Query, Require, RevokedAudit, WritePlan, revoked_families
from agentauth.storage.records import Agent, ApiKey, CredentialKind, Revoked, StatusListState, TokenState
from agentauth.storage.refresh_tokens import FAMILY_REVOKE_PASSES

DIALECT = cast(Any, asyncpg_dialect.dialect)()
# Driver failures that are storage failures (``translate`` tells which), besides OSError (unreachable, timed out).
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True, slots=True)
class PgStatement:
    """A statement compiled for asyncpg: its SQL ($n) and, per parameter in order, its name, the value the
    expression bound (a status literal) and the bind processor of its type; whether it returns rows, with the
    result processor of each column."""

    sql: str
    names: tuple[str, ...]
    defaults: tuple[Any, ...]
    binds: tuple[Callable[[Any], Any] | None, ...]
    returns_rows: bool

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        return [
            value if bind is None else bind(value)
            for value, bind in zip(
                (values.get(name, default) for name, default in zip(self.names, self.defaults, strict=True)),
                self.binds,
                strict=True,
            )
        ]


def compile_pg(statement: ClauseElement) -> PgStatement:
    compiled = cast(SQLCompiler, statement.compile(dialect=DIALECT))
    names = tuple(getattr(compiled, "positiontup", None) or ())
    binds = tuple(compiled.binds[name].type._cached_bind_processor(DIALECT) for name in names)
    params = compiled.params
    returns = bool(getattr(statement, "exported_columns", ()))
    return PgStatement(str(compiled), names, tuple(params.get(name) for name in names), binds, returns)


_COMPILED: dict[int, tuple[ClauseElement, PgStatement]] = {}


def compiled(statement: ClauseElement) -> PgStatement:
    """``statement`` compiled once (plans' statements are module constants; the entry keeps its key alive)."""
    entry = _COMPILED.get(id(statement))
    if entry is None or entry[0] is not statement:
        entry = _COMPILED[id(statement)] = (statement, compile_pg(statement))
    return entry[1]


_TOKEN_STATES = compile_pg(statements.token_states(None))
_API_KEYS = compile_pg(statements.api_keys_with_agents(None))
_LIVE_KEYS = compile_pg(statements.live_keys(None, lock=True))
_TOUCH_KEYS = compile_pg(statements.touch_keys(None, bindparam("now", type_=UTCDateTime())))
_REVOKE = compile_pg(statements.revoke_credentials(None, bindparam("now", type_=UTCDateTime())))
_FAMILIES_OF = compile_pg(statements.families_of(None))
_REVOKE_FAMILIES = compile_pg(statements.revoke_families(None))
_BUMP_LISTS = compile_pg(statements.bump_list_versions(None))
_LIST_STATE = compile_pg(statements.list_state(bindparam("list_id")))
_COUNT_RESERVED = compile_pg(statements.count_reserved(bindparam("list_id"), bindparam("got"), bindparam("per_list")))
_VISIBLE_AGENT = {peers: compile_pg(statements.visible_agent(peers)) for peers in (False, True)}
_AGENT_PAGES = {peers: tuple(compile_pg(s) for s in statements.agent_page(peers)) for peers in (False, True)}
_BLOCKS = func.unnest(bindparam("blocks", type_=ARRAY(Integer))).table_valued("value").render_derived()
# Ascending: two replicas inserting overlapping blocks in random order could each hold one the other waits for
# (a unique-index wait on an uncommitted row); in one order they queue instead.
_RESERVE = compile_pg(
    pg_insert(StatusBlockRow)
    .from_select(
        ["list_id", "block", "reserved_at"],
        select(bindparam("list_id", type_=Integer), _BLOCKS.c.value, bindparam("now", type_=UTCDateTime())).order_by(
            _BLOCKS.c.value
        ),
    )
    .on_conflict_do_nothing()
    .returning(StatusBlockRow.block)
)


def _column_reader(column: Any) -> Callable[[Any], Any] | None:
    # JSON has none: the dialect's codec on the connection decodes it.
    return cast("Callable[[Any], Any] | None", column.type._cached_result_processor(DIALECT, None))


def _row_reader(columns: Sequence[Any]) -> Callable[[Sequence[Any]], SimpleNamespace]:
    """Turns asyncpg values of ``columns`` into an object with the attributes the ORM row would have, each
    converted as its column type converts it, for the repositories' ``to_record``."""
    plan = [(column.key, _column_reader(column)) for column in columns]

    def read(values: Sequence[Any]) -> SimpleNamespace:
        return SimpleNamespace(**{
            name: value if convert is None or value is None else convert(value)
            for (name, convert), value in zip(plan, values, strict=True)
        })  # fmt: skip

    return read


_AGENT = _row_reader(statements.AGENT_COLUMNS)
_API_KEY = _row_reader(statements.API_KEY_COLUMNS)
_INSTANT: Callable[[Any], Any] = UTCDateTime()._cached_result_processor(DIALECT, None) or (lambda value: value)


def _instant(value: datetime | None) -> datetime | None:
    """A timestamp as ``UTCDateTime`` reads it (aware UTC)."""
    return None if value is None else cast(datetime, _INSTANT(value))


@dataclass(frozen=True, slots=True)
class _InsertSql:
    sql: str
    # Per parameter: the row's key (None: the column's scalar default) and the column type's bind processor.
    plan: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]

    def args(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            default if name not in row else row[name] if bind is None else bind(row[name])
            for name, default, bind in self.plan
        )


_INSERTS: dict[tuple[Table, tuple[str, ...]], _InsertSql] = {}


def _insert(table: Table, columns: tuple[str, ...]) -> _InsertSql:
    """The INSERT of these columns of ``table``, compiled once; a column the rows leave out that has a scalar
    default gets it, as SQLAlchemy's Core insert would."""
    found = _INSERTS.get((table, columns))
    if found is None:
        statement = insert(table).compile(dialect=DIALECT, column_keys=list(columns))
        plan = []
        for name in statement.positiontup or ():
            column = table.c[name]
            given: Any = column.default
            default = given.arg if given is not None and given.is_scalar else None
            bind = column.type._cached_bind_processor(DIALECT)
            plan.append((name, bind(default) if bind is not None and default is not None else default, bind))
        found = _INSERTS[(table, columns)] = _InsertSql(str(statement), tuple(plan))
    return found


async def _insert_many(connection: asyncpg.Connection, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """One executemany (asyncpg pipelines it: one round trip); the rows all have the columns of the first."""
    if rows:
        statement = _insert(table, tuple(rows[0]))
        await connection.executemany(statement.sql, [statement.args(row) for row in rows])


async def _execute(connection: asyncpg.Connection, statement: PgStatement, **values: Any) -> int:
    """Run a statement that returns no rows; how many rows it changed."""
    status = await connection.execute(statement.sql, *statement.args(values))
    return int(status.rsplit(" ", 1)[-1]) if status and status.rsplit(" ", 1)[-1].isdigit() else 0


async def _fetch(connection: asyncpg.Connection, statement: PgStatement, **values: Any) -> list[asyncpg.Record]:
    return cast("list[asyncpg.Record]", await connection.fetch(statement.sql, *statement.args(values)))


async def _require(connection: asyncpg.Connection, step: Require) -> None:
    statement = compiled(step.statement)
    if statement.returns_rows:
        count = len(await _fetch(connection, statement, **step.params))
    else:
        count = await _execute(connection, statement, **step.params)
    if count != step.rows:
        raise step.error


_READERS: dict[int, tuple[ClauseElement, tuple[Callable[[Any], Any] | None, ...]]] = {}


async def _rows(connection: asyncpg.Connection, query: Query) -> list[tuple[Any, ...]]:
    """A ``Reads.fetch`` query's rows, each value converted as its selected column's type converts it."""
    entry = _READERS.get(id(query.statement))
    if entry is None or entry[0] is not query.statement:
        selected = getattr(query.statement, "selected_columns", ())
        entry = _READERS[id(query.statement)] = (query.statement, tuple(_column_reader(c) for c in selected))
    readers = entry[1]
    rows = await _fetch(connection, compiled(query.statement), **query.params)
    if not any(readers):
        return [tuple(row) for row in rows]
    return [
        tuple(v if read is None or v is None else read(v) for read, v in zip(readers, row, strict=True)) for row in rows
    ]


def _translated(exc: BaseException) -> BaseException:
    """A driver failure as ``failures.translate`` maps it (via SQLAlchemy's wrapper, which it understands)."""
    if isinstance(exc, _DRIVER_ERRORS):
        # Both driver families count as DB-API errors here: an InterfaceError (the connection closed under a
        # statement) must come out TemporarilyUnavailable, not as the StatementError of a non-driver failure.
        exc = DBAPIError.instance("asyncpg port", None, cast(Exception, exc), cast(Any, _DRIVER_ERRORS))
    return translate(exc) or exc


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Nothing to reset: these connections never SET, LISTEN, lock advisorily or keep cursors (asyncpg still
    rolls back a transaction left open before calling this)."""


class AsyncpgPorts:
    """Every port of ``ports`` on PostgreSQL through asyncpg: reads on a pool connection outside a transaction
    (READ COMMITTED: each statement one snapshot; a page and its count in one REPEATABLE READ snapshot), writes
    in one transaction each. PostgreSQL runs several writers: the issuing round holds FOR SHARE on its keys and
    agents, so a revocation either committed before the round read them or waits for the round and then revokes
    what it recorded; refresh families are revoked until a pass finds nothing (``FAMILY_REVOKE_PASSES``)."""

    def __init__(self, engine: AsyncEngine, timeouts: Timeouts | None = None, limits: PoolLimits | None = None) -> None:
        self._engine = engine
        self._timeouts = timeouts or Timeouts()
        self._size = (limits.size if limits and limits.size is not None else None) or POOL_SIZE
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._plans: MicroBatcher[WritePlan, None] = MicroBatcher(self._plans_round)
        event.listen(engine.sync_engine, "engine_disposed", self._expire)

    async def close(self) -> None:
        event.remove(self._engine.sync_engine, "engine_disposed", self._expire)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _expire(self, _engine: Any) -> None:
        """On ``engine.dispose()``: replace every connection at its next use (an in-flight one once released)."""
        if self._pool is None:
            return
        expiring = self._pool.expire_connections()
        try:
            await_only(expiring)  # AsyncEngine.dispose runs this inside its greenlet
        except MissingGreenlet:
            asyncio.get_running_loop().create_task(expiring)

    async def _connect(self, *_args: Any, **_kwargs: Any) -> asyncpg.Connection:
        """A connection opened by the engine (its connect arguments, events and codecs), taken out of its pool."""
        fairy = await self._engine.raw_connection()
        connection = fairy.driver_connection
        fairy.detach()
        return connection

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                pool = asyncpg.create_pool(min_size=0, max_size=self._size, connect=self._connect, reset=_no_reset)
                self._pool = await pool
        return self._pool

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pool connection; driver failures leave as ``agentauth.errors`` (``failures.translate``)."""
        try:
            pool = self._pool or await self._open()
            async with pool.acquire(timeout=self._timeouts.pool) as connection:
                yield connection
        except (*_DRIVER_ERRORS, DBAPIError, OSError) as exc:
            mapped = _translated(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._connection() as connection, connection.transaction():
            yield connection

    async def _fetch(self, statement: PgStatement, **values: Any) -> list[asyncpg.Record]:
        async with self._connection() as connection:
            return await _fetch(connection, statement, **values)

    # -- reads --------------------------------------------------------------------------------------------

    async def fetch(self, *queries: Query) -> list[list[tuple[Any, ...]]]:
        async with self._connection() as connection:
            if len(queries) == 1:
                return [await _rows(connection, queries[0])]
            async with connection.transaction(isolation="repeatable_read", readonly=True):  # one snapshot
                return [await _rows(connection, query) for query in queries]

    async def token_states(self, jtis: Sequence[str]) -> dict[str, TokenState]:
        if not jtis:
            return {}
        split = statements.TOKEN_STATE_COLUMNS
        states: dict[str, TokenState] = {}
        for row in await self._fetch(_TOKEN_STATES, keys=list(set(jtis))):
            states[row[0]] = statements.token_state(row, agent_record(cast(AgentRow, _AGENT(row[split:]))), _instant)
        return states

    async def api_keys_with_agents(self, prefixes: Sequence[str]) -> dict[str, tuple[ApiKey, Agent]]:
        if not prefixes:
            return {}
        split = len(statements.API_KEY_COLUMNS)
        found: dict[str, tuple[ApiKey, Agent]] = {}
        for row in await self._fetch(_API_KEYS, keys=list(set(prefixes))):
            key = key_record(cast(ApiKeyRow, _API_KEY(row[:split])))
            found[key.prefix] = (key, agent_record(cast(AgentRow, _AGENT(row[split:]))))
        return found

    async def agent_page(
        self, root: Agent, now: datetime, limit: int, offset: int, peers: bool
    ) -> tuple[list[Agent], int]:
        count, page = _AGENT_PAGES[peers]
        values = statements.agent_page_values(root, now, limit, offset, peers)
        async with (
            self._connection() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),  # one snapshot for both
        ):
            total = await connection.fetchval(count.sql, *count.args(values))
            rows = await connection.fetch(page.sql, *page.args(values))
        return [agent_record(cast(AgentRow, _AGENT(row))) for row in rows], int(total or 0)

    async def visible_agent(self, root: Agent, agent_id: str, now: datetime, peers: bool) -> Agent | None:
        values: dict[str, Any] = statements.subtree_range(root.path) | {"id": agent_id}
        if peers:
            values |= {"agent": root.id, "tenant": root.tenant_id, "now": now}
        rows = await self._fetch(_VISIBLE_AGENT[peers], **values)
        return agent_record(cast(AgentRow, _AGENT(rows[0]))) if rows else None

    # -- write rounds -------------------------------------------------------------------------------------

    async def record_round(self, key_ids: Sequence[str], plan: IssuancePlan) -> None:
        keys = sorted(set(key_ids))
        async with self._write() as connection:
            live: dict[str, datetime] = {}
            if keys:
                for key_id, updated_at in await _fetch(connection, _LIVE_KEYS, keys=keys):
                    instant = _instant(updated_at)
                    assert instant is not None
                    live[key_id] = instant
            rows = plan(live)
            await _insert_many(connection, CredentialRow.__table__, rows.credentials)
            await _insert_many(connection, RefreshTokenRow.__table__, rows.refresh_tokens)
            await _insert_many(connection, AuditEventRow.__table__, rows.audit_events)
            if rows.touched:
                await _execute(connection, _TOUCH_KEYS, keys=sorted(rows.touched), now=rows.now)

    async def revoke_round(self, jtis: Sequence[str], now: datetime, audit: RevokedAudit) -> list[Revoked]:
        unique = list(dict.fromkeys(jtis))
        async with self._write() as connection:
            rows = await _fetch(connection, _REVOKE, keys=unique, now=now)
            pairs: dict[str, str] = {jti: family for jti, _, _, _, family in rows if family}
            missing = set(unique) - {row[0] for row in rows}  # already dead: their families may still be alive
            if missing:
                found = await _fetch(connection, _FAMILIES_OF, keys=sorted(missing))
                pairs |= {jti: family for jti, family in found if family is not None}
            families = sorted(set(pairs.values()))
            tenants: dict[str, str] = {}
            # Again until a pass finds nothing - see ``refresh_tokens.revoke_families``.
            for _ in range(FAMILY_REVOKE_PASSES if families else 0):
                revoked_now = await _fetch(connection, _REVOKE_FAMILIES, keys=families)
                if not revoked_now:
                    break
                tenants.update({family_id: tenant_id for family_id, tenant_id in revoked_now})
            if rows:
                await _execute(connection, _BUMP_LISTS, keys=sorted({row[3] for row in rows}))
            revoked = [Revoked(jti, CredentialKind(kind), tenant, family) for jti, kind, tenant, _, family in rows]
            await _insert_many(connection, AuditEventRow.__table__, audit(revoked, revoked_families(pairs, tenants)))
            return revoked

    async def reserve_blocks(self, list_id: int, blocks: Sequence[int], now: datetime, per_list: int) -> list[int]:
        async with self._write() as connection:
            state = await connection.fetchval(_LIST_STATE.sql, *_LIST_STATE.args({"list_id": list_id}))
            if state != StatusListState.OPEN or not blocks:
                return []
            inserted = await _fetch(connection, _RESERVE, list_id=list_id, blocks=sorted(blocks), now=now)
            got = sorted(block for (block,) in inserted)
            if got:
                await _execute(connection, _COUNT_RESERVED, list_id=list_id, got=len(got), per_list=per_list)
            return got

    # -- write plans --------------------------------------------------------------------------------------

    async def run(self, plan: WritePlan) -> None:
        await self._plans.submit(plan)

    async def _plans_round(self, plans: Sequence[WritePlan]) -> list[BaseException | None]:
        """The plans in one transaction, a SAVEPOINT each: a failing plan is rolled back to its savepoint and
        reports its failure; the others commit. Moving from one plan's savepoint to the next is one round trip."""
        results: list[BaseException | None] = []
        async with self._write() as connection:
            await connection.execute("SAVEPOINT plan")
            for index, plan in enumerate(plans):
                last = index == len(plans) - 1
                try:
                    for step in plan.steps:
                        if isinstance(step, Insert):
                            await _insert_many(connection, step.table, step.rows)
                        elif isinstance(step, Require):
                            await _require(connection, step)
                        else:
                            await _execute(connection, compiled(step.statement), **step.params)
                except (AgentAuthError, *_DRIVER_ERRORS) as exc:
                    # ROLLBACK TO keeps the savepoint: it is the next plan's.
                    await connection.execute("ROLLBACK TO SAVEPOINT plan")
                    results.append(_translated(exc))
                else:
                    if not last:
                        await connection.execute("RELEASE SAVEPOINT plan; SAVEPOINT plan")
                    results.append(None)
        return results
