"""The asyncpg SQL layer of ``asyncpg_ports``: statements compiled once for asyncpg ($n parameters, each with its
type's bind processor), rows read and inserted with values converted exactly as the models' column types convert
them through SQLAlchemy's asyncpg dialect, and the few statement runners the ports need."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Table, insert
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from agentauth.storage.models import UTCDateTime
from agentauth.storage.ports import Query

DIALECT = cast(Any, asyncpg_dialect.dialect)()


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


def column_reader(column: Any) -> Callable[[Any], Any] | None:
    # JSON has none: the dialect's codec on the connection decodes it.
    return cast("Callable[[Any], Any] | None", column.type._cached_result_processor(DIALECT, None))


def row_reader(columns: Sequence[Any]) -> Callable[[Sequence[Any]], SimpleNamespace]:
    """Turns asyncpg values of ``columns`` into an object with the attributes the ORM row would have, each
    converted as its column type converts it, for the repositories' ``to_record``."""
    plan = [(column.key, column_reader(column)) for column in columns]

    def read(values: Sequence[Any]) -> SimpleNamespace:
        return SimpleNamespace(**{
            name: value if convert is None or value is None else convert(value)
            for (name, convert), value in zip(plan, values, strict=True)
        })  # fmt: skip

    return read


_INSTANT: Callable[[Any], Any] = UTCDateTime()._cached_result_processor(DIALECT, None) or (lambda value: value)


def instant(value: datetime | None) -> datetime | None:
    """A timestamp as ``UTCDateTime`` reads it (aware UTC)."""
    return None if value is None else cast(datetime, _INSTANT(value))


@dataclass(frozen=True, slots=True)
class InsertSql:
    sql: str
    # Per parameter: the row's key (None: the column's scalar default) and the column type's bind processor.
    plan: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]

    def args(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            default if name not in row else row[name] if bind is None else bind(row[name])
            for name, default, bind in self.plan
        )


_INSERTS: dict[tuple[Table, tuple[str, ...]], InsertSql] = {}


def insert_sql(table: Table, columns: tuple[str, ...]) -> InsertSql:
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
        found = _INSERTS[(table, columns)] = InsertSql(str(statement), tuple(plan))
    return found


async def insert_many(connection: asyncpg.Connection, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """One executemany (asyncpg pipelines it: one round trip); the rows all have the columns of the first."""
    if rows:
        statement = insert_sql(table, tuple(rows[0]))
        await connection.executemany(statement.sql, [statement.args(row) for row in rows])


async def execute(connection: asyncpg.Connection, statement: PgStatement, **values: Any) -> int:
    """Run a statement that returns no rows; how many rows it changed."""
    status = await connection.execute(statement.sql, *statement.args(values))
    return int(status.rsplit(" ", 1)[-1]) if status and status.rsplit(" ", 1)[-1].isdigit() else 0


async def fetch(connection: asyncpg.Connection, statement: PgStatement, **values: Any) -> list[asyncpg.Record]:
    return cast("list[asyncpg.Record]", await connection.fetch(statement.sql, *statement.args(values)))


_READERS: dict[int, tuple[ClauseElement, tuple[Callable[[Any], Any] | None, ...]]] = {}


async def rows(connection: asyncpg.Connection, query: Query) -> list[tuple[Any, ...]]:
    """A ``Reads.fetch`` query's rows, each value converted as its selected column's type converts it."""
    entry = _READERS.get(id(query.statement))
    if entry is None or entry[0] is not query.statement:
        selected = getattr(query.statement, "selected_columns", ())
        entry = _READERS[id(query.statement)] = (query.statement, tuple(column_reader(c) for c in selected))
    readers = entry[1]
    rows = await fetch(connection, compiled(query.statement), **query.params)
    if not any(readers):
        return [tuple(row) for row in rows]
    return [
        tuple(v if read is None or v is None else read(v) for read, v in zip(readers, row, strict=True)) for row in rows
    ]
