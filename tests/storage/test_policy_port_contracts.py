"""Contract of the policies port (``ports.PolicyReads``) and of the policy write steps (``storage/policies.py`` on
``Writes.run``), for every implementation (``conftest.IMPLEMENTATIONS``): the same seeded rows give the same
records, the same subject of a check and the same failures. Expectations are written out from the seed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from port_support import Store
from sqlalchemy import insert, select

from agentauth.errors import Conflict, InvalidRequest, NotFound, TemporarilyUnavailable
from agentauth.storage import policies as repo
from agentauth.storage.models import AgentRow, DelegationRow, PolicyRow, PolicyVersionRow
from agentauth.storage.policy_reads import PolicyReadsOf
from agentauth.storage.ports import DelegatedScopes, WritePlan
from agentauth.storage.records import Agent, AgentStatus, PolicyRecord

pytestmark = pytest.mark.anyio

NOW = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
CREATED = datetime(2029, 12, 1, 8, 0, 0, tzinfo=UTC)


def agent_row(agent_id: str, tenant: str, path: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": agent_id, "tenant_id": tenant, "parent_id": None, "depth": path.count("/") - 2, "path": path,
        "did": f"did:key:z6Mk{agent_id}", "name": agent_id, "agent_type": "tool", "description": None,
        "trust_level": "basic", "status": "active", "scopes": ["api.read"], "identity_credential_id": None,
        "created_at": CREATED, "updated_at": CREATED, "deactivated_at": None, "dpop_requirement": 0,
    } | fields  # fmt: skip


AGENTS = [
    agent_row("agt_root", "agt_root", "/agt_root/", scopes=["agents.read", "api.write"]),
    agent_row("agt_kid", "agt_root", "/agt_root/agt_kid/", parent_id="agt_root", status="deactivated"),
    agent_row("agt_other", "agt_other", "/agt_other/"),  # a peer of root: a live delegation root -> other
    agent_row("agt_far", "agt_far", "/agt_far/"),  # another tenant, only a revoked delegation with root
]


def delegation(did: str, delegator: str, delegate: str, tenant: str, depth: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": did, "tenant_id": tenant, "delegator_id": delegator, "delegate_id": delegate, "parent_id": None,
        "path": f"/{did}/", "depth": depth, "scopes": ["api.read", f"s{depth}"], "remaining_depth": 1,
        "credential_jti": f"urn:uuid:{did}", "credential_jwt": "x", "status": "active", "created_at": CREATED,
        "expires_at": NOW + timedelta(hours=1), "revoked_at": None,
    } | fields  # fmt: skip


DELEGATIONS = [
    delegation("dlg_b", "agt_root", "agt_other", "agt_root", 2),
    delegation("dlg_a", "agt_root", "agt_other", "agt_root", 1),
    delegation("dlg_expired", "agt_root", "agt_other", "agt_root", 1, expires_at=NOW),
    # The same grants again (scopes and depth): one row each, named by the first by id; another grant at depth 1.
    delegation("dlg_c", "agt_root", "agt_other", "agt_root", 1),
    delegation("dlg_1", "agt_root", "agt_other", "agt_root", 2),
    delegation("dlg_0", "agt_root", "agt_other", "agt_root", 1, scopes=["api.read", "s9"]),
    delegation("dlg_foreign", "agt_far", "agt_other", "agt_far", 1),  # of another tenant: not root's to use
    delegation("dlg_kid", "agt_root", "agt_kid", "agt_root", 1),
    delegation("dlg_revoked", "agt_root", "agt_far", "agt_root", 1, status="revoked"),
]


def policy_row(pid: str, priority: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": pid, "tenant_id": "agt_root", "name": f"p {pid} \u00e9", "description": None, "effect": "deny",
        "subjects": {"agent_ids": ["agt_kid"]}, "actions": ["read", "write"], "resources": ["docs/**"],
        "conditions": {"max_delegation_depth": 2}, "priority": priority, "enabled": True, "created_at": CREATED,
        "updated_at": NOW,
    } | fields  # fmt: skip


POLICIES = [policy_row("pol_b", 5), policy_row("pol_a", 5, enabled=False, description="off"), policy_row("pol_c", 9)]


def record(row: dict[str, Any]) -> PolicyRecord:
    return PolicyRecord(**{**row, "actions": tuple(row["actions"]), "resources": tuple(row["resources"])})


async def seed(store: Store, *, version: int | None = 4, policies: list[dict[str, Any]] = POLICIES) -> Agent:
    async with store.neutral.begin() as session:
        await session.execute(insert(AgentRow), AGENTS)
        await session.execute(insert(DelegationRow), DELEGATIONS)
        if version is not None:
            await session.execute(insert(PolicyVersionRow), [{"tenant_id": "agt_root", "version": version}])
        if policies:
            await session.execute(insert(PolicyRow), policies)
    root = AGENTS[0]
    return Agent(**{**root, "status": AgentStatus.ACTIVE, "scopes": tuple(root["scopes"])})


async def stored(store: Store) -> tuple[int | None, list[tuple[Any, ...]]]:
    async with store.neutral() as session:
        version = await session.scalar(select(PolicyVersionRow.version).where(PolicyVersionRow.tenant_id == "agt_root"))
        rows = (
            await session.execute(select(PolicyRow.id, PolicyRow.name, PolicyRow.enabled).order_by(PolicyRow.id))
        ).all()
    return version, [tuple(r) for r in rows]


async def test_tenant_policies_in_order_with_their_version(store: Store) -> None:
    await seed(store)
    version, records = await PolicyReadsOf(store.ports).tenant_policies("agt_root")
    assert version == 4
    assert records == [record(POLICIES[2]), record(POLICIES[1]), record(POLICIES[0])]  # priority desc, then id
    assert records[1].enabled is False and records[0].enabled is True
    assert await PolicyReadsOf(store.ports).policy_version("agt_root") == 4
    assert await PolicyReadsOf(store.ports).tenant_policies("agt_other") == (0, [])
    assert await PolicyReadsOf(store.ports).policy_version("agt_other") == 0


async def test_tenant_policies_with_a_version_and_no_policy_left(store: Store) -> None:
    await seed(store, version=9, policies=[])
    assert await PolicyReadsOf(store.ports).tenant_policies("agt_root") == (9, [])


async def test_permission_subject(store: Store) -> None:
    root = await seed(store)
    own = await PolicyReadsOf(store.ports).permission_subject("agt_root", root, True, NOW)
    assert own is not None and own.member and own.agent == root and own.delegations == ()
    kid = await PolicyReadsOf(store.ports).permission_subject("agt_kid", root, False, NOW)
    assert kid is not None and kid.member and kid.agent.status == AgentStatus.DEACTIVATED
    assert kid.delegations == (DelegatedScopes("dlg_kid", ("api.read", "s1"), 1),)
    peer = await PolicyReadsOf(store.ports).permission_subject("agt_other", root, True, NOW)
    assert peer is not None and not peer.member and peer.agent.id == "agt_other"
    # Live delegations of root's tenant only, by depth: not the expired one, not another tenant's; one per grant.
    assert peer.delegations == (
        DelegatedScopes("dlg_0", ("api.read", "s9"), 1),
        DelegatedScopes("dlg_a", ("api.read", "s1"), 1),
        DelegatedScopes("dlg_1", ("api.read", "s2"), 2),
    )
    assert (
        await PolicyReadsOf(store.ports).permission_subject("agt_other", root, False, NOW) is None
    )  # peers not asked for
    assert await PolicyReadsOf(store.ports).permission_subject("agt_far", root, True, NOW) is None  # revoked: no peer
    assert await PolicyReadsOf(store.ports).permission_subject("agt_nobody", root, True, NOW) is None
    # At a later instant the delegations have expired: no longer a peer.
    assert (
        await PolicyReadsOf(store.ports).permission_subject("agt_other", root, True, NOW + timedelta(hours=2)) is None
    )


async def test_policy_writes_and_their_preconditions(store: Store) -> None:
    await seed(store)
    stale = TemporarilyUnavailable("stale")
    new = record(policy_row("pol_new", 0, created_at=NOW))
    with pytest.raises(TemporarilyUnavailable) as raised:  # the version moved on: nothing of the plan stays
        await store.ports.run(WritePlan((repo.version_step("agt_root", 3, stale), repo.insert(new))))
    assert raised.value is stale
    with pytest.raises(InvalidRequest, match="at most 3 policies"):
        await store.ports.run(
            WritePlan((repo.version_step("agt_root", 4, stale), repo.below_limit("agt_root", 3), repo.insert(new)))
        )
    assert await stored(store) == (4, [("pol_a", "p pol_a \u00e9", False), ("pol_b", "p pol_b \u00e9", True),
                                      ("pol_c", "p pol_c \u00e9", True)])  # fmt: skip
    await store.ports.run(
        WritePlan((repo.version_step("agt_root", 4, stale), repo.below_limit("agt_root", 4), repo.insert(new)))
    )
    changed = record(policy_row("pol_b", 7, name="renamed", enabled=False, subjects={"all": True}, updated_at=NOW))
    await store.ports.run(WritePlan((repo.version_step("agt_root", 5, stale), repo.replace(changed))))
    await store.ports.run(WritePlan((repo.version_step("agt_root", 6, stale), repo.remove("agt_root", "pol_c"))))
    for missing in (repo.replace(record(policy_row("pol_x", 1))), repo.remove("agt_root", "pol_x"),
                    repo.remove("agt_other", "pol_a")):  # fmt: skip
        with pytest.raises(NotFound):
            await store.ports.run(WritePlan((repo.version_step("agt_root", 7, stale), missing)))
    version, records = await PolicyReadsOf(store.ports).tenant_policies("agt_root")
    assert version == 7
    assert records == [changed, record(POLICIES[1]), new]
    assert records[0].created_at == CREATED  # a replacement keeps the creation time


async def test_first_version_of_a_tenant(store: Store) -> None:
    await seed(store, version=None, policies=[])
    stale = TemporarilyUnavailable("stale")
    await store.ports.run(WritePlan((repo.version_step("agt_root", 0, stale),)))
    assert await PolicyReadsOf(store.ports).policy_version("agt_root") == 1
    with pytest.raises(Conflict):  # another writer made the row first: the writer's set was stale
        await store.ports.run(WritePlan((repo.version_step("agt_root", 0, stale),)))
    assert await PolicyReadsOf(store.ports).policy_version("agt_root") == 1
