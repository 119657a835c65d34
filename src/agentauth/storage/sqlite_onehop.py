"""The storage ports on SQLite in one hop: the sqlite3 module on a connection of the port's own, one thread hop
per call (``SqliteSessionMaker.read`` / ``write``) - the embedded default (see ``ports``).

Through AsyncSession and aiosqlite every statement hops threads (~100 us each); here a whole call does once, and
the sqlite3 module releases the GIL while SQLite works. Measured: a token-state lookup cost 0.87 ms of CPU through
the ORM and 0.14 ms in one hop; a round of 18 issued tokens (a select and three inserts) 5.6-7.1 ms against
2.8-3.4 ms. The statements are those of ``statements`` compiled for sqlite3; the values are converted here as the
models' column types convert them (``UTCDateTime``: naive UTC text; ``JSON``: text), so SQLAlchemy reads back
exactly what it would have written, and the other way round.
"""

from __future__ import annotations

import functools
import operator
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import orjson
from sqlalchemy import JSON, Boolean, Column, Table, bindparam, insert
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.exc import DBAPIError

from agentauth.storage import statements, write_rounds
from agentauth.storage.agents import to_record as agent_record
from agentauth.storage.api_keys import to_record as key_record
from agentauth.storage.batch import MicroBatcher
from agentauth.storage.db import SqliteSessionMaker, sqlite_datetime
from agentauth.storage.failures import translate
from agentauth.storage.models import AgentRow, ApiKeyRow, AuditEventRow, CredentialRow, RefreshTokenRow, UTCDateTime
from agentauth.storage.ports import (
    AssertionUse,
    CodeRedemption,
    Execute,
    IssuancePlan,
    Query,
    Require,
    RevokedAudit,
    RoundView,
    WritePlan,
    assertions_to_claim,
    codes_to_redeem,
    revoked_families,
    round_agents,
)
from agentauth.storage.records import (
    Agent,
    ApiKey,
    CredentialKind,
    Revoked,
    StatusListState,
    TokenState,
)

T = TypeVar("T")

_TOKEN_STATES = statements.compile_sqlite(statements.token_states(None))
_API_KEYS = statements.compile_sqlite(statements.api_keys_with_agents(None))
_LIVE_KEYS = statements.compile_sqlite(statements.live_keys(None))
_LIVE_AGENTS = statements.compile_sqlite(statements.live_agents(None))
_CLAIM = "INSERT INTO used_assertions (issuer, jti, expires_at) VALUES"
_NOW: Any = bindparam("now")
_TOUCH_KEYS = statements.compile_sqlite(statements.touch_keys(None, _NOW))
_REDEEM_CODES = statements.compile_sqlite(statements.redeem_codes(None, _NOW))
_REVOKE = statements.compile_sqlite(statements.revoke_credentials(None, _NOW))
_FAMILIES_OF = statements.compile_sqlite(statements.families_of(None))
_REVOKE_FAMILIES = statements.compile_sqlite(statements.revoke_families(None))
_BUMP_LISTS = statements.compile_sqlite(statements.bump_list_versions(None))
_LIST_STATE = statements.compile_sqlite(statements.list_state(bindparam("list_id")))
_COUNT_RESERVED = statements.compile_sqlite(
    statements.count_reserved(bindparam("list_id"), bindparam("got"), bindparam("per_list"))
)
_VISIBLE_AGENT = {peers: statements.compile_sqlite(statements.visible_agent(peers)) for peers in (False, True)}
_AGENT_PAGES = {
    peers: tuple(statements.compile_sqlite(statement) for statement in statements.agent_page(peers))
    for peers in (False, True)
}
# An INSERT ... SELECT from the JSON array: SQLAlchemy's Core cannot say ON CONFLICT DO NOTHING RETURNING over a
# SELECT for SQLite; the column list is the model's.
_RESERVE = (
    "INSERT INTO status_blocks (list_id, block, reserved_at) SELECT ?, value, ? FROM json_each(?) WHERE true "
    "ON CONFLICT DO NOTHING RETURNING block"
)


def _keys(keys: Collection[Any]) -> str:
    return orjson.dumps(list(keys)).decode()


@functools.lru_cache(maxsize=4096)
def _instant(text: str | None) -> datetime | None:
    """What ``UTCDateTime`` reads from SQLite's DATETIME text (naive UTC), as an aware datetime."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def _reader(column_type: Any) -> Callable[[Any], Any] | None:
    """How a sqlite3 value of ``column_type`` becomes what SQLAlchemy reads (None: as it is)."""
    if isinstance(column_type, UTCDateTime):
        return _instant
    if isinstance(column_type, JSON):
        return orjson.loads
    if isinstance(column_type, Boolean):
        return bool
    return None


@functools.cache
def _row_reader(columns: tuple[Column[Any], ...]) -> Callable[[Sequence[Any]], SimpleNamespace]:
    """Turns the sqlite3 values of ``columns`` into an object with the attributes the ORM row would have, each
    converted as its column type converts it, for the repositories' ``to_record``."""
    plan = [(column.key, _reader(column.type)) for column in columns]

    def read(values: Sequence[Any]) -> SimpleNamespace:
        return SimpleNamespace(**{
            name: value if convert is None or value is None else convert(value)
            for (name, convert), value in zip(plan, values, strict=True)
        })  # fmt: skip

    return read


def _token_states(jtis: list[str], connection: sqlite3.Connection) -> dict[str, TokenState]:
    agent = _row_reader(statements.AGENT_COLUMNS)
    split = statements.TOKEN_STATE_COLUMNS
    states: dict[str, TokenState] = {}
    for row in connection.execute(_TOKEN_STATES.sql, _TOKEN_STATES.params(keys=_keys(jtis))):
        states[row[0]] = statements.token_state(row, agent_record(cast(AgentRow, agent(row[split:]))), _instant)
    return states


def _api_keys(prefixes: list[str], connection: sqlite3.Connection) -> dict[str, tuple[ApiKey, Agent]]:
    key, agent = _row_reader(statements.API_KEY_COLUMNS), _row_reader(statements.AGENT_COLUMNS)
    split = len(statements.API_KEY_COLUMNS)
    found: dict[str, tuple[ApiKey, Agent]] = {}
    for row in connection.execute(_API_KEYS.sql, _API_KEYS.params(keys=_keys(prefixes))):
        record = key_record(cast(ApiKeyRow, key(row[:split])))
        found[record.prefix] = (record, agent_record(cast(AgentRow, agent(row[split:]))))
    return found


def _agent_page(
    root: Agent, now: datetime, limit: int, offset: int, peers: bool, connection: sqlite3.Connection
) -> tuple[list[Agent], int]:
    count, page = _AGENT_PAGES[peers]
    values = statements.agent_page_values(root, sqlite_datetime(now), limit, offset, peers)
    agent = _row_reader(statements.AGENT_COLUMNS)
    connection.execute("BEGIN")  # one snapshot for the count and the page (``SqliteSessionMaker.read`` ends it)
    (total,) = connection.execute(count.sql, count.params(**values)).fetchone()
    rows = connection.execute(page.sql, page.params(**values)).fetchall()
    return [agent_record(cast(AgentRow, agent(row))) for row in rows], int(total)


def _each(works: Sequence[Callable[[sqlite3.Connection], Any]], connection: sqlite3.Connection) -> list[Any]:
    """A read round: every read on its own snapshot (a read that opened a transaction has it ended before the
    next runs). A failure of SQLite fails the round (it is the connection's or the file's, not one read's); any
    other failure is that read's alone."""
    results: list[Any] = []
    for work in works:
        try:
            results.append(work(connection))
        except sqlite3.Error:
            raise
        except Exception as exc:
            results.append(exc)
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
    return results


def _visible_agent(
    root: Agent, agent_id: str, now: datetime, peers: bool, connection: sqlite3.Connection
) -> Agent | None:
    statement = _VISIBLE_AGENT[peers]
    values: dict[str, Any] = statements.subtree_range(root.path) | {"id": agent_id}
    if peers:
        values |= {"agent": root.id, "tenant": root.tenant_id, "now": sqlite_datetime(now)}
    row = connection.execute(statement.sql, statement.params(**values)).fetchone()
    return None if row is None else agent_record(cast(AgentRow, _row_reader(statements.AGENT_COLUMNS)(row)))


def _live(statement: statements.SqliteStatement, ids: list[str], connection: sqlite3.Connection) -> dict[str, datetime]:
    live: dict[str, datetime] = {}
    if ids:
        for row_id, updated_at in connection.execute(statement.sql, statement.params(keys=_keys(ids))):
            instant = _instant(updated_at)
            assert instant is not None
            live[row_id] = instant
    return live


def _claim(assertions: Sequence[AssertionUse], connection: sqlite3.Connection) -> frozenset[tuple[str, str]]:
    """Record the assertions not used before, in one statement: those it recorded (a replay is skipped)."""
    if not assertions:
        return frozenset()
    values = ", ".join(["(?, ?, ?)"] * len(assertions))
    params = [v for a in assertions for v in (a.issuer, a.jti, sqlite_datetime(a.expires_at))]
    sql = f"{_CLAIM} {values} ON CONFLICT DO NOTHING RETURNING issuer, jti"
    return frozenset((issuer, jti) for issuer, jti in connection.execute(sql, params))


def _redeem(
    redemptions: Sequence[CodeRedemption], agents: Mapping[str, datetime], connection: sqlite3.Connection
) -> frozenset[str]:
    """Spend the round's codes whose agent is live, in one statement: those it spent."""
    hashes, at = codes_to_redeem(redemptions, agents)
    if not hashes or at is None:
        return frozenset()
    params = _REDEEM_CODES.params(keys=_keys(hashes), now=sqlite_datetime(at))
    return frozenset(code_hash for (code_hash,) in connection.execute(_REDEEM_CODES.sql, params))


def _round(
    key_ids: list[str],
    plan: IssuancePlan,
    assertions: Sequence[AssertionUse],
    redemptions: Sequence[CodeRedemption],
    connection: sqlite3.Connection,
) -> None:
    agents = _live(_LIVE_AGENTS, round_agents(assertions, redemptions), connection)
    claimed = _claim(assertions_to_claim(assertions, agents), connection)
    redeemed = _redeem(redemptions, agents, connection)
    view = RoundView(_live(_LIVE_KEYS, key_ids, connection), agents, claimed, redeemed)
    rows = plan(view)
    _insert_many(connection, CredentialRow.__table__, rows.credentials)
    _insert_many(connection, RefreshTokenRow.__table__, rows.refresh_tokens)
    _insert_many(connection, AuditEventRow.__table__, rows.audit_events)
    if rows.touched:
        connection.execute(
            _TOUCH_KEYS.sql, _TOUCH_KEYS.params(keys=_keys(sorted(rows.touched)), now=sqlite_datetime(rows.now))
        )


def _revoke_round(jtis: list[str], now: datetime, audit: RevokedAudit, connection: sqlite3.Connection) -> list[Revoked]:
    at = sqlite_datetime(now)
    rows = connection.execute(_REVOKE.sql, _REVOKE.params(keys=_keys(jtis), now=at)).fetchall()
    pairs: dict[str, str] = {jti: family for jti, _, _, _, family in rows if family}
    missing = set(jtis) - {jti for jti, *_ in rows}  # already dead: their families may still be alive
    if missing:
        pairs |= dict(connection.execute(_FAMILIES_OF.sql, _FAMILIES_OF.params(keys=_keys(sorted(missing)))))
    families = sorted(set(pairs.values()))
    tenants: dict[str, str] = {}
    if families:
        tenants = dict(connection.execute(_REVOKE_FAMILIES.sql, _REVOKE_FAMILIES.params(keys=_keys(families))))
    if rows:
        connection.execute(_BUMP_LISTS.sql, _BUMP_LISTS.params(keys=_keys(sorted({row[3] for row in rows}))))
    revoked = [Revoked(jti, CredentialKind(kind), tenant_id, family) for jti, kind, tenant_id, _, family in rows]
    _insert_many(connection, AuditEventRow.__table__, audit(revoked, revoked_families(pairs, tenants)))
    return revoked


def _reserve(
    list_id: int, blocks: list[int], now: datetime, per_list: int, connection: sqlite3.Connection
) -> list[int]:
    state = connection.execute(_LIST_STATE.sql, _LIST_STATE.params(list_id=list_id)).fetchone()
    if state is None or state[0] != StatusListState.OPEN:
        return []
    inserted = connection.execute(_RESERVE, (list_id, sqlite_datetime(now), _keys(sorted(blocks))))
    got = sorted(block for (block,) in inserted)
    if got:
        connection.execute(
            _COUNT_RESERVED.sql, _COUNT_RESERVED.params(list_id=list_id, got=len(got), per_list=per_list)
        )
    return got


_COMPILED: dict[int, tuple[Any, statements.SqliteStatement, tuple[Callable[[Any], Any] | None, ...]]] = {}


def _compiled(statement: Any) -> tuple[statements.SqliteStatement, tuple[Callable[[Any], Any] | None, ...]]:
    """``statement`` compiled for sqlite3 with the readers of its selected columns - once per statement object
    (plans' and queries' statements are module constants; the entry keeps the key's object alive)."""
    entry = _COMPILED.get(id(statement))
    if entry is None or entry[0] is not statement:
        selected = getattr(statement, "selected_columns", None) or getattr(statement, "_returning", None) or ()
        readers = tuple(_reader(column.type) for column in selected)
        entry = _COMPILED[id(statement)] = (statement, statements.compile_sqlite(statement), readers)
    return entry[1], entry[2]


def _execute(statement: Any, params: Mapping[str, Any], connection: sqlite3.Connection) -> sqlite3.Cursor:
    compiled, _ = _compiled(statement)
    return connection.execute(compiled.sql, compiled.params(**{k: _bound(v) for k, v in params.items()}))


def _count(step: Require | Execute, connection: sqlite3.Connection) -> int:
    """The rows ``step``'s statement returned (SELECT, RETURNING) or changed."""
    cursor = _execute(step.statement, step.params, connection)
    return len(cursor.fetchall()) if cursor.description is not None else cursor.rowcount


def _fetch(queries: Sequence[Query], connection: sqlite3.Connection) -> list[list[tuple[Any, ...]]]:
    if len(queries) > 1:
        connection.execute("BEGIN")  # one snapshot for all of them (``SqliteSessionMaker.read`` ends it)
    results: list[list[tuple[Any, ...]]] = []
    for query in queries:
        _, readers = _compiled(query.statement)
        rows = _execute(query.statement, query.params, connection).fetchall()
        if any(readers):
            rows = [
                tuple(
                    value if read is None or value is None else read(value)
                    for read, value in zip(readers, row, strict=True)
                )
                for row in rows
            ]
        results.append(rows)
    return results


def _bound(value: Any) -> Any:
    """A ``Require`` parameter as the column types convert it (datetime: naive UTC text; list, dict: JSON)."""
    if isinstance(value, datetime):
        return sqlite_datetime(value)
    if isinstance(value, list | dict):
        return _json(value)
    return value


def _plans_round(plans: Sequence[WritePlan], connection: sqlite3.Connection) -> list[BaseException | None]:
    """The plans in the round's transaction, coalesced (``write_rounds``)."""
    return write_rounds.drive(write_rounds.round_ops(plans), functools.partial(_run_op, connection))


def _run_op(connection: sqlite3.Connection, op: write_rounds.Op) -> int | None:
    try:
        if isinstance(op, write_rounds.InsertRows):
            _insert_many(connection, op.table, op.rows)
        elif isinstance(op, write_rounds.RunStep):
            return _count(op.step, connection)
        elif isinstance(op, write_rounds.Savepoint):
            connection.execute(f"SAVEPOINT {op.name}")
        elif isinstance(op, write_rounds.RollbackTo):
            connection.execute(f"ROLLBACK TO {op.name}")
            connection.execute(f"RELEASE {op.name}")
        else:
            connection.execute(f"RELEASE {op.name}")
    except sqlite3.Error as exc:
        failure = translate(DBAPIError.instance("write plan", None, exc, sqlite3.Error)) or exc
        raise write_rounds.StepFailed(failure) from exc
    return None


def _insert_many(connection: sqlite3.Connection, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """One executemany (the rows all have the columns of the first)."""
    if rows:
        sql, convert = _insert(table, tuple(rows[0]))
        connection.executemany(sql, [convert(row) for row in rows])


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


@functools.cache
def _insert(table: Table, columns: tuple[str, ...]) -> tuple[str, Callable[[dict[str, Any]], Sequence[Any]]]:
    """The INSERT for these columns of ``table`` and a function turning a row dict into its parameters, converted
    as the column types would convert them (so SQLAlchemy reads back exactly what it would have written)."""
    compiled = insert(table).compile(dialect=sqlite_dialect(paramstyle="qmark"), column_keys=list(columns))
    names = tuple(compiled.positiontup or ())  # the order the INSERT takes its values in
    if set(names) != set(columns):  # a column the rows leave out has a Python default: not used on this path
        raise ValueError(f"{table.name}: give every column with a default ({sorted(set(names) - set(columns))})")
    converted: list[tuple[int, Callable[[Any], Any]]] = []  # (position, converter) of the non-plain columns
    for at, name in enumerate(names):
        column_type = table.c[name].type
        if isinstance(column_type, UTCDateTime):
            converted.append((at, sqlite_datetime))
        elif isinstance(column_type, JSON):
            converted.append((at, _json))
    pick = operator.itemgetter(*names)
    single = len(names) == 1

    def convert(row: dict[str, Any]) -> Sequence[Any]:
        # itemgetter: every value in one C call (a bare value for one column); then the few that need converting.
        values = [pick(row)] if single else list(pick(row))
        for at, conv in converted:
            value = values[at]
            if value is not None:
                values[at] = conv(value)
        return values

    return str(compiled), convert


class SqliteOneHopPorts:
    """Every port of ``ports`` on SQLite in one hop: reads on ``reads``' connection (no write lock, a snapshot per
    statement in WAL mode), writes on ``writes``' connection under the writer lock, BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, writes: SqliteSessionMaker, reads: SqliteSessionMaker) -> None:
        self._writes = writes
        self._reads = reads
        self._plans: MicroBatcher[WritePlan, None] = MicroBatcher(self._plans_round)
        # Reads queued while one runs share the next hop to the read thread: token states, keys and agent pages
        # of concurrent requests (measured: a hop costs more CPU than the SELECT it carries).
        self._read_rounds: MicroBatcher[Callable[[sqlite3.Connection], Any], Any] = MicroBatcher(self._reads_round)

    async def run(self, plan: WritePlan) -> None:
        await self._plans.submit(plan)

    async def _plans_round(self, plans: Sequence[WritePlan]) -> list[BaseException | None]:
        return await self._writes.write(functools.partial(_plans_round, plans))

    async def fetch(self, *queries: Query) -> list[list[tuple[Any, ...]]]:
        return await self._read(functools.partial(_fetch, queries))

    async def _reads_round(self, works: Sequence[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
        return await self._reads.read(functools.partial(_each, works))

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self._read_rounds.submit(work)
        return result

    async def token_states(self, jtis: Sequence[str]) -> dict[str, TokenState]:
        return await self._read(functools.partial(_token_states, list(set(jtis))))

    async def api_keys_with_agents(self, prefixes: Sequence[str]) -> dict[str, tuple[ApiKey, Agent]]:
        return await self._read(functools.partial(_api_keys, list(set(prefixes))))

    async def agent_page(
        self, root: Agent, now: datetime, limit: int, offset: int, peers: bool
    ) -> tuple[list[Agent], int]:
        return await self._read(functools.partial(_agent_page, root, now, limit, offset, peers))

    async def visible_agent(self, root: Agent, agent_id: str, now: datetime, peers: bool) -> Agent | None:
        return await self._read(functools.partial(_visible_agent, root, agent_id, now, peers))

    async def record_round(
        self,
        key_ids: Sequence[str],
        plan: IssuancePlan,
        assertions: Sequence[AssertionUse] = (),
        redemptions: Sequence[CodeRedemption] = (),
    ) -> None:
        await self._writes.write(functools.partial(_round, sorted(set(key_ids)), plan, assertions, redemptions))

    async def revoke_round(self, jtis: Sequence[str], now: datetime, audit: RevokedAudit) -> list[Revoked]:
        return await self._writes.write(functools.partial(_revoke_round, list(dict.fromkeys(jtis)), now, audit))

    async def reserve_blocks(self, list_id: int, blocks: Sequence[int], now: datetime, per_list: int) -> list[int]:
        return await self._writes.write(functools.partial(_reserve, list_id, list(blocks), now, per_list))
