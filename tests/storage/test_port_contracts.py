"""Contract tests of the storage ports (``storage/ports.py``, issue 13 item 6), run against every implementation
(``conftest.IMPLEMENTATIONS``: SQLAlchemy on a SQLite file, the one-hop sqlite3 path on a SQLite file, SQLAlchemy
on PostgreSQL when enabled): the same rows in, the same records and the same errors out.

Every expectation is written out from the seeded rows, not taken from another implementation, and what an
implementation writes is read back through plain SQLAlchemy - so a column converted differently (a datetime
naive or formatted otherwise, JSON left as text, a status not matched), a revoked or expired row taken for live,
or a round that half-commits fails here on the implementation that does it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from port_support import Store
from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.dialects.sqlite import DATETIME

from agentauth.errors import Conflict, TemporarilyUnavailable
from agentauth.storage import agents as agents_repo
from agentauth.storage import api_keys as api_keys_repo
from agentauth.storage import audit as audit_repo
from agentauth.storage import credentials as credentials_repo
from agentauth.storage.models import (
    AgentRow,
    ApiKeyRow,
    AuditEventRow,
    AuthorizationCodeRow,
    CredentialRow,
    DelegationRow,
    PolicyVersionRow,
    RefreshTokenRow,
    StatusBlockRow,
    StatusListRow,
    UsedAssertionRow,
)
from agentauth.storage.policy_reads import PolicyReadsOf
from agentauth.storage.ports import (
    AssertionUse,
    CodeRedemption,
    Execute,
    Insert,
    IssuedRows,
    Query,
    Require,
    RoundView,
    StoragePorts,
    WritePlan,
)
from agentauth.storage.records import (
    Agent,
    AgentStatus,
    ApiKey,
    ApiKeyStatus,
    AuditOutcome,
    Credential,
    CredentialKind,
    RefreshTokenStatus,
    Revoked,
    RevokedFamily,
    StatusListState,
    TokenState,
)
from agentauth.storage.statements import row_as

pytestmark = pytest.mark.anyio

# Microseconds on some instants and none on others: a converter that drops ".000000" or formats "T" is caught.
NOW = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
ROUND = NOW.replace(microsecond=0)
CREATED = datetime(2029, 12, 1, 8, 0, 0, tzinfo=UTC)

AGENTS: dict[str, dict[str, Any]] = {
    "agt_root": {
        "id": "agt_root", "tenant_id": "agt_root", "parent_id": None, "depth": 0, "path": "/agt_root/",
        "did": "did:key:z6MkRoot", "name": "root", "agent_type": "assistant", "description": None,
        "trust_level": "basic", "status": "active", "scopes": ["agents.read", "api.write"],
        "identity_credential_id": None, "created_at": CREATED, "updated_at": ROUND - timedelta(hours=1),
        "deactivated_at": None, "dpop_requirement": 0,
    },
    "agt_gone": {
        "id": "agt_gone", "tenant_id": "agt_gone", "parent_id": None, "depth": 0, "path": "/agt_gone/",
        "did": "did:key:z6MkGone", "name": "gone \u00e9", "agent_type": "worker", "description": "deactivated",
        "trust_level": "verified", "status": "deactivated", "scopes": [], "identity_credential_id": "urn:uuid:id-1",
        "created_at": CREATED, "updated_at": NOW - timedelta(minutes=10), "deactivated_at": NOW - timedelta(minutes=10),
        "dpop_requirement": 2,
    },
}  # fmt: skip
KEYS: dict[str, dict[str, Any]] = {
    "key_live": {"id": "key_live", "agent_id": "agt_root", "prefix": "ak_live_p1", "status": "active",
                 "name": None, "scopes": ["api.write"], "expires_at": None, "last_used_at": None,
                 "revoked_at": None, "replaced_by": None},
    "key_revoked": {"id": "key_revoked", "agent_id": "agt_root", "prefix": "ak_live_p2", "status": "revoked",
                    "name": "old", "scopes": ["api.write"], "expires_at": None, "last_used_at": CREATED,
                    "revoked_at": NOW - timedelta(days=1), "replaced_by": "key_live"},
    "key_of_gone": {"id": "key_of_gone", "agent_id": "agt_gone", "prefix": "ak_live_p3", "status": "active",
                    "name": "ci", "scopes": [], "expires_at": NOW + timedelta(days=1), "last_used_at": None,
                    "revoked_at": None, "replaced_by": None},
    "key_expired": {"id": "key_expired", "agent_id": "agt_root", "prefix": "ak_live_p4", "status": "active",
                    "name": None, "scopes": ["agents.read"], "expires_at": NOW - timedelta(seconds=1),
                    "last_used_at": ROUND, "revoked_at": None, "replaced_by": None},
}  # fmt: skip
# jti -> (kind, agent, client_id, refresh family, expires_at, revoked_at)
CREDENTIALS: dict[str, tuple[str, str, str | None, str | None, datetime, datetime | None]] = {
    "urn:uuid:live": ("access", "agt_root", "agt_root", "rtf_1", NOW + timedelta(minutes=15), None),
    "urn:uuid:revoked": ("access", "agt_root", "agt_root", "rtf_2", NOW + timedelta(minutes=15), ROUND),
    "urn:uuid:expired": ("access", "agt_root", "client-x", "rtf_3", NOW - timedelta(microseconds=1), None),
    "urn:uuid:identity": ("identity", "agt_gone", None, None, NOW + timedelta(days=365), None),
}
# id -> (family, status)
REFRESH_TOKENS = {"rt_1": ("rtf_1", "active"), "rt_2": ("rtf_2", "active"), "rt_3a": ("rtf_3", "used"),
                  "rt_3b": ("rtf_3", "active"), "rt_9": ("rtf_9", "active")}  # fmt: skip
LIST_ID = 1
POLICY_VERSION = 7


def key_row(key_id: str) -> dict[str, Any]:
    key = KEYS[key_id]
    tenant = AGENTS[key["agent_id"]]["tenant_id"]
    return {**key, "tenant_id": tenant, "key_hash": f"hash-of-{key_id}", "created_at": CREATED}


def credential_row(jti: str, status_index: int) -> dict[str, Any]:
    kind, agent, client_id, family, expires, revoked = CREDENTIALS[jti]
    return {
        "jti": jti, "kind": kind, "agent_id": agent, "tenant_id": AGENTS[agent]["tenant_id"], "client_id": client_id,
        "api_key_id": None, "refresh_family_id": family, "delegation_id": None, "scopes": ["api.write"],
        "status_list_id": LIST_ID, "status_index": status_index, "kid": "did:web:x#k1", "issued_at": CREATED,
        "expires_at": expires, "revoked_at": revoked,
    }  # fmt: skip


def refresh_row(token_id: str) -> dict[str, Any]:
    family, status = REFRESH_TOKENS[token_id]
    return {
        "id": token_id, "token_hash": f"hash-{token_id}", "family_id": family, "agent_id": "agt_root",
        "tenant_id": "agt_root", "api_key_id": "key_live", "client_id": "agt_root", "scopes": ["api.write"],
        "status": status, "created_at": CREATED, "expires_at": NOW + timedelta(days=7), "used_at": None,
    }  # fmt: skip


def expected_agent(agent_id: str) -> Agent:
    row = AGENTS[agent_id]
    return Agent(**{**row, "status": AgentStatus(row["status"]), "scopes": tuple(row["scopes"])})


def expected_key(key_id: str) -> ApiKey:
    row = key_row(key_id)
    return ApiKey(**{**row, "status": ApiKeyStatus(row["status"]), "scopes": tuple(row["scopes"])})


async def seed(store: Store) -> None:
    async with store.neutral.begin() as session:
        await session.execute(
            insert(StatusListRow),
            [{"id": LIST_ID, "purpose": "revocation", "size": 131_072, "allocated": 0, "version": 0,
              "state": "open", "created_at": CREATED}],
        )  # fmt: skip
        await session.execute(insert(AgentRow), list(AGENTS.values()))
        await session.execute(insert(PolicyVersionRow), [{"tenant_id": "agt_root", "version": POLICY_VERSION}])
        await session.execute(insert(ApiKeyRow), [key_row(k) for k in KEYS])
        await session.execute(insert(CredentialRow), [credential_row(j, i) for i, j in enumerate(CREDENTIALS)])
        await session.execute(insert(RefreshTokenRow), [refresh_row(t) for t in REFRESH_TOKENS])


async def audit_count(store: Store) -> int:
    async with store.neutral() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEventRow)) or 0)


async def list_version(store: Store) -> int:
    async with store.neutral() as session:
        return int(await session.scalar(select(StatusListRow.version).where(StatusListRow.id == LIST_ID)) or 0)


async def test_every_implementation_provides_every_port(store: Store) -> None:
    # The factory builds StoragePorts from one object (mypy checks each field's protocol): the same object serves all.
    p = store.ports
    ports = StoragePorts(p, p, p, p, p, p, p, p, PolicyReadsOf(p))
    assert ports.token_states is ports.reads is store.ports


# -- agent pages ---------------------------------------------------------------------------------------------


def page_agent(agent_id: str, tenant: str, path: str, created: datetime) -> dict[str, Any]:
    return {**AGENTS["agt_root"], "id": agent_id, "tenant_id": tenant, "parent_id": None, "depth": path.count("/") - 2,
            "path": path, "did": f"did:key:z6Mk{agent_id}", "name": agent_id, "created_at": created}  # fmt: skip


def delegation_row(delegation_id: str, delegator: str, delegate: str, status: str, expires: datetime) -> dict[str, Any]:
    return {"id": delegation_id, "tenant_id": "agt_root", "delegator_id": delegator, "delegate_id": delegate,
            "parent_id": None, "path": f"/{delegation_id}/", "depth": 1, "scopes": [], "remaining_depth": 0,
            "credential_jti": f"urn:uuid:{delegation_id}", "credential_jwt": "x", "status": status,
            "created_at": CREATED, "expires_at": expires, "revoked_at": None}  # fmt: skip


# The subtree of agt_root: children created in an order their ids do not follow (two at the same instant: id
# breaks the tie), a grandchild, an agent whose path only *starts like* the root's ("/agt_root_x/", and "%"/"_"
# are not wildcards), and peers of other tenants: one per direction of a live delegation, and not one whose
# delegation expired (by 1 us), was revoked, or that lives in the root's own tenant.
PAGE_AGENTS = [
    page_agent("agt_c2", "agt_root", "/agt_root/agt_c2/", CREATED + timedelta(minutes=1)),
    page_agent("agt_c1", "agt_root", "/agt_root/agt_c1/", CREATED + timedelta(minutes=2)),
    page_agent("agt_c0", "agt_root", "/agt_root/agt_c0/", CREATED + timedelta(minutes=2)),
    page_agent("agt_g1", "agt_root", "/agt_root/agt_c2/agt_g1/", CREATED + timedelta(minutes=3)),
    page_agent("agt_root_x", "agt_root_x", "/agt_root_x/", CREATED),
    page_agent("agt_peer_in", "agt_peer_in", "/agt_peer_in/", CREATED + timedelta(minutes=4)),
    page_agent("agt_peer_out", "agt_peer_out", "/agt_peer_out/", CREATED - timedelta(minutes=4)),
    page_agent("agt_expired", "agt_expired", "/agt_expired/", CREATED),
    page_agent("agt_revoked", "agt_revoked", "/agt_revoked/", CREATED),
]
DELEGATIONS = [
    delegation_row("dlg_1", "agt_peer_in", "agt_root", "active", NOW + timedelta(hours=1)),
    delegation_row("dlg_2", "agt_root", "agt_peer_out", "active", NOW + timedelta(hours=1)),
    delegation_row("dlg_3", "agt_root", "agt_expired", "active", NOW - timedelta(microseconds=1)),
    delegation_row("dlg_4", "agt_revoked", "agt_root", "revoked", NOW + timedelta(hours=1)),
    delegation_row("dlg_5", "agt_root", "agt_c1", "active", NOW + timedelta(hours=1)),  # own tenant: subtree only
]
SUBTREE = ["agt_root", "agt_c2", "agt_c0", "agt_c1", "agt_g1"]
WITH_PEERS = ["agt_peer_out", "agt_root", "agt_c2", "agt_c0", "agt_c1", "agt_g1", "agt_peer_in"]


async def seed_pages(store: Store) -> Agent:
    await seed(store)
    async with store.neutral.begin() as session:
        await session.execute(insert(AgentRow), PAGE_AGENTS)
        await session.execute(insert(DelegationRow), DELEGATIONS)
    return expected_agent("agt_root")


@pytest.mark.parametrize(("peers", "order"), [(False, SUBTREE), (True, WITH_PEERS)])
async def test_agent_pages_list_the_subtree_and_peers_in_order(store: Store, peers: bool, order: list[str]) -> None:
    root = await seed_pages(store)
    rows = {row["id"]: row for row in PAGE_AGENTS} | AGENTS

    paged: list[Agent] = []
    for offset in range(0, len(order) + 3, 3):
        items, total = await store.ports.agent_page(root, NOW, 3, offset, peers)
        assert total == len(order)
        assert len(items) == min(3, max(0, len(order) - offset))
        paged += items

    assert [agent.id for agent in paged] == order
    for agent in paged:
        row = rows[agent.id]
        assert agent == Agent(**{**row, "status": AgentStatus(row["status"]), "scopes": tuple(row["scopes"])})
        assert agent.created_at.tzinfo is not None
    whole, total = await store.ports.agent_page(root, NOW, 100, 0, peers)
    assert [agent.id for agent in whole] == order and total == len(order)


async def test_agent_pages_of_a_leaf_and_past_the_end(store: Store) -> None:
    await seed_pages(store)
    leaf = Agent(**{**PAGE_AGENTS[3], "status": AgentStatus.ACTIVE, "scopes": tuple(PAGE_AGENTS[3]["scopes"])})

    assert [a.id for a in (await store.ports.agent_page(leaf, NOW, 10, 0, True))[0]] == ["agt_g1"]
    assert await store.ports.agent_page(leaf, NOW, 10, 1, True) == ([], 1)
    # A peer seen from its own side: agt_peer_in's page holds agt_root (only), not agt_root's subtree.
    peer = Agent(**{**PAGE_AGENTS[5], "status": AgentStatus.ACTIVE, "scopes": tuple(PAGE_AGENTS[5]["scopes"])})
    items, total = await store.ports.agent_page(peer, NOW, 10, 0, True)
    assert [a.id for a in items] == ["agt_root", "agt_peer_in"] and total == 2


@pytest.mark.parametrize(("peers", "order"), [(False, SUBTREE), (True, WITH_PEERS)])
async def test_visible_agent_is_one_agent_of_the_page(store: Store, peers: bool, order: list[str]) -> None:
    # ``agents.get`` shows exactly what ``agents.list`` lists: every agent of the page, and no other.
    root = await seed_pages(store)
    page, _ = await store.ports.agent_page(root, NOW, 100, 0, peers)
    for agent in page:
        assert await store.ports.visible_agent(root, agent.id, NOW, peers) == agent
    for agent_id in {row["id"] for row in PAGE_AGENTS} - set(order) | {"agt_missing", "", "%"}:
        assert await store.ports.visible_agent(root, agent_id, NOW, peers) is None, agent_id
    leaf = Agent(**{**PAGE_AGENTS[3], "status": AgentStatus.ACTIVE, "scopes": tuple(PAGE_AGENTS[3]["scopes"])})
    assert await store.ports.visible_agent(leaf, "agt_c2", NOW, peers) is None  # its parent: above, not below


async def test_concurrent_reads_answer_as_sequential_ones(store: Store) -> None:
    # The one-hop implementation runs reads queued meanwhile together in one hop, each on its own snapshot.
    root = await seed_pages(store)
    reads = [
        lambda: store.ports.agent_page(root, NOW, 3, 0, True),
        lambda: store.ports.visible_agent(root, "agt_peer_in", NOW, True),
        lambda: store.ports.token_states(["urn:uuid:live", "urn:uuid:not-ours"]),
        lambda: store.ports.api_keys_with_agents(["ak_live_p1"]),
        lambda: store.ports.visible_agent(root, "agt_expired", NOW, True),
        lambda: store.ports.agent_page(root, NOW, 100, 2, False),
    ] * 4
    sequential = [await read() for read in reads]
    assert sequential[1] is not None and sequential[4] is None and sequential[0][1] == len(WITH_PEERS)
    assert await asyncio.gather(*(read() for read in reads)) == sequential


# -- token states --------------------------------------------------------------------------------------------


async def test_token_states_read_every_shape_of_credential(store: Store) -> None:
    await seed(store)
    jtis = [*CREDENTIALS, "urn:uuid:live", "urn:uuid:not-ours", ""]

    states = await store.ports.token_states(jtis)

    expected = {
        jti: TokenState(
            jti, CredentialKind(kind), client_id, revoked, expires, expected_agent(agent),
            POLICY_VERSION if AGENTS[agent]["tenant_id"] == "agt_root" else 0,
        )
        for jti, (kind, agent, client_id, _, expires, revoked) in CREDENTIALS.items()
    }  # fmt: skip
    assert states == expected
    for state in states.values():
        assert state.expires_at.tzinfo is not None and state.agent.created_at.tzinfo is not None
        assert isinstance(state.kind, CredentialKind) and isinstance(state.agent.status, AgentStatus)
    live = {jti for jti, state in states.items() if state.live_at(NOW)}
    assert live == {"urn:uuid:live", "urn:uuid:identity"}  # revoked and expired (by 1 us) are not live
    assert not states["urn:uuid:identity"].agent.is_active
    assert await store.ports.token_states([]) == {}


# -- API keys with agents -------------------------------------------------------------------------------------


async def test_api_keys_with_agents_read_keys_of_every_state(store: Store) -> None:
    await seed(store)
    prefixes = [KEYS[k]["prefix"] for k in KEYS] + ["ak_live_unknown", "ak_live_p1"]

    found = await store.ports.api_keys_with_agents(prefixes)

    assert found == {KEYS[k]["prefix"]: (expected_key(k), expected_agent(KEYS[k]["agent_id"])) for k in KEYS}
    usable = {key.id for key, agent in found.values() if key.usable_at(NOW) and agent.is_active}
    assert usable == {"key_live"}  # revoked, expired, and a live key of a deactivated agent do not authenticate
    assert found["ak_live_p3"][0].usable_at(NOW) and not found["ak_live_p3"][1].is_active
    assert await store.ports.api_keys_with_agents([]) == {}


# -- issuance rounds ----------------------------------------------------------------------------------------


def new_credential(jti: str, index: int) -> dict[str, Any]:
    return {
        "jti": jti, "kind": "access", "agent_id": "agt_root", "tenant_id": "agt_root", "client_id": "agt_root",
        "api_key_id": "key_live", "refresh_family_id": "rtf_new", "delegation_id": None,
        "scopes": ["api.write", "agents.read"], "status_list_id": LIST_ID, "status_index": index,
        "kid": "did:web:x#k1", "issued_at": NOW, "expires_at": ROUND + timedelta(minutes=15), "revoked_at": None,
    }  # fmt: skip


def new_refresh(token_id: str) -> dict[str, Any]:
    return {**refresh_row("rt_1"), "id": token_id, "token_hash": f"hash-{token_id}", "family_id": "rtf_new",
            "created_at": NOW, "expires_at": ROUND + timedelta(days=7)}  # fmt: skip


def new_event(action: str, outcome: str, details: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "tenant_id": "agt_root", "actor": "agt_root", "action": action, "target_type": "api_key",
        "target_id": "key_live", "outcome": outcome, "reason": "r\u00e9ason" if outcome == "failure" else None,
        "request_id": "req-1", "ip": "203.0.113.9", "created_at": NOW, "details": details,
    }  # fmt: skip


async def test_an_issuing_round_sees_live_keys_and_records_exactly_its_rows(store: Store) -> None:
    await seed(store)
    seen: list[Mapping[str, datetime]] = []

    def plan(view: RoundView) -> IssuedRows:
        seen.append(dict(view.keys))
        assert (view.agents, view.claimed) == ({}, frozenset())
        rows = IssuedRows(now=NOW)
        rows.credentials = [new_credential("urn:uuid:new-1", 100), new_credential("urn:uuid:new-2", 101)]
        rows.refresh_tokens = [new_refresh("rt_new_1"), new_refresh("rt_new_2")]
        rows.audit_events = [
            new_event("token.issued", AuditOutcome.SUCCESS, {"grant_type": "client_credentials", "n": [1, 2]}),
            new_event("token.denied", AuditOutcome.FAILURE, None),
        ]
        rows.touched = {"key_live"}
        return rows

    await store.ports.record_round(["key_live", "key_revoked", "key_of_gone", "key_expired", "key_unknown"], plan)

    # Live: active key of an active agent - expiry is stage 1's check, made before the round.
    updated = AGENTS["agt_root"]["updated_at"]
    assert seen == [{"key_live": updated, "key_expired": updated}]
    assert all(instant.tzinfo is not None for instant in seen[0].values())
    async with store.neutral() as session:
        for index, jti in enumerate(("urn:uuid:new-1", "urn:uuid:new-2")):
            row = new_credential(jti, 100 + index)
            expected = Credential(**{**row, "kind": CredentialKind.ACCESS, "scopes": tuple(row["scopes"])})
            assert await credentials_repo.get(session, jti) == expected
        refresh = (await session.execute(select(RefreshTokenRow).where(RefreshTokenRow.family_id == "rtf_new"))).all()
        assert sorted((r[0].id, r[0].expires_at, r[0].scopes, r[0].status) for r in refresh) == [
            (token, ROUND + timedelta(days=7), ["api.write"], RefreshTokenStatus.ACTIVE)
            for token in ("rt_new_1", "rt_new_2")
        ]
        events = await audit_repo.list_for_tenant(session, "agt_root", limit=10)
        assert [(e.action, e.outcome, e.reason, e.details, e.created_at) for e in reversed(events)] == [
            ("token.issued", AuditOutcome.SUCCESS, None, {"grant_type": "client_credentials", "n": [1, 2]}, NOW),
            ("token.denied", AuditOutcome.FAILURE, "r\u00e9ason", None, NOW),
        ]
        touched = await api_keys_repo.get(session, "key_live")
        untouched = await api_keys_repo.get(session, "key_expired")
    assert touched is not None and touched.last_used_at == NOW
    assert untouched is not None and untouched.last_used_at == ROUND
    # What the round wrote is what the lookups read, live until it expires.
    states = await store.ports.token_states(["urn:uuid:new-1", "urn:uuid:new-2"])
    assert {jti: s.live_at(NOW) for jti, s in states.items()} == {"urn:uuid:new-1": True, "urn:uuid:new-2": True}
    assert not states["urn:uuid:new-1"].live_at(ROUND + timedelta(minutes=15))
    if store.sqlite:
        await assert_stored_as_sqlalchemy_stores(store)


async def test_an_issuing_round_claims_each_assertion_once_for_a_live_unchanged_agent(store: Store) -> None:
    """``private_key_jwt`` requests in an issuing round: their agents' state, and each (signer, jti) recorded as
    used once - a replay (used before, or twice in the round) is skipped without failing the round, and an
    assertion whose agent changed or is gone is not used up (its request is judged again)."""
    await seed(store)
    root, gone = AGENTS["agt_root"], AGENTS["agt_gone"]
    later = NOW + timedelta(minutes=5)

    def use(jti: str, agent: dict[str, Any] = root, seen: datetime | None = None) -> AssertionUse:
        return AssertionUse(agent["id"], seen or agent["updated_at"], agent["did"], jti, later)

    views: list[RoundView] = []

    def plan(view: RoundView) -> IssuedRows:
        views.append(view)
        return IssuedRows(now=NOW)

    first = [use("j-1"), use("j-2"), use("j-1"), use("j-stale", seen=CREATED), use("j-gone", gone)]
    await store.ports.record_round([], plan, first)
    await store.ports.record_round([], plan, [use("j-2"), use("j-3"), use("j-stale")])
    assert views[0].agents == {"agt_root": root["updated_at"]} and views[0].keys == {}
    assert views[0].claimed == {("did:key:z6MkRoot", "j-1"), ("did:key:z6MkRoot", "j-2")}
    assert views[1].claimed == {("did:key:z6MkRoot", "j-3"), ("did:key:z6MkRoot", "j-stale")}
    async with store.neutral() as session:
        rows = await session.execute(select(UsedAssertionRow.issuer, UsedAssertionRow.jti, UsedAssertionRow.expires_at))
        used = [(row[0], row[1], row[2]) for row in rows]
    assert sorted(used) == [("did:key:z6MkRoot", j, later) for j in ("j-1", "j-2", "j-3", "j-stale")]


def code_row(code_hash: str, agent_id: str, expires_at: datetime, used_at: datetime | None = None) -> dict[str, Any]:
    return {"code_hash": code_hash, "client_id": "https://client.example/app", "redirect_uri": "http://127.0.0.1/cb",
            "redirect_uri_given": True, "code_challenge": "c" * 43, "owner_id": "own_1", "agent_id": agent_id,
            "agent_acts": True, "tenant_id": "agt_root", "scopes": ["agents.read"], "resources": None,
            "family_id": f"fam_{code_hash}", "created_at": CREATED, "expires_at": expires_at,
            "used_at": used_at}  # fmt: skip


async def test_an_issuing_round_spends_each_code_once_for_a_live_agent(store: Store) -> None:
    """``authorization_code`` redemptions in an issuing round: one statement spends the codes still unused and
    unexpired whose agent is active - a code used before, expired, or named twice in the round is spent at most
    once, and a code whose agent is gone is left unused; nothing fails the round."""
    await seed(store)
    later = NOW + timedelta(minutes=1)
    async with store.neutral.begin() as session:
        await session.execute(insert(AuthorizationCodeRow), [
            code_row("h-fresh", "agt_root", later), code_row("h-twice", "agt_root", later),
            code_row("h-used", "agt_root", later, used_at=CREATED), code_row("h-expired", "agt_root", NOW),
            code_row("h-gone", "agt_gone", later),
        ])  # fmt: skip
    views: list[RoundView] = []

    def plan(view: RoundView) -> IssuedRows:
        views.append(view)
        return IssuedRows(now=NOW)

    named = ("h-fresh", "h-twice", "h-twice", "h-used", "h-expired", "h-gone", "h-unknown")
    redemptions = [CodeRedemption(h, "agt_gone" if h == "h-gone" else "agt_root", NOW) for h in named]
    await store.ports.record_round([], plan, (), redemptions)
    await store.ports.record_round([], plan, (), redemptions[:2])
    assert views[0].agents == {"agt_root": AGENTS["agt_root"]["updated_at"]}
    assert views[0].redeemed == {"h-fresh", "h-twice"} and views[1].redeemed == set()
    async with store.neutral() as session:
        rows = await session.execute(select(AuthorizationCodeRow.code_hash, AuthorizationCodeRow.used_at))
        used = {row[0]: row[1] for row in rows}
    assert used == {"h-fresh": NOW, "h-twice": NOW, "h-used": CREATED, "h-expired": None, "h-gone": None}


async def assert_stored_as_sqlalchemy_stores(store: Store) -> None:
    """SQLite compares DATETIME as text: a row stored in another format would sort and compare wrongly. Each
    instant must be the text SQLAlchemy's own SQLite DATETIME writes, each JSON value JSON."""
    to_text = DATETIME().bind_processor(store.engine.dialect)
    assert to_text is not None
    async with store.engine.connect() as conn:
        raw = (
            await conn.execute(
                text("SELECT issued_at, expires_at, scopes FROM credentials WHERE jti = 'urn:uuid:new-1'")
            )
        ).one()
        used = await conn.scalar(text("SELECT last_used_at FROM api_keys WHERE id = 'key_live'"))
        details = await conn.scalar(text("SELECT details FROM audit_events WHERE action = 'token.issued'"))
    naive = [value.replace(tzinfo=None) for value in (NOW, ROUND + timedelta(minutes=15), NOW)]
    assert (raw[0], raw[1], used) == tuple(to_text(value) for value in naive)
    assert raw[2].replace(" ", "") == '["api.write","agents.read"]'
    assert details.replace(" ", "") == '{"grant_type":"client_credentials","n":[1,2]}'


async def test_a_failing_round_records_nothing_and_says_why(store: Store) -> None:
    await seed(store)
    before = await audit_count(store)

    def duplicate(view: RoundView) -> IssuedRows:
        rows = IssuedRows(now=NOW, touched={"key_live"})
        rows.audit_events = [new_event("token.issued", AuditOutcome.SUCCESS, None)]
        rows.credentials = [new_credential("urn:uuid:new-1", 100), new_credential("urn:uuid:live", 101)]
        return rows

    with pytest.raises(Conflict) as conflict:
        await store.ports.record_round(["key_live"], duplicate)
    assert (conflict.value.error, conflict.value.status_code) == ("conflict", 409)

    def broken(view: RoundView) -> IssuedRows:
        raise ValueError("the plan failed")

    with pytest.raises(ValueError, match="the plan failed"):  # not a storage failure: propagates as it is
        await store.ports.record_round(["key_live"], broken)

    assert await audit_count(store) == before
    assert set(await store.ports.token_states(["urn:uuid:new-1"])) == set()
    async with store.neutral() as session:
        key = await api_keys_repo.get(session, "key_live")
    assert key is not None and key.last_used_at is None


# -- revocation rounds ----------------------------------------------------------------------------------------


def audit_of(seen: list[tuple[list[Revoked], list[RevokedFamily]]]) -> Any:
    def audit(revoked: Sequence[Revoked], families: Sequence[RevokedFamily]) -> list[dict[str, Any]]:
        seen.append((list(revoked), list(families)))
        return [new_event(f"{r.kind}_credential.revoked", AuditOutcome.SUCCESS, {"jti": r.jti}) for r in revoked] + [
            new_event("refresh_token.revoked", AuditOutcome.SUCCESS, {"family": f.family_id}) for f in families
        ]

    return audit


async def test_a_revocation_round_revokes_live_credentials_and_every_pair(store: Store) -> None:
    await seed(store)
    seen: list[tuple[list[Revoked], list[RevokedFamily]]] = []
    jtis = ["urn:uuid:live", "urn:uuid:revoked", "urn:uuid:expired", "urn:uuid:not-ours", "urn:uuid:live"]
    before = await audit_count(store)

    revoked = await store.ports.revoke_round(jtis, NOW, audit_of(seen))

    assert revoked == [Revoked("urn:uuid:live", CredentialKind.ACCESS, "agt_root", "rtf_1")]
    # The pair of a credential already revoked or expired is revoked too: its refresh family may still be alive.
    assert seen == [
        (
            revoked,
            [
                RevokedFamily("rtf_1", "agt_root", "urn:uuid:live"),
                RevokedFamily("rtf_2", "agt_root", "urn:uuid:revoked"),
                RevokedFamily("rtf_3", "agt_root", "urn:uuid:expired"),
            ],
        )
    ]
    assert await audit_count(store) == before + 4
    assert await list_version(store) == 1
    async with store.neutral() as session:
        statuses = dict((await session.execute(select(RefreshTokenRow.id, RefreshTokenRow.status))).all())
        live = await credentials_repo.get(session, "urn:uuid:live")
        already = await credentials_repo.get(session, "urn:uuid:revoked")
    assert statuses == {"rt_1": "revoked", "rt_2": "revoked", "rt_3a": "revoked", "rt_3b": "revoked", "rt_9": "active"}
    assert live is not None and live.revoked_at == NOW and not live.live_at(NOW)
    assert already is not None and already.revoked_at == ROUND  # not revoked again
    state = (await store.ports.token_states(["urn:uuid:live"]))["urn:uuid:live"]
    assert state.revoked_at == NOW and not state.live_at(NOW)

    # Again: nothing left to revoke, nothing recorded, no version bump.
    again: list[tuple[list[Revoked], list[RevokedFamily]]] = []
    assert await store.ports.revoke_round(jtis, NOW + timedelta(seconds=1), audit_of(again)) == []
    assert again == [([], [])]
    assert await audit_count(store) == before + 4
    assert await list_version(store) == 1


async def test_a_revocation_round_of_unknown_credentials_changes_nothing(store: Store) -> None:
    await seed(store)
    seen: list[tuple[list[Revoked], list[RevokedFamily]]] = []
    assert await store.ports.revoke_round(["urn:uuid:not-ours", "urn:uuid:identity-x"], NOW, audit_of(seen)) == []
    assert seen == [([], [])]
    assert await list_version(store) == 0


# -- status blocks ------------------------------------------------------------------------------------------


async def test_status_blocks_are_reserved_once_and_fill_the_list(store: Store) -> None:
    await seed(store)
    assert await store.ports.reserve_blocks(LIST_ID, [5, 3], NOW, per_list=4) == [3, 5]
    assert await store.ports.reserve_blocks(LIST_ID, [7, 3], ROUND, per_list=4) == [7]  # 3 is taken: skipped
    assert await store.ports.reserve_blocks(LIST_ID, [], NOW, per_list=4) == []
    async with store.neutral() as session:
        row = await session.get(StatusListRow, LIST_ID)
        assert row is not None and (row.allocated, row.state) == (3, StatusListState.OPEN)
        blocks = dict((await session.execute(select(StatusBlockRow.block, StatusBlockRow.reserved_at))).all())
    assert blocks == {3: NOW, 5: NOW, 7: ROUND}

    assert await store.ports.reserve_blocks(LIST_ID, [1, 2], NOW, per_list=4) == [1, 2]  # 5 of 4: full
    async with store.neutral() as session:
        row = await session.get(StatusListRow, LIST_ID, populate_existing=True)
        assert row is not None and (row.allocated, row.state) == (5, StatusListState.FULL)
    assert await store.ports.reserve_blocks(LIST_ID, [9], NOW, per_list=4) == []  # not open any more
    assert await store.ports.reserve_blocks(999, [1], NOW, per_list=4) == []  # no such list


# -- failures ---------------------------------------------------------------------------------------------------


async def test_a_database_failure_is_temporarily_unavailable_on_every_port(store: Store) -> None:
    await seed(store)
    async with store.engine.begin() as conn:
        await conn.execute(text("DROP TABLE policy_versions"))
        await conn.execute(text("DROP TABLE status_blocks"))

    with pytest.raises(TemporarilyUnavailable):
        await store.ports.token_states(["urn:uuid:live"])
    with pytest.raises(TemporarilyUnavailable):
        await store.ports.reserve_blocks(LIST_ID, [1], NOW, per_list=4)
    async with store.engine.begin() as conn:
        await conn.execute(text("DROP TABLE delegations"))
    with pytest.raises(TemporarilyUnavailable):
        await store.ports.agent_page(expected_agent("agt_root"), NOW, 10, 0, peers=True)
    with pytest.raises(TemporarilyUnavailable):
        await store.ports.visible_agent(expected_agent("agt_root"), "agt_root", NOW, peers=True)
    # The other ports still work: a failure is the statement's, not the connection's for good.
    assert set(await store.ports.api_keys_with_agents(["ak_live_p1"])) == {"ak_live_p1"}


# -- write plans --------------------------------------------------------------------------------------------

# Re-checks as plans hold them: module constants, values bound by name.
TOUCH_ACTIVE_AGENT = (
    update(AgentRow)
    .where(AgentRow.id == bindparam("agent"), AgentRow.status == AgentStatus.ACTIVE)
    .values(updated_at=bindparam("now"))
)
ACTIVE_AGENT = select(AgentRow.id).where(AgentRow.id == bindparam("agent"), AgentRow.status == AgentStatus.ACTIVE)


def new_agent(agent_id: str, did: str) -> dict[str, Any]:
    # No description, identity credential or deactivation given: Insert.of makes them NULL.
    row = page_agent(agent_id, agent_id, f"/{agent_id}/", NOW)
    return {k: v for k, v in row.items() if k not in ("description", "identity_credential_id", "deactivated_at")} | {
        "did": did, "updated_at": NOW, "scopes": ["agents.read", "api.write"]
    }  # fmt: skip


def agent_plan(agent_id: str, did: str, *checks: Require) -> WritePlan:
    event = {**new_event("agent.registered", AuditOutcome.SUCCESS, {"n": [1]}), "target_id": agent_id}
    return WritePlan((
        Insert.of(AuditEventRow.__table__, event),  # before the failing step: undone with its plan
        *checks,
        Insert.of(AgentRow.__table__, new_agent(agent_id, did)),
    ))  # fmt: skip


async def stored_agents(store: Store) -> dict[str, Agent]:
    async with store.neutral() as session:
        rows = (await session.scalars(select(AgentRow))).all()
    return {row.id: agents_repo.to_record(row) for row in rows}


async def audited_targets(store: Store) -> list[str | None]:
    async with store.neutral() as session:
        return sorted((await session.scalars(select(AuditEventRow.target_id))).all(), key=str)


async def test_plans_write_exactly_their_rows(store: Store) -> None:
    await seed(store)
    check = Require(TOUCH_ACTIVE_AGENT, {"agent": "agt_root", "now": NOW}, 1, Conflict("root changed"))

    await store.ports.run(agent_plan("agt_new", "did:key:z6MkNew", check))

    row = new_agent("agt_new", "did:key:z6MkNew")
    expected = Agent(**{**row, "status": AgentStatus.ACTIVE, "scopes": tuple(row["scopes"]), "description": None,
                        "identity_credential_id": None, "deactivated_at": None})  # fmt: skip
    agents = await stored_agents(store)
    assert agents["agt_new"] == expected and agents["agt_new"].created_at.microsecond == NOW.microsecond
    assert agents["agt_root"].updated_at == NOW  # the checking UPDATE took effect
    async with store.neutral() as session:
        event = (await session.scalars(select(AuditEventRow))).one()
    assert (event.action, event.target_id, event.details, event.created_at) == ("agent.registered", "agt_new",
                                                                                 {"n": [1]}, NOW)  # fmt: skip


async def test_a_failing_plan_undoes_only_itself_in_its_round(store: Store) -> None:
    await seed(store)
    plans = [
        agent_plan("agt_a", "did:key:z6MkA"),
        agent_plan("agt_taken", AGENTS["agt_root"]["did"]),  # unique did:key taken: Conflict, its audit row undone
        agent_plan("agt_b", "did:key:z6MkB"),
        # A re-check that fails: its error, nothing of the plan stays.
        agent_plan("agt_refused", "did:key:z6MkR", Require(ACTIVE_AGENT, {"agent": "agt_gone"}, 1, Conflict("gone"))),
        agent_plan("agt_c", "did:key:z6MkC", Require(ACTIVE_AGENT, {"agent": "agt_root"}, 1, Conflict("no root"))),
    ]

    results = await asyncio.gather(*(store.ports.run(plan) for plan in plans), return_exceptions=True)

    assert results[0] is None and results[2] is None and results[4] is None
    taken, refused = results[1], results[3]
    assert isinstance(taken, Conflict) and taken.description == "an agent with this did:key is already registered"
    assert isinstance(refused, Conflict) and refused.description == "gone"
    assert set(await stored_agents(store)) == {*AGENTS, "agt_a", "agt_b", "agt_c"}
    assert await audited_targets(store) == ["agt_a", "agt_b", "agt_c"]
    # The port still writes after failures.
    await store.ports.run(agent_plan("agt_d", "did:key:z6MkD"))
    assert "agt_d" in await stored_agents(store)


# -- general reads and unconditional steps ------------------------------------------------------------------

KEYS_OF_AGENT = (
    select(*ApiKeyRow.__table__.columns, AgentRow.updated_at.label("agent_updated_at"))
    .join(AgentRow, AgentRow.id == ApiKeyRow.agent_id)
    .where(ApiKeyRow.agent_id == bindparam("agent"))
    .order_by(ApiKeyRow.id)
)
LIVE_FAMILIES = (
    select(RefreshTokenRow.family_id, func.count())
    .where(RefreshTokenRow.status == RefreshTokenStatus.ACTIVE)
    .group_by(RefreshTokenRow.family_id)
    .order_by(RefreshTokenRow.family_id)
)
DEACTIVATE = (
    update(AgentRow)
    .where(AgentRow.id == bindparam("agent"))
    .values(status=AgentStatus.DEACTIVATED, deactivated_at=bindparam("now"), scopes=bindparam("scopes"))
)


async def test_fetch_reads_every_query_with_values_converted(store: Store) -> None:
    await seed(store)

    keys, families, none = await store.ports.fetch(
        Query(KEYS_OF_AGENT, {"agent": "agt_root"}), Query(LIVE_FAMILIES), Query(KEYS_OF_AGENT, {"agent": "agt_x"})
    )

    columns = tuple(ApiKeyRow.__table__.columns)
    records = [api_keys_repo.to_record(row_as(columns, row[: len(columns)])) for row in keys]
    assert records == [expected_key(k) for k in ("key_expired", "key_live", "key_revoked")]
    # A labelled column of another table, converted as its type converts it (aware, microseconds kept).
    assert {row[-1] for row in keys} == {AGENTS["agt_root"]["updated_at"]}
    assert families == [("rtf_1", 1), ("rtf_2", 1), ("rtf_3", 1), ("rtf_9", 1)]
    assert none == []


async def test_execute_steps_change_rows_without_a_count(store: Store) -> None:
    await seed(store)
    unknown = Execute(DEACTIVATE, {"agent": "agt_none", "now": NOW, "scopes": []})  # no row: not an error
    gone = Execute(DEACTIVATE, {"agent": "agt_root", "now": NOW, "scopes": ["agents.read"]})

    await store.ports.run(WritePlan((unknown, gone)))

    root = (await stored_agents(store))["agt_root"]
    assert (root.status, root.deactivated_at, root.scopes) == (AgentStatus.DEACTIVATED, NOW, ("agents.read",))


# -- coalesced write rounds (storage/write_rounds.py) -------------------------------------------------------
# One round each, run directly: checks first, then one insert per table for every plan whose checks passed.

REVOKE_AGENT_CREDENTIALS = (
    update(CredentialRow)
    .where(CredentialRow.agent_id == bindparam("agent"), CredentialRow.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
)


def token_plan(jti: str, index: int, *checks: Require | Execute) -> WritePlan:
    event = {**new_event("token.issued", AuditOutcome.SUCCESS, None), "target_id": jti}
    return WritePlan((
        *checks,
        Insert.of(CredentialRow.__table__, new_credential(jti, index)),
        Insert.of(AuditEventRow.__table__, event),
    ))  # fmt: skip


async def stored_jtis(store: Store) -> dict[str, datetime | None]:
    async with store.neutral() as session:
        rows = (await session.execute(select(CredentialRow.jti, CredentialRow.revoked_at))).all()
    return {jti: revoked for jti, revoked in rows if jti.startswith("urn:uuid:t-")}


async def test_a_coalesced_round_fails_each_refused_plan_alone(store: Store) -> None:
    await seed(store)
    root = Require(ACTIVE_AGENT, {"agent": "agt_root"}, 1, Conflict("no root"))
    touch_gone = Require(TOUCH_ACTIVE_AGENT, {"agent": "agt_gone", "now": NOW}, 1, Conflict("x"))
    touch_root = Require(TOUCH_ACTIVE_AGENT, {"agent": "agt_root", "now": NOW}, 1, root.error)
    plans = [
        token_plan("urn:uuid:t-1", 200, root),
        token_plan("urn:uuid:t-2", 201, Require(ACTIVE_AGENT, {"agent": "agt_gone"}, 1, Conflict("gone"))),
        # An UPDATE re-check that matches no row: refused, nothing of it written.
        token_plan("urn:uuid:t-3", 202, touch_gone),
        token_plan("urn:uuid:t-4", 203, root, touch_root),
        token_plan("urn:uuid:t-5", 204),
    ]  # fmt: skip

    results = await store.ports._plans_round(plans)

    assert [type(r).__name__ if r else None for r in results] == [None, "Conflict", "Conflict", None, None]
    assert set(await stored_jtis(store)) == {"urn:uuid:t-1", "urn:uuid:t-4", "urn:uuid:t-5"}
    assert await audited_targets(store) == ["urn:uuid:t-1", "urn:uuid:t-4", "urn:uuid:t-5"]
    assert (await stored_agents(store))["agt_root"].updated_at == NOW


async def test_a_taken_unique_value_in_a_coalesced_round_fails_only_its_plan(store: Store) -> None:
    await seed(store)
    plans = [
        token_plan("urn:uuid:t-1", 200),
        token_plan("urn:uuid:t-2", 201),
        token_plan("urn:uuid:t-1", 202),  # the same jti again in the same round
        token_plan("urn:uuid:live", 203),  # a jti already stored
        token_plan("urn:uuid:t-3", 204),
    ]

    results = await store.ports._plans_round(plans)

    assert results[0] is None and results[1] is None and results[4] is None
    assert isinstance(results[2], Conflict) and isinstance(results[3], Conflict)
    assert set(await stored_jtis(store)) == {"urn:uuid:t-1", "urn:uuid:t-2", "urn:uuid:t-3"}
    assert await audited_targets(store) == ["urn:uuid:t-1", "urn:uuid:t-2", "urn:uuid:t-3"]


async def test_a_check_sees_the_rows_earlier_plans_of_its_round_inserted(store: Store) -> None:
    # A revocation after an issuance in the same round must revoke the token just issued, not miss it.
    await seed(store)
    revoke = Execute(REVOKE_AGENT_CREDENTIALS, {"agent": "agt_root", "now": NOW})
    counted = Require(select(CredentialRow.jti).where(CredentialRow.jti == "urn:uuid:t-1"), {}, 1, Conflict("unseen"))
    plans = [token_plan("urn:uuid:t-1", 200), WritePlan((revoke,)), token_plan("urn:uuid:t-2", 201, counted)]

    results = await store.ports._plans_round(plans)

    assert results == [None, None, None]
    assert await stored_jtis(store) == {"urn:uuid:t-1": NOW, "urn:uuid:t-2": None}


async def test_a_plan_refused_after_it_changed_rows_is_undone(store: Store) -> None:
    await seed(store)
    deactivate = Execute(DEACTIVATE, {"agent": "agt_root", "now": NOW, "scopes": []})
    refused = Require(ACTIVE_AGENT, {"agent": "agt_gone"}, 1, Conflict("gone"))
    plans = [token_plan("urn:uuid:t-1", 200), token_plan("urn:uuid:t-2", 201, deactivate, refused)]

    results = await store.ports._plans_round(plans)

    assert results[0] is None and isinstance(results[1], Conflict) and results[1].description == "gone"
    assert (await stored_agents(store))["agt_root"].status == AgentStatus.ACTIVE  # the deactivation undone
    assert set(await stored_jtis(store)) == {"urn:uuid:t-1"}
