"""The storage ports on PostgreSQL through asyncpg directly (see ``ports``): the statements of ``statements``
(and the plans' ``Insert`` / ``Require`` steps) compiled once for the postgresql+asyncpg dialect, executed on
raw asyncpg connections kept in an asyncpg pool of the port's own.

Through ``AsyncSession`` every call paid greenlet hops, the ORM's result machinery and, per pool checkout,
SQLAlchemy's pre-ping (a transaction around ``;``: three round trips) - while PostgreSQL sat "idle in
transaction" waiting on Python. Here a read is one round trip (asyncpg keeps each connection's prepared
statements), a write round BEGIN, one round trip per statement (``executemany`` for inserts: pipelined) and
COMMIT; a round of ``Writes`` plans is coalesced (``write_rounds``): a round trip per check, one per table.

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
keys as one array, ``:keys``), compile it here once (``_STATEMENT = compile_pg(statements.builder(None))``,
``asyncpg_sql``), and run it in a method - ``await self._fetch(_STATEMENT, keys=[...])`` for rows, read as the
ORM would by ``row_reader(columns)``, ``await execute(connection, _STATEMENT, ...)`` inside a ``self._write()``
transaction for a change. Named values are converted by the statement's own bind types.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Integer, bindparam, event, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from agentauth.storage import batch, statements, write_rounds
from agentauth.storage.agents import to_record as agent_record
from agentauth.storage.api_keys import to_record as key_record
from agentauth.storage.asyncpg_sql import (
    PgStatement,
    compile_pg,
    compiled,
    execute,
    fetch,
    insert_many,
    instant,
    row_reader,
    rows,
)
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
from agentauth.storage.ports import (
    AssertionUse,
    CodeRedemption,
    IssuancePlan,
    Query,
    RevokedAudit,
    RoundView,
    WritePlan,
    assertions_to_claim,
    codes_to_redeem,
    revoked_families,
    round_agents,
)
from agentauth.storage.records import Agent, ApiKey, CredentialKind, Revoked, StatusListState, TokenState
from agentauth.storage.refresh_tokens import FAMILY_REVOKE_PASSES

# Driver failures that are storage failures (``translate`` tells which), besides OSError (unreachable, timed out).
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError)


_TOKEN_STATES = compile_pg(statements.token_states(None))
_API_KEYS = compile_pg(statements.api_keys_with_agents(None))
_LIVE_KEYS = compile_pg(statements.live_keys(None, lock=True))
_LIVE_AGENTS = compile_pg(statements.live_agents(None, lock=True))
# The round's assertions not used before, recorded; a replay (same signer and jti) skipped, not an error.
_CLAIM = (
    "INSERT INTO used_assertions (issuer, jti, expires_at) "
    "SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::timestamptz[]) "
    "ON CONFLICT DO NOTHING RETURNING issuer, jti"
)


async def _live(connection: asyncpg.Connection, statement: Any, ids: Sequence[str]) -> dict[str, datetime]:
    """id -> ``updated_at`` of the rows ``statement`` (``live_keys``, ``live_agents``) finds live among ``ids``."""
    live: dict[str, datetime] = {}
    for row_id, updated_at in await fetch(connection, statement, keys=sorted(set(ids))) if ids else ():
        moment = instant(updated_at)
        assert moment is not None
        live[row_id] = moment
    return live


_TOUCH_KEYS = compile_pg(statements.touch_keys(None, bindparam("now", type_=UTCDateTime())))
_REDEEM_CODES = compile_pg(statements.redeem_codes(None, bindparam("now", type_=UTCDateTime())))
_REVOKE = compile_pg(statements.revoke_credentials(None, bindparam("now", type_=UTCDateTime())))
_FAMILIES_OF = compile_pg(statements.families_of(None))
_REVOKE_FAMILIES = compile_pg(statements.revoke_families(None))
_BUMP_LISTS = compile_pg(statements.bump_list_versions(None))
_LIST_STATE = compile_pg(statements.list_state(bindparam("list_id")))
_COUNT_RESERVED = compile_pg(statements.count_reserved(bindparam("list_id"), bindparam("got"), bindparam("per_list")))
_AGENT = row_reader(statements.AGENT_COLUMNS)
_API_KEY = row_reader(statements.API_KEY_COLUMNS)
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
            return await fetch(connection, statement, **values)

    # -- reads --------------------------------------------------------------------------------------------

    async def fetch(self, *queries: Query) -> list[list[tuple[Any, ...]]]:
        started = time.perf_counter()
        async with self._connection() as connection:
            if len(queries) == 1:
                result = [await rows(connection, queries[0])]
            else:
                async with connection.transaction(isolation="repeatable_read", readonly=True):  # one snapshot
                    result = [await rows(connection, query) for query in queries]
        batch.observe("PgReads.fetch", 1, time.perf_counter() - started)  # not batched: one "round" per read
        return result

    async def token_states(self, jtis: Sequence[str]) -> dict[str, TokenState]:
        if not jtis:
            return {}
        split = statements.TOKEN_STATE_COLUMNS
        states: dict[str, TokenState] = {}
        for row in await self._fetch(_TOKEN_STATES, keys=list(set(jtis))):
            states[row[0]] = statements.token_state(row, agent_record(cast(AgentRow, _AGENT(row[split:]))), instant)
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

    async def record_round(
        self,
        key_ids: Sequence[str],
        plan: IssuancePlan,
        assertions: Sequence[AssertionUse] = (),
        redemptions: Sequence[CodeRedemption] = (),
    ) -> None:
        async with self._write() as connection:
            keys = await _live(connection, _LIVE_KEYS, key_ids)
            agents = await _live(connection, _LIVE_AGENTS, round_agents(assertions, redemptions))
            claimed: frozenset[tuple[str, str]] = frozenset()
            if claims := assertions_to_claim(assertions, agents):
                recorded = await connection.fetch(
                    _CLAIM, [a.issuer for a in claims], [a.jti for a in claims], [a.expires_at for a in claims]
                )
                claimed = frozenset((row[0], row[1]) for row in recorded)
            redeemed: frozenset[str] = frozenset()
            hashes, at = codes_to_redeem(redemptions, agents)
            if hashes:
                spent = await fetch(connection, _REDEEM_CODES, keys=hashes, now=at)
                redeemed = frozenset(row[0] for row in spent)
            rows = plan(RoundView(keys, agents, claimed, redeemed))
            await insert_many(connection, CredentialRow.__table__, rows.credentials)
            await insert_many(connection, RefreshTokenRow.__table__, rows.refresh_tokens)
            await insert_many(connection, AuditEventRow.__table__, rows.audit_events)
            if rows.touched:
                await execute(connection, _TOUCH_KEYS, keys=sorted(rows.touched), now=rows.now)

    async def revoke_round(self, jtis: Sequence[str], now: datetime, audit: RevokedAudit) -> list[Revoked]:
        unique = list(dict.fromkeys(jtis))
        async with self._write() as connection:
            rows = await fetch(connection, _REVOKE, keys=unique, now=now)
            pairs: dict[str, str] = {jti: family for jti, _, _, _, family in rows if family}
            missing = set(unique) - {row[0] for row in rows}  # already dead: their families may still be alive
            if missing:
                found = await fetch(connection, _FAMILIES_OF, keys=sorted(missing))
                pairs |= {jti: family for jti, family in found if family is not None}
            families = sorted(set(pairs.values()))
            tenants: dict[str, str] = {}
            # Again until a pass finds nothing - see ``refresh_tokens.revoke_families``.
            for _ in range(FAMILY_REVOKE_PASSES if families else 0):
                revoked_now = await fetch(connection, _REVOKE_FAMILIES, keys=families)
                if not revoked_now:
                    break
                tenants.update({family_id: tenant_id for family_id, tenant_id in revoked_now})
            if rows:
                await execute(connection, _BUMP_LISTS, keys=sorted({row[3] for row in rows}))
            revoked = [Revoked(jti, CredentialKind(kind), tenant, family) for jti, kind, tenant, _, family in rows]
            await insert_many(connection, AuditEventRow.__table__, audit(revoked, revoked_families(pairs, tenants)))
            return revoked

    async def reserve_blocks(self, list_id: int, blocks: Sequence[int], now: datetime, per_list: int) -> list[int]:
        async with self._write() as connection:
            state = await connection.fetchval(_LIST_STATE.sql, *_LIST_STATE.args({"list_id": list_id}))
            if state != StatusListState.OPEN or not blocks:
                return []
            inserted = await fetch(connection, _RESERVE, list_id=list_id, blocks=sorted(blocks), now=now)
            got = sorted(block for (block,) in inserted)
            if got:
                await execute(connection, _COUNT_RESERVED, list_id=list_id, got=len(got), per_list=per_list)
            return got

    # -- write plans --------------------------------------------------------------------------------------

    async def run(self, plan: WritePlan) -> None:
        await self._plans.submit(plan)

    async def _plans_round(self, plans: Sequence[WritePlan]) -> list[BaseException | None]:
        """The plans in one transaction, coalesced (``write_rounds``): a round trip per check and one per table
        the round inserts into."""
        async with self._write() as connection:

            async def run(op: write_rounds.Op) -> int | None:
                try:
                    if isinstance(op, write_rounds.InsertRows):
                        await insert_many(connection, op.table, op.rows)
                    elif isinstance(op, write_rounds.RunStep):
                        statement = compiled(op.step.statement)
                        if statement.returns_rows:
                            return len(await fetch(connection, statement, **op.step.params))
                        return await execute(connection, statement, **op.step.params)
                    elif isinstance(op, write_rounds.Savepoint):
                        await connection.execute(f"SAVEPOINT {op.name}")
                    elif isinstance(op, write_rounds.RollbackTo):
                        await connection.execute(f"ROLLBACK TO SAVEPOINT {op.name}; RELEASE SAVEPOINT {op.name}")
                    else:
                        await connection.execute(f"RELEASE SAVEPOINT {op.name}")
                except _DRIVER_ERRORS as exc:
                    raise write_rounds.StepFailed(_translated(exc)) from exc
                return None

            return await write_rounds.drive_async(write_rounds.round_ops(plans), run)
