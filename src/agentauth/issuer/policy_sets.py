"""Every tenant's compiled policies (``PolicySet``), kept per process and keyed by the tenant's policy version -
the counter each policy write moves in its own transaction - so a change made through any replica applies to
the next request there: a request carries the version read with its token (``TokenState.policy_version``), and a
set of another version is reloaded.

Policy writes go through here (``PolicySets.write``) on the general write path: the plan moves the version from
the one of the writer's set (``storage.policies.version_step``), so once it commits the writer knows the stored
policies are exactly that set plus its change and derives the new set from it (``PolicySet.changed``: a pass over
the list, no recompilation) instead of reloading and recompiling the tenant's policies. A set found stale - another
replica wrote since it was loaded - is reloaded and the plan built again. A reload recompiles only the policies
that changed since the set it replaces.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentauth.errors import AgentAuthError, Conflict, TemporarilyUnavailable
from agentauth.issuer.policy_engine import Policy, PolicySet, build_policy
from agentauth.storage import policies as repo
from agentauth.storage.ports import Insert, PolicyReads, Require, WritePlan, Writes
from agentauth.storage.records import PolicyRecord

# Plans built on the writer's set before the last attempt, which builds on nothing (``PolicySets.write``).
WRITE_ATTEMPTS = 4


def compile_policy(p: PolicyRecord | Any, policy_id: str, *, new: bool = True) -> Policy:
    return build_policy(
        id=policy_id,
        name=p.name,
        effect=p.effect,
        subjects=dict(p.subjects),
        actions=list(p.actions),
        resources=list(p.resources),
        conditions=dict(p.conditions),
        priority=p.priority,
        enabled=p.enabled,
        new=new,
    )


@dataclass(frozen=True, slots=True)
class TenantPolicies:
    """A tenant's policies at one version: compiled for decisions (``policy_set``, the enabled ones) and every
    stored one, enabled or not, with its record (``by_id``)."""

    version: int
    policy_set: PolicySet
    by_id: Mapping[str, tuple[PolicyRecord, Policy]]

    def changed(self, removed: str | None, added: tuple[PolicyRecord, Policy] | None) -> TenantPolicies:
        """These policies at the next version, after one write: ``removed`` (an id) gone, ``added`` in."""
        by_id = dict(self.by_id)
        if removed is not None:
            by_id.pop(removed, None)
        if added is not None:
            by_id[added[0].id] = added
        return TenantPolicies(self.version + 1, self.policy_set.changed(removed, added[1] if added else None), by_id)

    def records(self) -> list[PolicyRecord]:
        """The stored policies, by priority descending then id (as ``PolicyReads.tenant_policies`` orders them)."""
        return sorted((record for record, _ in self.by_id.values()), key=lambda r: (-r.priority, r.id))


class StalePolicies(TemporarilyUnavailable):
    """A plan's version step found the tenant's policies moved since the set it was built from (never raised
    out of ``PolicySets.write`` but as the last attempt's failure)."""


# What a write does, given the tenant's current policies: (the plan's steps after the version step, the id it
# removes, the policy it adds).
Change = tuple[Sequence[Insert | Require], str | None, tuple[PolicyRecord, Policy] | None]


class PolicySets:
    """The compiled sets of every tenant this process has seen, and the policy writes that keep them current."""

    def __init__(self, reads: PolicyReads, writes: Writes) -> None:
        self._reads = reads
        self._writes = writes
        self._tenants: dict[str, TenantPolicies] = {}
        # One writer per tenant at a time in this process: each builds on the set the previous one left.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def current(self, tenant_id: str, known_version: int | None = None) -> TenantPolicies:
        """The tenant's policies; ``known_version`` (read moments ago with the caller's token) spares the version
        query when the cached set is of that version or a later one."""
        cached = self._tenants.get(tenant_id)
        # A set at least as new as the version the caller saw will do (versions only grow): a request whose token
        # was read just before this process's own write must not reload what that write already applied.
        if known_version is not None and cached is not None and cached.version >= known_version:
            return cached
        if known_version == 0:
            return self._keep(tenant_id, TenantPolicies(0, PolicySet(()), {}))
        if (
            known_version is None
            and cached is not None
            and cached.version == await self._reads.policy_version(tenant_id)
        ):
            return cached
        return await self.load(tenant_id)

    async def load(self, tenant_id: str) -> TenantPolicies:
        """Reload from storage, recompiling only the policies that differ from the cached set's."""
        version, records = await self._reads.tenant_policies(tenant_id)
        cached = self._tenants.get(tenant_id)
        known = cached.by_id if cached is not None else {}
        by_id: dict[str, tuple[PolicyRecord, Policy]] = {}
        for record in records:
            entry = known.get(record.id)
            if entry is None or entry[0] != record:
                entry = (record, compile_policy(record, record.id, new=False))
            by_id[record.id] = entry
        return self._keep(tenant_id, TenantPolicies(version, PolicySet(p for _, p in by_id.values()), by_id))

    def _keep(self, tenant_id: str, policies: TenantPolicies) -> TenantPolicies:
        # Versions only grow: an older set read by a slower request never replaces a newer one.
        cached = self._tenants.get(tenant_id)
        if cached is None or cached.version <= policies.version:
            self._tenants[tenant_id] = policies
        return policies

    async def write(self, tenant_id: str, change: Callable[[TenantPolicies], Change]) -> TenantPolicies:
        """Run one policy write - ``change`` builds it from the tenant's current policies - as one plan with the
        version step first; returns the tenant's policies after it. The plan's own failures (a ``Require``'s
        error, a storage failure) are raised as they are."""
        lock = self._locks.get(tenant_id)
        if lock is None:
            lock = self._locks[tenant_id] = asyncio.Lock()
        async with lock:
            current = self._tenants.get(tenant_id) or await self.load(tenant_id)
            for attempt in range(WRITE_ATTEMPTS):
                # The last attempt moves the version from whatever it is - the write then always lands (a tenant
                # written through other replicas that fast cannot starve it) - and the set is reloaded after.
                last = attempt == WRITE_ATTEMPTS - 1
                steps, removed, added = change(current)
                stale = StalePolicies(debug=f"policy version of {tenant_id} moved from {current.version}")
                expected = None if last and current.version else current.version
                try:
                    await self._writes.run(WritePlan((repo.version_step(tenant_id, expected, stale), *steps)))
                except AgentAuthError as exc:
                    # Stale: the version step failed - or, for a tenant without a version row, its insert did.
                    if last or not (exc is stale or (isinstance(exc, Conflict) and current.version == 0)):
                        raise
                    current = await self.load(tenant_id)
                    continue
                if expected is None:
                    return await self.load(tenant_id)
                return self._keep(tenant_id, current.changed(removed, added))
        raise AssertionError("unreachable")  # pragma: no cover
