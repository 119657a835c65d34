"""Attenuation over random delegation trees (issue 5, "Must show" 3): no token ever carries a scope its root
did not hold, and every refused request is refused with ``invalid_scope``.

Each example builds a tree of delegations through the REST API under a root agent R holding a random subset
of the scopes. Every delegate asks for a random subset of what its delegator holds - and sometimes, on
purpose, for a scope the delegator does not hold - then exchanges its delegation twice: for everything, and
for a random scope set (the answer must be requested intersected with delegated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from delegation_support import child_with_key, delegate, error_of, exchange
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentauth.issuer.scopes import ALL_SCOPES
from agentauth.vc import Verifier
from support import ISSUER_URL, bearer, quickstart

pytestmark = pytest.mark.anyio
MAX_NODES = 6
MAX_DEPTH = 4  # default max_chain_depth 3 at the root grant allows four hops
WRITE = "delegations.write"


@dataclass(frozen=True)
class Hop:
    node: int
    parent: int
    requested: frozenset[str]  # asked of the delegator
    overreach: bool  # ``requested`` holds a scope the delegator does not hold
    asked: frozenset[str]  # the scope of the narrowed exchange


@dataclass(frozen=True)
class Plan:
    root_scopes: frozenset[str]
    hops: tuple[Hop, ...]


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """A random tree (node 0 is R, depth at most MAX_DEPTH) and every request of the run, drawn up front.

    Drawing inside the async test would let Hypothesis abort an example from within the event loop; a plan
    keeps all drawing here. Nodes whose delegation is refused get no subtree.
    """
    others = [s for s in ALL_SCOPES if s != WRITE]
    root_scopes = frozenset({WRITE, *draw(st.sets(st.sampled_from(others), min_size=1))})
    held: dict[int, frozenset[str]] = {0: root_scopes}
    depth = {0: 0}
    hops = []
    for node in range(1, draw(st.integers(1, MAX_NODES)) + 1):
        # Only nodes that exist and may delegate (hold WRITE) can be parents.
        parents = sorted(n for n in held if depth[n] < MAX_DEPTH and WRITE in held[n])
        if not parents:
            break
        parent = draw(st.sampled_from(parents))
        requested = set(draw(st.sets(st.sampled_from(sorted(held[parent])), min_size=1)))
        if draw(st.booleans()):
            requested.add(WRITE)  # so that it can delegate in turn
        outside = sorted(set(ALL_SCOPES) - held[parent])
        overreach = bool(outside) and draw(st.integers(0, 2)) == 0
        if overreach:
            requested.add(draw(st.sampled_from(outside)))
        asked = frozenset(draw(st.sets(st.sampled_from(ALL_SCOPES), min_size=1)))
        hops.append(Hop(node, parent, frozenset(requested), overreach, asked))
        if not overreach:
            held[node], depth[node] = frozenset(requested), depth[parent] + 1
    return Plan(root_scopes, tuple(hops))


async def new_delegate(client: httpx.AsyncClient, root_token: str, name: str) -> dict[str, Any]:
    created = await client.post("/api/v1/agents", json={"name": name, "agent_type": "tool"}, headers=bearer(root_token))
    assert created.status_code == 201, created.text
    key = await client.post(
        "/api/v1/credentials", json={"agent_id": created.json()["agent"]["id"]}, headers=bearer(root_token)
    )
    assert key.status_code == 201, key.text
    return {"agent": created.json()["agent"], "key": key.json()["raw_key"]}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None)
@given(plan=plans())
async def test_no_token_carries_a_scope_its_root_did_not_hold(client: httpx.AsyncClient, plan: Plan) -> None:
    tenant = await quickstart(client, "tenant")
    r = await child_with_key(client, tenant["access_token"], "r", scopes=sorted(plan.root_scopes))
    jwks = (await client.get("/.well-known/jwks.json")).json()
    verifier = Verifier(issuer_url=ISSUER_URL, jwks=jwks, check_status=False)
    # node -> the token it delegates with (R's own, or the one it obtained by exchange).
    acting: dict[int, str] = {0: r["token"]}
    issued: list[str] = []
    refusals: list[tuple[str, httpx.Response]] = []

    for hop in plan.hops:
        agent = await new_delegate(client, tenant["access_token"], f"n{hop.node}")
        created = await delegate(client, acting[hop.parent], agent["agent"]["id"], sorted(hop.requested))
        if hop.overreach:
            refusals.append(("delegate", created))
            continue
        assert created.status_code == 201, created.text
        assert set(created.json()["scopes"]) == hop.requested
        credential = created.json()["credential"]

        full = await exchange(client, credential, api_key=agent["key"])
        assert full.status_code == 200, full.text
        assert set(full.json()["scope"].split()) == hop.requested
        issued.append(full.json()["access_token"])
        acting[hop.node] = full.json()["access_token"]

        narrowed = await exchange(client, credential, api_key=agent["key"], scope=" ".join(sorted(hop.asked)))
        if hop.asked & hop.requested:
            assert narrowed.status_code == 200, narrowed.text
            assert set(narrowed.json()["scope"].split()) == hop.asked & hop.requested
            issued.append(narrowed.json()["access_token"])
        else:
            refusals.append(("exchange", narrowed))

    for what, response in refusals:
        assert error_of(response) == (400, "invalid_scope"), (what, response.text)
    for token in issued:
        verified = verifier.verify_access_token(token, audience=ISSUER_URL)
        assert verified.subject == r["agent"]["did"]
        assert verified.scopes <= plan.root_scopes
        assert verified.chain[0].scopes <= plan.root_scopes
        for upper, lower in zip(verified.chain, verified.chain[1:], strict=False):
            assert lower.scopes <= upper.scopes
        assert verified.scopes <= verified.chain[-1].scopes
