"""``GET /api/v1/delegations?role=subtree``: every delegation of the tenant granted in the caller's subtree - for
the tenant root all of them, re-delegations by delegates included (what the console draws) -, nothing of another
tenant's, and for an agent that granted nothing below itself, nothing."""

from __future__ import annotations

import httpx
import pytest
from delegation_support import build_chain

from support import bearer, ok, quickstart

pytestmark = pytest.mark.anyio


async def test_the_root_sees_every_delegation_of_its_tenant(client: httpx.AsyncClient) -> None:
    chain = await build_chain(client, hops=3)
    everything = ok(await client.get("/api/v1/delegations?role=subtree", headers=bearer(chain.root["access_token"])))
    assert [d["id"] for d in everything["items"]] == [d["id"] for d in chain.delegations]
    assert everything["total"] == 3
    own = ok(await client.get("/api/v1/delegations", headers=bearer(chain.root["access_token"])))
    assert own["total"] < 3  # its own list is what the root is party to: the first hop only

    last = chain.agents[2]["token"]  # the last delegate's own token: it granted nothing
    assert ok(await client.get("/api/v1/delegations?role=subtree", headers=bearer(last)))["total"] == 0

    other = await quickstart(client, "other tenant")
    assert (
        ok(await client.get("/api/v1/delegations?role=subtree", headers=bearer(other["access_token"])))["items"] == []
    )

    wrong = await client.get("/api/v1/delegations?role=everyone", headers=bearer(chain.root["access_token"]))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_request"
