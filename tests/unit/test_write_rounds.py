"""The operations a write round runs (``storage/write_rounds.py``), with a recording driver: what makes the round
cheap (one insert per table for the whole round) and what keeps it right (rows out before a check that reads
their table, one plan at a time when a failure's owner is unknown). The contract tests in
tests/storage/test_port_contracts.py run the same rounds on every backend."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, text, update

from agentauth.errors import Conflict
from agentauth.storage import write_rounds
from agentauth.storage.models import AgentRow, AuditEventRow, CredentialRow
from agentauth.storage.ports import Execute, Insert, Require, WritePlan
from agentauth.storage.write_rounds import InsertRows, Release, RollbackTo, RunStep, Savepoint, StepFailed

ACTIVE = select(AgentRow.id).where(AgentRow.id == bindparam("agent"))
REVOKE = update(CredentialRow).where(CredentialRow.agent_id == bindparam("agent")).values(revoked_at=None)
CREDENTIALS = CredentialRow.__table__
AUDIT = AuditEventRow.__table__


def plan(n: int, *checks: Require | Execute) -> WritePlan:
    # Rows as Insert.of would give them; the recording driver only counts them.
    return WritePlan((*checks, Insert(CREDENTIALS, ({"jti": n},)), Insert(AUDIT, ({"id": n},))))


def require(rows: int = 1) -> Require:
    return Require(ACTIVE, {"agent": "a"}, rows, Conflict("refused"))


class Recorder:
    """Answers each RunStep with ``counts`` in turn (default 1) and fails the operations in ``fail``."""

    def __init__(self, counts: list[int] | None = None, fail: set[int] | None = None) -> None:
        self.ops: list[Any] = []
        self.counts = counts or []
        self.fail = fail or set()

    def __call__(self, op: write_rounds.Op) -> int | None:
        self.ops.append(op)
        if len(self.ops) - 1 in self.fail:
            raise StepFailed(Conflict("taken"))
        if isinstance(op, RunStep):
            return self.counts.pop(0) if self.counts else 1
        return None

    def shape(self) -> list[str]:
        names = {Savepoint: "S", RollbackTo: "R", Release: "E", RunStep: "C"}
        return [f"I{len(op.rows)}" if isinstance(op, InsertRows) else names[type(op)] for op in self.ops]


def run(plans: list[WritePlan], recorder: Recorder) -> list[BaseException | None]:
    return write_rounds.drive(write_rounds.round_ops(plans), recorder)


def test_a_round_of_alike_plans_inserts_once_per_table() -> None:
    recorder = Recorder()
    assert run([plan(n, require()) for n in range(32)], recorder) == [None] * 32
    # One savepoint, 32 checks, then 32 rows per table in one insert each - not 32 x (savepoint, check, 2 inserts).
    assert recorder.shape() == ["S", *["C"] * 32, "I32", "I32", "E"]


def test_rows_go_out_before_a_check_touching_their_table() -> None:
    recorder = Recorder()
    run([plan(1, require()), WritePlan((Execute(REVOKE, {"agent": "a"}),)), plan(2, require())], recorder)
    # ACTIVE reads agents only (no flush); REVOKE updates credentials: plan 1's rows first.
    assert recorder.shape() == ["S", "C", "I1", "I1", "C", "C", "I1", "I1", "E"]


def test_a_statement_naming_no_table_counts_as_touching_every_table() -> None:
    recorder = Recorder()
    run([plan(1), WritePlan((Execute(text("UPDATE x SET y = 1"), {}),))], recorder)
    assert recorder.shape() == ["S", "I1", "I1", "C", "E"]


def test_a_refused_check_drops_only_its_plan() -> None:
    recorder = Recorder(counts=[1, 0, 1])
    results = run([plan(n, require()) for n in range(3)], recorder)
    assert [r is None for r in results] == [True, False, True]
    assert recorder.shape() == ["S", "C", "C", "C", "I2", "I2", "E"]


def test_a_failed_group_insert_runs_the_round_one_plan_at_a_time() -> None:
    recorder = Recorder(fail={4})  # the first grouped insert
    results = run([plan(n, require()) for n in range(3)], recorder)
    assert results == [None, None, None]  # the recorder fails only op 4: on the second pass all pass
    assert recorder.shape()[:6] == ["S", "C", "C", "C", "I3", "R"]
    assert recorder.shape()[6:] == ["S", *["S", "C", "I1", "I1", "E"] * 3, "E"]


def test_a_plan_refused_after_it_wrote_runs_the_round_one_plan_at_a_time() -> None:
    recorder = Recorder(counts=[1, 0, 1, 0])
    results = run([plan(1, Execute(REVOKE, {"agent": "a"}), require())], recorder)
    assert isinstance(results[0], Conflict)
    assert recorder.shape() == ["S", "C", "C", "R", "S", "S", "C", "C", "R", "E"]


def test_a_plan_inserting_before_its_checks_runs_alone_in_its_savepoint() -> None:
    odd = WritePlan((Insert(AUDIT, ({"id": 9},)), require()))
    recorder = Recorder()
    run([plan(1, require()), odd, plan(2, require())], recorder)
    assert recorder.shape() == ["S", "C", "I1", "I1", "S", "I1", "C", "E", "C", "I1", "I1", "E"]
