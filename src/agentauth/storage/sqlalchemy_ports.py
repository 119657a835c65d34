"""The storage ports through SQLAlchemy (``AsyncSession``, Core statements from ``statements``): PostgreSQL, and
SQLite without a one-hop connection (an in-memory database). See ``ports``.

PostgreSQL runs READ COMMITTED with several writers: the issuing round holds FOR SHARE on its keys and agents,
so a revocation either committed before the round read them or waits for the round and then revokes what it
recorded; refresh families are revoked until a pass finds nothing (``refresh_tokens.FAMILY_REVOKE_PASSES``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any, TypeVar, cast

from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentauth.errors import AgentAuthError
from agentauth.storage import statements
from agentauth.storage.agents import to_record as agent_record
from agentauth.storage.api_keys import to_record as key_record
from agentauth.storage.batch import MicroBatcher
from agentauth.storage.failures import translate
from agentauth.storage.models import (
    AgentRow,
    ApiKeyRow,
    AuditEventRow,
    CredentialRow,
    RefreshTokenRow,
    StatusBlockRow,
    UsedAssertionRow,
)
from agentauth.storage.ports import (
    AssertionUse,
    CodeRedemption,
    Execute,
    Insert,
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

T = TypeVar("T")
Read = Callable[[AsyncSession], Awaitable[T]]  # one read of a round, on the round's session

_AGENT_KEYS = tuple(column.key for column in statements.AGENT_COLUMNS)
# Built once: SQLAlchemy memoizes a statement's cache key on the statement object.
_AGENT_PAGES = {peers: statements.agent_page(peers) for peers in (False, True)}
_VISIBLE_AGENT = {peers: statements.visible_agent(peers) for peers in (False, True)}
_API_KEY_KEYS = tuple(column.key for column in statements.API_KEY_COLUMNS)


def _as(keys: tuple[str, ...], values: Sequence[Any]) -> Any:
    return SimpleNamespace(**dict(zip(keys, values, strict=True)))


def _postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def _insert_many(session: AsyncSession, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    # Core insert on the table: one executemany, without the ORM's per-row bookkeeping.
    if rows:
        await session.execute(insert(model.__table__), list(rows))


async def live_api_keys(session: AsyncSession, key_ids: Sequence[str], lock: bool) -> dict[str, datetime]:
    """Which of these keys are still active and owned by an active agent, each with the time that agent was last
    changed (``statements.live_keys``)."""
    return {key_id: updated_at for key_id, updated_at in await session.execute(statements.live_keys(key_ids, lock))}


async def _run_plan(session: AsyncSession, plan: WritePlan) -> None:
    for step in plan.steps:
        if isinstance(step, Insert):
            await session.execute(insert(step.table), list(step.rows))
            continue
        result = await session.execute(cast(Any, step.statement), dict(step.params))
        if isinstance(step, Execute):
            continue
        # A SELECT comes back as the ORM's iterator result (rows); an UPDATE/DELETE as a CursorResult (rowcount).
        count = len(result.all()) if getattr(result, "returns_rows", True) else cast(Any, result).rowcount
        if count != step.rows:
            raise step.error


class SqlAlchemyPorts:
    """Every port of ``ports`` through SQLAlchemy: reads in a plain session of ``reads``, writes in one
    ``sessions.begin()`` transaction each."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], reads: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._reads = reads
        self._plans: MicroBatcher[WritePlan, None] = MicroBatcher(self._plans_round)
        self._read_rounds: MicroBatcher[Read[Any], Any] = MicroBatcher(self._reads_round)

    async def run(self, plan: WritePlan) -> None:
        await self._plans.submit(plan)

    async def _plans_round(self, plans: Sequence[WritePlan]) -> list[BaseException | None]:
        """The plans in one transaction, a SAVEPOINT each (``begin_nested``): a failing plan is rolled back to its
        savepoint and reports its failure; the others commit."""
        results: list[BaseException | None] = []
        async with self._sessions.begin() as session:
            for plan in plans:
                try:
                    async with session.begin_nested():
                        await _run_plan(session, plan)
                except AgentAuthError as exc:
                    results.append(exc)
                except DBAPIError as exc:
                    results.append(translate(exc) or exc)
                else:
                    results.append(None)
        return results

    async def fetch(self, *queries: Query) -> list[list[tuple[Any, ...]]]:
        async def read(session: AsyncSession) -> list[list[tuple[Any, ...]]]:
            return [
                [tuple(row) for row in await session.execute(cast(Any, q.statement), dict(q.params))] for q in queries
            ]

        return await self._read(read)

    async def _reads_round(self, works: Sequence[Read[Any]]) -> list[Any]:
        """The reads queued meanwhile, on one pooled connection in turn: one checkout (and ping) per round, not
        per request - with a connection per request, 32 concurrent reads overran the pool and each overflow
        connection was opened and closed again per read (measured on PostgreSQL: ~9 ms of CPU per read). A read
        that fails rolls back, and the next one starts a fresh transaction."""
        results: list[Any] = []
        async with self._reads() as session:
            for work in works:
                try:
                    results.append(await work(session))
                except Exception as exc:
                    results.append(translate(exc) or exc)
                    await session.rollback()
        return results

    async def _read(self, work: Read[T]) -> T:
        result: T = await self._read_rounds.submit(work)
        return result

    async def token_states(self, jtis: Sequence[str]) -> dict[str, TokenState]:
        split = statements.TOKEN_STATE_COLUMNS

        async def read(session: AsyncSession) -> dict[str, TokenState]:
            rows = (await session.execute(statements.token_states(list(set(jtis))))).all()
            states: dict[str, TokenState] = {}
            for row in rows:
                states[row[0]] = statements.token_state(
                    row, agent_record(cast(AgentRow, _as(_AGENT_KEYS, row[split:])))
                )
            return states

        return await self._read(read)

    async def api_keys_with_agents(self, prefixes: Sequence[str]) -> dict[str, tuple[ApiKey, Agent]]:
        split = len(_API_KEY_KEYS)

        async def read(session: AsyncSession) -> dict[str, tuple[ApiKey, Agent]]:
            rows = (await session.execute(statements.api_keys_with_agents(list(set(prefixes))))).all()
            found: dict[str, tuple[ApiKey, Agent]] = {}
            for row in rows:
                key = key_record(cast(ApiKeyRow, _as(_API_KEY_KEYS, row[:split])))
                found[key.prefix] = (key, agent_record(cast(AgentRow, _as(_AGENT_KEYS, row[split:]))))
            return found

        return await self._read(read)

    async def agent_page(
        self, root: Agent, now: datetime, limit: int, offset: int, peers: bool
    ) -> tuple[list[Agent], int]:
        count, page = _AGENT_PAGES[peers]
        values = statements.agent_page_values(root, now, limit, offset, peers)

        async def read(session: AsyncSession) -> tuple[list[Agent], int]:
            total = await session.scalar(count, values)
            rows = (await session.execute(page, values)).all()
            return [agent_record(cast(AgentRow, _as(_AGENT_KEYS, row))) for row in rows], int(total or 0)

        return await self._read(read)

    async def visible_agent(self, root: Agent, agent_id: str, now: datetime, peers: bool) -> Agent | None:
        values: dict[str, Any] = statements.subtree_range(root.path) | {"id": agent_id}
        if peers:
            values |= {"agent": root.id, "tenant": root.tenant_id, "now": now}

        async def read(session: AsyncSession) -> Agent | None:
            row = (await session.execute(_VISIBLE_AGENT[peers], values)).first()
            return None if row is None else agent_record(cast(AgentRow, _as(_AGENT_KEYS, row)))

        return await self._read(read)

    async def record_round(
        self,
        key_ids: Sequence[str],
        plan: IssuancePlan,
        assertions: Sequence[AssertionUse] = (),
        redemptions: Sequence[CodeRedemption] = (),
    ) -> None:
        async with self._sessions.begin() as session:
            lock = _postgres(session)
            keys, agents = sorted(set(key_ids)), round_agents(assertions, redemptions)
            live = await live_api_keys(session, keys, lock=lock) if keys else {}
            found = (
                [(r[0], r[1]) for r in await session.execute(statements.live_agents(agents, lock))] if agents else []
            )
            active = dict(found)
            claimed: frozenset[tuple[str, str]] = frozenset()
            if claims := assertions_to_claim(assertions, active):
                claim = (pg_insert if lock else sqlite_insert)(UsedAssertionRow).values([a.row() for a in claims])
                recorded = await session.execute(
                    claim.on_conflict_do_nothing().returning(UsedAssertionRow.issuer, UsedAssertionRow.jti)
                )
                claimed = frozenset((row[0], row[1]) for row in recorded)
            redeemed: frozenset[str] = frozenset()
            hashes, at = codes_to_redeem(redemptions, active)
            if hashes:
                spent = await session.execute(statements.redeem_codes(hashes, at))
                redeemed = frozenset(row[0] for row in spent)
            rows = plan(RoundView(live, active, claimed, redeemed))
            await _insert_many(session, CredentialRow, rows.credentials)
            await _insert_many(session, RefreshTokenRow, rows.refresh_tokens)
            await _insert_many(session, AuditEventRow, rows.audit_events)
            if rows.touched:
                await session.execute(statements.touch_keys(sorted(rows.touched), rows.now))

    async def revoke_round(self, jtis: Sequence[str], now: datetime, audit: RevokedAudit) -> list[Revoked]:
        unique = list(dict.fromkeys(jtis))
        async with self._sessions.begin() as session:
            rows = (await session.execute(statements.revoke_credentials(unique, now))).all()
            pairs: dict[str, str] = {jti: family for jti, _, _, _, family in rows if family}
            missing = set(unique) - {row[0] for row in rows}  # already dead: their families may still be alive
            if missing:
                found = await session.execute(statements.families_of(sorted(missing)))
                pairs |= {jti: family for jti, family in found if family is not None}
            families = sorted(set(pairs.values()))
            tenants: dict[str, str] = {}
            # PostgreSQL: again until a pass finds nothing - see ``refresh_tokens.revoke_families``.
            passes = (FAMILY_REVOKE_PASSES if _postgres(session) else 1) if families else 0
            for _ in range(passes):
                revoked_now = (await session.execute(statements.revoke_families(families))).all()
                if not revoked_now:
                    break
                tenants.update({family_id: tenant_id for family_id, tenant_id in revoked_now})
            if rows:
                await session.execute(statements.bump_list_versions(sorted({row[3] for row in rows})))
            revoked = [Revoked(jti, CredentialKind(kind), tenant, family) for jti, kind, tenant, _, family in rows]
            await _insert_many(session, AuditEventRow, audit(revoked, revoked_families(pairs, tenants)))
            return revoked

    async def reserve_blocks(self, list_id: int, blocks: Sequence[int], now: datetime, per_list: int) -> list[int]:
        async with self._sessions.begin() as session:
            if await session.scalar(statements.list_state(list_id)) != StatusListState.OPEN or not blocks:
                return []
            # Ascending: two replicas inserting overlapping blocks in random order could each hold one the other
            # waits for (a unique-index wait on an uncommitted row); in one order they queue instead.
            rows = [{"list_id": list_id, "block": block, "reserved_at": now} for block in sorted(blocks)]
            dialect_insert = pg_insert if _postgres(session) else sqlite_insert
            inserted = await session.execute(
                dialect_insert(StatusBlockRow).values(rows).on_conflict_do_nothing().returning(StatusBlockRow.block)
            )
            got = sorted(inserted.scalars())
            if got:
                await session.execute(statements.count_reserved(list_id, len(got), per_list))
            return got
