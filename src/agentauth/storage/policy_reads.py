"""The policy reads (``ports.PolicyReads``) on the general read port, so every backend has them through its
``Reads.fetch``: each is one statement of ``statements`` (a module constant) and one call, one snapshot - one
thread hop on SQLite, one round trip on PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import orjson

from agentauth.storage import statements
from agentauth.storage.agents import to_record as agent_record
from agentauth.storage.policies import to_record as policy_record
from agentauth.storage.ports import DelegatedScopes, PermissionSubject, Query, Reads
from agentauth.storage.records import Agent, PolicyRecord

# Built once: constructing a statement costs more CPU than running it.
_POLICY_VERSION = statements.policy_version()
_TENANT_POLICIES = statements.tenant_policies()
_PERMISSION_SUBJECT = statements.permission_subject()
_AGENT_WIDTH = len(statements.AGENT_COLUMNS)


class PolicyReadsOf:
    """``PolicyReads`` through ``reads``."""

    def __init__(self, reads: Reads) -> None:
        self._reads = reads

    async def policy_version(self, tenant_id: str) -> int:
        (rows,) = await self._reads.fetch(Query(_POLICY_VERSION, {"tenant": tenant_id}))
        return int(rows[0][0]) if rows else 0

    async def tenant_policies(self, tenant_id: str) -> tuple[int, list[PolicyRecord]]:
        (rows,) = await self._reads.fetch(Query(_TENANT_POLICIES, {"tenant": tenant_id}))
        records = [
            policy_record(statements.row_as(statements.POLICY_COLUMNS, row[1:])) for row in rows if row[1] is not None
        ]
        return (int(rows[0][0]) if rows else 0), records

    async def permission_subject(
        self, agent_id: str, caller: Agent, peers: bool, now: datetime
    ) -> PermissionSubject | None:
        values = statements.subtree_range(caller.path) | {
            "agent": agent_id, "caller": caller.id, "tenant": caller.tenant_id, "now": now,
        }  # fmt: skip
        (rows,) = await self._reads.fetch(Query(_PERMISSION_SUBJECT, values))
        split = _AGENT_WIDTH
        if not rows or not (rows[0][split] or (peers and rows[0][split + 1])):
            return None
        agent = agent_record(statements.row_as(statements.AGENT_COLUMNS, rows[0][:split]))
        delegated = tuple(
            DelegatedScopes(row[split + 2], tuple(orjson.loads(row[split + 3])), int(row[split + 4]))
            for row in rows
            if row[split + 2] is not None
        )
        return PermissionSubject(agent, bool(rows[0][split]), delegated)
