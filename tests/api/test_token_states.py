"""The SQLite hot-path lookup of token states (one hop, the sqlite3 module) reads exactly what the ORM reads.

Every authenticated request looks its token up; on SQLite that lookup skips SQLAlchemy's ORM and converts the
columns itself. This compares the two, field by field, over credentials that cover every shape a row can take:
revoked and not, with and without a client id, agents active and deactivated, with and without a description,
tenants with and without a policy version, and jtis that are not ours.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from api_support import client_credentials, make_tenant, ok

from agentauth.bootstrap import Services
from agentauth.storage import lookups
from agentauth.storage.db import SqliteSessionMaker
from support import bearer, quickstart

pytestmark = pytest.mark.anyio


def jti_of(jwt: str) -> str:
    payload = jwt.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


async def test_sqlite_lookup_equals_the_orm_lookup(client: httpx.AsyncClient, services: Services) -> None:
    reads = services.core.reads
    if not isinstance(reads, SqliteSessionMaker):
        pytest.skip("SQLite only")
    with_policy = await make_tenant(client, "with-policy")  # a policy version, a child with a description
    plain = await quickstart(client, "no-policy")  # no policy version row at all
    token = with_policy.root["access_token"]
    revoked = (await client_credentials(client, with_policy.root["api_key"]))["access_token"]
    revoking = {"token": revoked, "client_secret": with_policy.root["api_key"]}
    assert (await client.post("/api/v1/auth/revoke", data=revoking)).status_code == 200
    ok(await client.patch(f"/api/v1/agents/{with_policy.child['id']}", json={"description": "reads reports"},
                          headers=bearer(token)))  # fmt: skip
    deactivated = await quickstart(client, "deactivated")
    ok(await client.post(f"/api/v1/agents/{deactivated['agent']['id']}/deactivate",
                         headers=bearer(deactivated["access_token"])))  # fmt: skip
    exchanged = with_policy.child_token
    jtis = [
        jti_of(jwt)
        for jwt in (
            token,
            revoked,
            exchanged,
            with_policy.root["identity_credential"],
            with_policy.delegation["credential"],
            plain["access_token"],
            deactivated["access_token"],
        )
    ] + ["urn:uuid:00000000-0000-7000-8000-000000000000", "not ours"]

    fast = await lookups.token_states(reads, jtis)
    async with reads() as session:
        slow = await lookups._token_states(session, jtis)

    assert fast == slow
    assert len(fast) == len(jtis) - 2
    assert fast[jti_of(revoked)].revoked_at is not None
    assert fast[jti_of(token)].policy_version > 0 and fast[jti_of(plain["access_token"])].policy_version == 0
    assert fast[jti_of(deactivated["access_token"])].agent.deactivated_at is not None
    assert all(state.expires_at.tzinfo is not None for state in fast.values())
