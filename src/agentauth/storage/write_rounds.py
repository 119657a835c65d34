"""How a round of write plans (``ports.Writes``) is run, written once for every backend that executes it.

A round used to run each plan in a SAVEPOINT of its own and each of its inserts as a statement of its own: a
client-credentials token by private_key_jwt is a plan of one ``Require`` and four one-row inserts, so a round of
32 of them was 32 x 7 statements (and on SQLite as many handovers of the GIL between the writer thread and the
event loop) where the API-key issuing round, set at a time, runs one insert per table. Measured on SQLite, one
worker: the writer thread spent 4x the time per token of the issuing round.

Now the round is *coalesced*: plans run in order; each plan's checks (``Require``, ``Execute``) run at once,
its inserts wait in a buffer and go out as one ``executemany`` per table together with the following plans' rows
of the same tables. What every plan sees and does stays what it would have seen and done alone, in order:

* a check runs only after the buffered rows of every table it reads or writes went out (its tables are found in
  the statement once; a statement naming none, e.g. raw text, counts as reading every table);
* a plan's rows join the buffer only when its checks passed; a check failing before its plan wrote anything
  (a ``Require`` that matched or changed no row, or matched the wrong number of rows of a SELECT) fails that
  plan alone, nothing of it having been written;
* anything else - a storage error of a check or of a grouped insert (a unique value taken, which one row of the
  group it was unknown), a check failing after its plan already changed rows - rolls the round back to its
  start and runs it again the old way: a SAVEPOINT per plan, every statement alone, each plan failing alone.
  (On PostgreSQL a storage error aborts the transaction: only a savepoint brings it back.)

A plan whose inserts come before one of its checks runs alone in its SAVEPOINT in its place in the round.

The backends drive ``round_ops``, a generator of the operations to run: each answers a ``RunStep`` with the
number of rows the statement matched or changed, and throws ``StepFailed`` (the storage error, translated) into
it where an operation failed. ``drive`` (blocking, SQLite's writer thread) and ``drive_async`` (asyncpg) do that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.sql.util import find_tables

from agentauth.errors import AgentAuthError
from agentauth.storage.ports import Execute, Insert, Require, WritePlan

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Savepoint:
    name: str


@dataclass(frozen=True, slots=True)
class RollbackTo:
    """ROLLBACK TO the savepoint, then RELEASE it."""

    name: str


@dataclass(frozen=True, slots=True)
class Release:
    name: str


@dataclass(frozen=True, slots=True)
class InsertRows:
    """One executemany of ``rows`` (each with every column of ``table``, in the same order) into ``table``."""

    table: Table
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunStep:
    """Run a ``Require``'s or an ``Execute``'s statement; answered with the rows it returned or changed."""

    step: Require | Execute


Op = Savepoint | RollbackTo | Release | InsertRows | RunStep
Ops = Generator[Op, Any, T]


class StepFailed(Exception):
    """Thrown into ``round_ops`` where the backend failed to run an operation: ``error`` is the failure as the
    plan reports it (``failures.translate``'s error, or the driver's own exception)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Again(Exception):
    """The coalesced attempt cannot tell whose failure it met: run the round one plan at a time."""


EVERY_TABLE = frozenset({"*"})
_TABLES: dict[int, tuple[Any, frozenset[Any]]] = {}


def tables_of(statement: Any) -> frozenset[Any]:
    """The tables ``statement`` reads or writes (subqueries included), found once per statement object (plans'
    statements are module constants; the entry keeps its key alive); ``EVERY_TABLE`` when it names none."""
    entry = _TABLES.get(id(statement))
    if entry is None or entry[0] is not statement:
        named = frozenset(
            t for t in find_tables(statement, include_crud=True, include_joins=True) if isinstance(t, Table)
        )
        entry = _TABLES[id(statement)] = (statement, named or EVERY_TABLE)
    return entry[1]


def _checks_first(plan: WritePlan) -> tuple[list[Require | Execute], list[Insert]] | None:
    """The plan's checks and its inserts, when every check comes before every insert; else None."""
    checks: list[Require | Execute] = []
    inserts: list[Insert] = []
    for step in plan.steps:
        if isinstance(step, Insert):
            inserts.append(step)
        elif inserts:
            return None
        else:
            checks.append(step)
    return checks, inserts


class _Buffer:
    """Rows waiting to go out, one ``InsertRows`` per table in the order the plans insert them. A plan whose
    tables come in another order sends the buffer out first (the order of a plan's own inserts is kept: later
    rows may refer to earlier ones)."""

    def __init__(self) -> None:
        self.pending: list[InsertRows] = []
        self.tables: set[Any] = set()

    def fits(self, inserts: Sequence[Insert]) -> bool:
        return not self.pending or [i.table for i in inserts if i.rows] == [p.table for p in self.pending]

    def add(self, inserts: Sequence[Insert]) -> None:
        if not self.pending:
            self.pending = [InsertRows(i.table) for i in inserts if i.rows]
            self.tables = {p.table for p in self.pending}
        for group, insert in zip(self.pending, (i for i in inserts if i.rows), strict=True):
            group.rows.extend(insert.rows)

    def overlaps(self, tables: frozenset[Any]) -> bool:
        return bool(self.pending) and (tables is EVERY_TABLE or not self.tables.isdisjoint(tables))

    def send(self) -> Ops[None]:
        pending, self.pending, self.tables = self.pending, [], set()
        for group in pending:
            try:
                yield group
            except StepFailed as exc:
                raise _Again from exc


def round_ops(plans: Sequence[WritePlan]) -> Ops[list[BaseException | None]]:
    """The operations of one round inside its transaction; returns each plan's outcome (None: done, else its
    failure)."""
    yield Savepoint("round")
    try:
        results = yield from _coalesced(plans)
    except _Again:
        yield RollbackTo("round")
        yield Savepoint("round")
        results = []
        for plan in plans:
            results.append((yield from _alone(plan)))
    yield Release("round")
    return results


def _coalesced(plans: Sequence[WritePlan]) -> Ops[list[BaseException | None]]:
    results: list[BaseException | None] = []
    buffer = _Buffer()
    for plan in plans:
        split = _checks_first(plan)
        if split is None:
            yield from buffer.send()
            results.append((yield from _alone(plan)))
            continue
        checks, inserts = split
        failure: AgentAuthError | None = None
        wrote = False
        for step in checks:
            if buffer.overlaps(tables_of(step.statement)):
                yield from buffer.send()
            try:
                count = yield RunStep(step)
            except StepFailed as exc:
                raise _Again from exc
            writes = bool(getattr(step.statement, "is_dml", False))
            if isinstance(step, Require) and count != step.rows:
                if wrote or (writes and count):
                    raise _Again  # it changed rows before failing: only its savepoint could undo them
                failure = step.error
                break
            wrote = wrote or writes
        if failure is not None:
            results.append(failure)
            continue
        if not buffer.fits(inserts):
            yield from buffer.send()
        buffer.add(inserts)
        results.append(None)
    yield from buffer.send()
    return results


def _alone(plan: WritePlan) -> Ops[BaseException | None]:
    """One plan in a SAVEPOINT of its own, each statement alone: its failure undoes only itself."""
    yield Savepoint("plan")
    try:
        for step in plan.steps:
            if isinstance(step, Insert):
                if step.rows:
                    yield InsertRows(step.table, list(step.rows))
            else:
                count = yield RunStep(step)
                if isinstance(step, Require) and count != step.rows:
                    raise step.error
    except StepFailed as exc:
        yield RollbackTo("plan")
        return exc.error
    except AgentAuthError as exc:
        yield RollbackTo("plan")
        return exc
    yield Release("plan")
    return None


def drive(ops: Ops[T], run: Callable[[Op], Any]) -> T:
    """Run ``ops`` with the blocking ``run`` (which raises ``StepFailed`` for an operation that failed)."""
    try:
        op = next(ops)
        while True:
            try:
                answer = run(op)
            except StepFailed as exc:
                op = ops.throw(exc)
            else:
                op = ops.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(ops: Ops[T], run: Callable[[Op], Awaitable[Any]]) -> T:
    """``drive`` with an awaitable ``run``."""
    try:
        op = next(ops)
        while True:
            try:
                answer = await run(op)
            except StepFailed as exc:
                op = ops.throw(exc)
            else:
                op = ops.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
