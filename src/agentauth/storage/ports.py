"""Storage ports: one narrow interface per concern that has more than one implementation (issue 13 item 1).

Each port has one implementation per backend family, chosen once (``factory.storage_ports``, called by
``bootstrap``) - never by a branch at a call site:

* ``sqlalchemy_ports``: SQLAlchemy Core statements in an ``AsyncSession`` - SQLite when no one-hop connection
  is available (an in-memory database), PostgreSQL through a driver other than asyncpg;
* ``asyncpg_ports``: the same statements compiled once for asyncpg, on an asyncpg pool of its own - PostgreSQL;
* ``sqlite_onehop``: the sqlite3 module on a connection of its own, one thread hop per call
  (``SqliteSessionMaker.read`` / ``write``) - the embedded default. Measured ~6x cheaper per lookup than the ORM
  (0.14 against 0.87 ms of CPU for one token state), which is why it exists.

All translate their failures into ``agentauth.errors`` (``failures.translate``: unique violation -> ``Conflict``,
unstorable value -> ``InvalidRequest``, anything else -> ``TemporarilyUnavailable``), so a caller never sees a
driver exception, and ``tests/storage/test_port_contracts.py`` holds every implementation to the same records and
the same errors for the same inputs.

Two ports are general, so a use case needs no port method of its own: ``Reads.fetch`` runs ``Query``s (Core
SELECTs built once) in one snapshot, ``Writes.run`` runs a ``WritePlan`` (``Insert`` / ``Require`` / ``Execute``
steps) in the next write round. A use case on them reads in stage 1, signs outside any transaction, and writes
in stage 2, re-checking in the plan what it relied on (``Require``) - the shape of ``AgentService.quickstart``.
The policy reads (``PolicyReads``) are built on ``Reads`` once for every backend (``policy_reads``).
Repository modules that work on a caller's ``AsyncSession`` remain for the rare paths (administration, the
explanation of a failure, reuse detection).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Table
from sqlalchemy.sql.expression import ClauseElement

from agentauth.errors import AgentAuthError
from agentauth.storage.records import Agent, ApiKey, PolicyRecord, Revoked, RevokedFamily, TokenState


@dataclass
class IssuedRows:
    """What one issuing round records: rows per table, and the API keys whose last-used time moves to ``now``."""

    now: datetime
    credentials: list[dict[str, Any]] = field(default_factory=list)
    refresh_tokens: list[dict[str, Any]] = field(default_factory=list)
    audit_events: list[dict[str, Any]] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class AssertionUse:
    """A single-use JWT of an issuing round's request - a ``private_key_jwt`` client assertion (``issuer`` = the
    signer's DID) or a DPoP proof (``issuer`` = ``dpop:`` + its key's thumbprint): its (``issuer``, ``jti``) is
    recorded as used until ``expires_at`` - only if agent ``agent_id`` is still active and, unless
    ``agent_seen`` is None, unchanged since ``agent_seen`` (its ``updated_at`` when the token was signed), so a
    request judged again on fresh data can still use it."""

    agent_id: str
    agent_seen: datetime | None
    issuer: str
    jti: str
    expires_at: datetime

    def row(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "jti": self.jti, "expires_at": self.expires_at}


@dataclass(frozen=True, slots=True)
class CodeRedemption:
    """An issuing round's ``authorization_code`` redemption: the code ``code_hash`` is spent at ``at`` - only if
    it is unused and unexpired then and agent ``agent_id`` (whom its token acts for) is still active."""

    code_hash: str
    agent_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RoundView:
    """What an issuing round found in its write transaction, before it decides what to record: ``keys`` - key id
    -> ``updated_at`` of its agent, for the round's keys still active and owned by an active agent; ``agents`` -
    agent id -> ``updated_at``, for the agents of the round's assertions and redemptions still active;
    ``claimed`` - the (issuer, jti) of the assertions the round recorded as used (see ``AssertionUse``; one whose
    agent is live and unchanged but which is not among them was used before: a replay); ``redeemed`` - the codes
    the round spent (one whose agent is live but which is not among them was used before, or expired)."""

    keys: Mapping[str, datetime]
    agents: Mapping[str, datetime] = field(default_factory=dict)
    claimed: frozenset[tuple[str, str]] = frozenset()
    redeemed: frozenset[str] = frozenset()


def assertions_to_claim(assertions: Sequence[AssertionUse], agents: Mapping[str, datetime]) -> list[AssertionUse]:
    """For the implementations: the assertions whose agent is live and unchanged, each (issuer, jti) once."""
    unique = {
        (a.issuer, a.jti): a
        for a in reversed(assertions)
        if a.agent_id in agents and (a.agent_seen is None or agents[a.agent_id] == a.agent_seen)
    }
    return list(unique.values())


def codes_to_redeem(
    redemptions: Sequence[CodeRedemption], agents: Mapping[str, datetime]
) -> tuple[list[str], datetime | None]:
    """For the implementations: the codes to spend (those whose agent is live, each once, sorted) and the instant
    they are spent at (the round's latest)."""
    hashes = sorted({r.code_hash for r in redemptions if r.agent_id in agents})
    return hashes, max((r.at for r in redemptions), default=None)


def round_agents(assertions: Sequence[AssertionUse], redemptions: Sequence[CodeRedemption]) -> list[str]:
    """For the implementations: the agents a round reads live (sorted, once each)."""
    return sorted({a.agent_id for a in assertions} | {r.agent_id for r in redemptions})


# Decides, inside the round's write transaction, what to record - given what the round found (``RoundView``).
IssuancePlan = Callable[[RoundView], IssuedRows]
# What a revocation round records in the audit log, given what it revoked: credentials and refresh families.
RevokedAudit = Callable[[Sequence[Revoked], Sequence[RevokedFamily]], list[dict[str, Any]]]


def revoked_families(pairs: Mapping[str, str], tenants: Mapping[str, str]) -> list[RevokedFamily]:
    """For a revocation round's implementations: the families revoked (``tenants``: family -> tenant), each named
    with one of the round's jtis minted with it (``pairs``: jti -> family), in family order."""
    via = {family: jti for jti, family in pairs.items()}
    return [RevokedFamily(family, tenant, via[family]) for family, tenant in sorted(tenants.items())]


class TokenStates(Protocol):
    """Online state of issued credentials (every authenticated request, introspection, RFC 7009)."""

    async def token_states(self, jtis: Sequence[str]) -> dict[str, TokenState]:
        """The state of each of ``jtis`` that we issued (unknown ones are absent), in one query on the read side:
        revoked or not, expiry, the owning agent and its tenant's policy version (0 when it has none)."""
        ...


class ClientKeys(Protocol):
    """API keys with their agents, for client authentication."""

    async def api_keys_with_agents(self, prefixes: Sequence[str]) -> dict[str, tuple[ApiKey, Agent]]:
        """Keys by lookup prefix with their agents, in one query on the read side; a prefix that names no key is
        absent. The caller still checks secret and validity (``ApiKey.usable_at``, ``Agent.is_active``)."""
        ...


class IssuanceRounds(Protocol):
    """The write half of a batched issuing round (``issuer/hotpath.py``)."""

    async def record_round(
        self,
        key_ids: Sequence[str],
        plan: IssuancePlan,
        assertions: Sequence[AssertionUse] = (),
        redemptions: Sequence[CodeRedemption] = (),
    ) -> None:
        """One write transaction: find which of ``key_ids`` are still live (active, agent active - the same rule
        as ``ApiKey.usable_at`` minus the expiry stage 1 checked) and which agents of ``assertions`` and
        ``redemptions`` are still active, record those assertions not used before whose agent is unchanged
        (``AssertionUse``; one statement, a replay skipped, not failing the round), spend the codes of live agents
        still unused and unexpired (``CodeRedemption``; one statement), let ``plan`` decide from that
        (``RoundView``) what to record, insert its rows (one statement per table) and move the touched keys'
        last-used time. A concurrent revocation either committed before - and is seen - or waits for this round
        and then revokes what it recorded. If any insert fails, nothing of the round is recorded."""
        ...


class RevocationRounds(Protocol):
    """The write side of batched revocation of single credentials (RFC 7009)."""

    async def revoke_round(self, jtis: Sequence[str], now: datetime, audit: RevokedAudit) -> list[Revoked]:
        """Revoke those of ``jtis`` not yet revoked or expired and the refresh half of their token pairs (every
        refresh token of the family each was minted with, also for an access token already dead), bump the
        status lists' versions and record ``audit``'s events: one write transaction. Returns what it revoked."""
        ...


class StatusBlocks(Protocol):
    """Exclusive reservation of blocks of status-list indexes (``issuer/status.py``)."""

    async def reserve_blocks(self, list_id: int, blocks: Sequence[int], now: datetime, per_list: int) -> list[int]:
        """Reserve those blocks of an open list in one short write transaction; returns the blocks this call got,
        ascending (a block already reserved is skipped, not an error; a list not open gives none). The list turns
        full when all ``per_list`` of its blocks are reserved."""
        ...


class AgentPages(Protocol):
    """Pages of the agents a principal sees (``GET /api/v1/agents``, the ``agents.list`` use case)."""

    async def agent_page(
        self, root: Agent, now: datetime, limit: int, offset: int, peers: bool
    ) -> tuple[list[Agent], int]:
        """(page, total) of ``root``'s subtree (itself included) and, with ``peers``, of its delegation peers at
        ``now`` (agents of other tenants with a live direct delegation with ``root`` either way), ordered by
        creation time then id; the count and the page from one snapshot on the read side."""
        ...

    async def visible_agent(self, root: Agent, agent_id: str, now: datetime, peers: bool) -> Agent | None:
        """Agent ``agent_id`` if ``agent_page`` would list it for ``root`` (the ``agents.get`` use case), else
        None: one query on the read side."""
        ...


@dataclass(frozen=True, slots=True)
class Insert:
    """A plan's step: insert ``rows`` into ``table`` (one executemany). Build it with ``Insert.of``, which gives
    every row its NULLs (an absent nullable column without default is NULL; a column with a default is left to
    it), so each implementation writes exactly the same values."""

    table: Table
    rows: tuple[dict[str, Any], ...]

    @classmethod
    def of(cls, table: Any, *rows: Mapping[str, Any]) -> Insert:
        """``table`` (a model's ``__table__``) with ``rows``, each completed and in the table's column order."""
        nulls, keys = _row_shape(table)
        completed: tuple[dict[str, Any], ...] = tuple({**nulls, **row} for row in rows)
        for row in completed:
            if not row.keys() <= keys:
                raise ValueError(f"{table.name} has no column {sorted(row.keys() - keys)}")
        return cls(table, completed)


@functools.cache
def _row_shape(table: Table) -> tuple[dict[str, Any], frozenset[str]]:
    """NULL for each column of ``table`` an absent value may leave NULL (nullable, no default), and its keys."""
    columns = table.columns
    nulls = dict.fromkeys(c.key for c in columns if c.nullable and c.default is None and c.server_default is None)
    return nulls, frozenset(c.key for c in columns)


@dataclass(frozen=True, slots=True)
class Require:
    """A plan's step that re-checks what the plan relies on: run ``statement`` - a Core statement built once (a
    module constant, values as named ``bindparam``s given in ``params``) - and fail the plan with ``error`` unless
    it returned (SELECT, RETURNING) or changed (UPDATE, DELETE) exactly ``rows`` rows."""

    statement: ClauseElement
    params: Mapping[str, Any]
    rows: int
    error: AgentAuthError


@dataclass(frozen=True, slots=True)
class Execute:
    """A plan's step that changes rows without a count to meet: run ``statement`` (an UPDATE or DELETE built
    once, values as named ``bindparam``s given in ``params``)."""

    statement: ClauseElement
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class WritePlan:
    """What one use case writes: steps run in order, all or nothing."""

    steps: tuple[Insert | Require | Execute, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """A read: ``statement`` - a Core SELECT built once (a module constant, values as named ``bindparam``s given
    in ``params``)."""

    statement: ClauseElement
    params: Mapping[str, Any] = field(default_factory=dict)


class Reads(Protocol):
    """The general read path: queries on the read side, in one snapshot (on SQLite one thread hop)."""

    async def fetch(self, *queries: Query) -> list[list[tuple[Any, ...]]]:
        """Each query's rows, in order: tuples of the selected columns' values, converted as the columns' types
        convert them (``statements.row_as`` turns a slice of one into an object for a repository's
        ``to_record``). A failure arrives translated (``failures.translate``)."""
        ...


class Writes(Protocol):
    """The general write path (issue 13 item 7): plans of compiled Core statements, batched in rounds like the
    issuing round - the plans queued while a round writes run as the next round, one transaction (and on SQLite
    one thread hop), a savepoint per plan."""

    async def run(self, plan: WritePlan) -> None:
        """Run ``plan`` in the next write round; returns once that round committed. A failing plan undoes only
        itself (its savepoint) and raises here its own failure - a ``Require``'s error, or its storage failure
        translated (``failures.translate``: a unique value taken -> ``Conflict``) - while the round's other
        plans commit."""
        ...


@dataclass(frozen=True)
class StoragePorts:
    """The ports of one backend, as ``factory.storage_ports`` chose them."""

    token_states: TokenStates
    client_keys: ClientKeys
    issuance: IssuanceRounds
    revocation: RevocationRounds
    status_blocks: StatusBlocks
    agent_pages: AgentPages
    writes: Writes
    reads: Reads
    policies: PolicyReads


# -- policies (check_permission) --


@dataclass(frozen=True, slots=True)
class DelegatedScopes:
    """What a live delegation to an agent hands on, for its decisions: the scopes, at the delegation's depth."""

    id: str
    scopes: tuple[str, ...]
    depth: int


@dataclass(frozen=True, slots=True)
class PermissionSubject:
    """The agent a ``check_permission`` is about: ``member`` when it lies in the caller's subtree (else it is a
    delegation peer of the caller), with the live delegations of the caller's tenant to it, by depth then id."""

    agent: Agent
    member: bool
    delegations: tuple[DelegatedScopes, ...]


class PolicyReads(Protocol):
    """The reads behind decisions: a tenant's policies for its compiled set, and the subject of a check."""

    async def policy_version(self, tenant_id: str) -> int:
        """The tenant's policy version (0 when it never had a policy)."""
        ...

    async def tenant_policies(self, tenant_id: str) -> tuple[int, list[PolicyRecord]]:
        """(version, policies by priority descending then id) of the tenant, from one snapshot: the version is
        that of exactly these policies."""
        ...

    async def permission_subject(
        self, agent_id: str, caller: Agent, peers: bool, now: datetime
    ) -> PermissionSubject | None:
        """In one query on the read side: ``agent_id`` if it lies in ``caller``'s subtree or - with ``peers`` -
        is a delegation peer of ``caller`` at ``now`` (of another tenant, a live direct delegation between the two
        either way), with the delegations of ``caller``'s tenant live at ``now`` to it; else None."""
        ...
