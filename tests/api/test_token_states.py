"""The SQLite hot-path lookups (one hop, the sqlite3 module) read exactly what SQLAlchemy reads.

Every authenticated request looks its token or API key up; on SQLite those lookups skip SQLAlchemy's ORM and
convert the columns themselves. These tests compare the two, field by field, over rows of every shape: tokens
revoked and not, with and without a client id, agents active and deactivated, with and without a description,
tenants with and without a policy version; API keys active, revoked, rotated, named, expiring, used; and keys
that are not ours.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from api_support import client_credentials, make_tenant, ok
from sqlalchemy import text

from agentauth.bootstrap import Services
from agentauth.storage.db import SqliteSessionMaker
from agentauth.storage.sqlalchemy_ports import SqlAlchemyPorts
from agentauth.storage.sqlite_onehop import SqliteOneHopPorts
from support import ISSUER_URL, bearer, quickstart

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

    assert isinstance(services.ports.token_states, SqliteOneHopPorts)
    fast = await services.ports.token_states.token_states(jtis)
    slow = await SqlAlchemyPorts(services.sessions, reads).token_states(jtis)

    assert fast == slow
    assert len(fast) == len(jtis) - 2
    assert fast[jti_of(revoked)].revoked_at is not None
    assert fast[jti_of(token)].policy_version > 0 and fast[jti_of(plain["access_token"])].policy_version == 0
    assert fast[jti_of(deactivated["access_token"])].agent.deactivated_at is not None
    assert all(state.expires_at.tzinfo is not None for state in fast.values())


async def test_sqlite_api_key_lookup_equals_the_orm_lookup(client: httpx.AsyncClient, services: Services) -> None:
    reads = services.core.reads
    if not isinstance(reads, SqliteSessionMaker):
        pytest.skip("SQLite only")
    tenant = await make_tenant(client, "keys")  # the root's key (used) and the child's key
    auth = bearer(tenant.token)
    named = {"name": "ci", "scopes": ["api.read"], "expires_in_days": 30}
    ok(await client.post("/api/v1/credentials", json=named, headers=auth), 201)
    revoked = ok(await client.post("/api/v1/credentials", json={}, headers=auth), 201)
    ok(await client.post(f"/api/v1/credentials/{revoked['id']}/revoke", headers=auth))
    rotated = ok(await client.post(f"/api/v1/credentials/{tenant.child_key['id']}/rotate", headers=auth))
    deactivated = await quickstart(client, "gone")
    ok(await client.post(f"/api/v1/agents/{deactivated['agent']['id']}/deactivate",
                         headers=bearer(deactivated["access_token"])))  # fmt: skip
    async with reads() as session:
        prefixes = [prefix for (prefix,) in await session.execute(text("SELECT prefix FROM api_keys"))]
    assert len(prefixes) == 6, prefixes  # root, child (rotated away), its replacement, named, revoked, gone
    assert rotated["id"] != tenant.child_key["id"]
    prefixes += ["ak_live_unknown", ISSUER_URL]

    assert isinstance(services.ports.client_keys, SqliteOneHopPorts)
    fast = await services.ports.client_keys.api_keys_with_agents(prefixes)
    slow = await SqlAlchemyPorts(services.sessions, reads).api_keys_with_agents(prefixes)

    assert fast == slow
    assert len(fast) == 6
    keys = [key for key, _ in fast.values()]
    assert {key.status for key in keys} >= {"active", "revoked"}
    assert any(key.expires_at is not None and key.name == "ci" for key in keys)
    assert any(key.last_used_at is not None for key in keys) and any(key.replaced_by for key in keys)
    assert any(agent.deactivated_at is not None for _, agent in fast.values())
