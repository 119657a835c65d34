"""Agents that authenticate with their own key (``private_key_jwt`` client assertions, jwt-bearer grants), as
read a moment ago: the read before signing is skipped for an agent seen in the last ``SNAPSHOT_SECONDS``.

Safe for the reason the API-key round's snapshot is (``hotpath.py``): the write plan that records the token
re-checks, in the write round, that the agent is still active *and unchanged since the snapshot*
(``grant_statements.AGENT_AS_OF``: its ``updated_at``, which every change of an agent - status, scopes, key -
moves). A plan failing that check drops the snapshot and the grant runs once more on a fresh read
(``AgentSnapshots.fresh``), which then decides.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from agentauth.storage import client_statements, grant_statements
from agentauth.storage.ports import Query, Reads
from agentauth.storage.records import Agent

SNAPSHOT_SECONDS = 5.0
SNAPSHOT_ENTRIES = 10_000


class AgentSnapshots:
    def __init__(self, reads: Reads, clock: Callable[[], float] = time.monotonic) -> None:
        self._reads = reads
        self._clock = clock
        # the name presented (agent id or DID) -> (monotonic time read, the agent). Only found agents are kept.
        self._agents: OrderedDict[str, tuple[float, Agent]] = OrderedDict()

    async def get(self, named: str) -> tuple[Agent | None, bool]:
        """The agent ``named`` (its id, or its DID when it starts with ``did:``) and whether it came from a
        snapshot (so the caller knows a failed re-check is worth one fresh try)."""
        hit = self._agents.get(named)
        if hit is not None and self._clock() - hit[0] < SNAPSHOT_SECONDS:
            return hit[1], True
        return await self.fresh(named), False

    async def fresh(self, named: str) -> Agent | None:
        """The agent ``named`` read now (and kept for the next requests)."""
        by_did = named.startswith("did:")
        statement = grant_statements.AGENT_BY_DID if by_did else client_statements.AGENT_BY_ID
        (rows,) = await self._reads.fetch(Query(statement, {"did" if by_did else "id": named}))
        agent = grant_statements.agent_of(rows[0]) if rows else None
        self._agents.pop(named, None)
        if agent is not None:
            self._agents[named] = (self._clock(), agent)
            while len(self._agents) > SNAPSHOT_ENTRIES:
                self._agents.popitem(last=False)
        return agent

    def drop(self, named: str) -> None:
        self._agents.pop(named, None)
