"""Weak Ed25519 keys as agent identities (issue 12 item 2): registration refuses them, and the jwt-bearer grant
cannot be reached with one, even for a key stored before the check existed.

The attack: register the identity point (or any small-order point) as an agent's did:key through quickstart;
anyone who knows the DID then "signs" jwt-bearer assertions with R = identity, S = 0 and mints tokens for it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from security_support import JWT_BEARER, TOKEN, TOKEN_ENDPOINT_URL, assert_unchanged, snapshot
from sqlalchemy import text

from agentauth.bootstrap import Services
from support import assert_error, bearer, quickstart
from weak_keys import IDENTITY_KEY, WEAK_ENCODINGS, did_of, forged_assertion, jwk_of

pytestmark = pytest.mark.anyio

QUICKSTART, AGENTS = "/api/v1/agents/quickstart", "/api/v1/agents"


async def test_a_forged_assertion_under_a_small_order_key_registered_by_quickstart_mints_no_token(
    client: httpx.AsyncClient,
) -> None:
    """On main: quickstart stores the identity point as a did:key and the forged assertion gets a token."""
    did = did_of(IDENTITY_KEY)
    registered = await client.post(QUICKSTART, json={"name": "nobody", "agent_type": "tool", "public_key": did})
    forged = forged_assertion(IDENTITY_KEY, TOKEN_ENDPOINT_URL, datetime.now(UTC))
    minted = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": forged})
    assert minted.status_code != 200, f"a forged assertion (R = identity, S = 0) minted a token: {minted.text}"
    assert_error(minted, 400, "invalid_grant")
    body = assert_error(registered, 400, "invalid_request")
    assert "weak key" in body["error_description"] and "small order" in body["error_description"]


def _public_keys() -> list[tuple[str, Any]]:
    return [(f"did {label}", did_of(raw)) for label, raw in WEAK_ENCODINGS] + [
        (f"jwk {label}", jwk_of(raw)) for label, raw in WEAK_ENCODINGS
    ]


async def test_quickstart_refuses_every_weak_did_key_and_jwk_and_stores_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    before = await snapshot(services)
    for label, public_key in _public_keys():
        answer = await client.post(QUICKSTART, json={"name": "w", "agent_type": "tool", "public_key": public_key})
        body = assert_error(answer, 400, "invalid_request", label)
        assert body["error_description"].startswith("public_key:") and "weak key" in body["error_description"], label
    await assert_unchanged(services, before, "by a refused quickstart")


async def test_child_creation_refuses_every_weak_did_key_and_jwk_and_stores_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    root = await quickstart(client, "parent")
    before = await snapshot(services)
    for label, public_key in _public_keys():
        body = {"name": "w", "agent_type": "tool", "public_key": public_key}
        answer = await client.post(AGENTS, json=body, headers=bearer(root["access_token"]))
        description = assert_error(answer, 400, "invalid_request", label)["error_description"]
        assert "weak key" in description, label
    await assert_unchanged(services, before, "by a refused child registration")


@pytest.mark.parametrize(("label", "raw"), WEAK_ENCODINGS, ids=[label for label, _ in WEAK_ENCODINGS])
async def test_jwt_bearer_refuses_a_weak_key_stored_before_the_check(
    client: httpx.AsyncClient, services: Services, label: str, raw: bytes
) -> None:
    """A database from before the fix may hold such a did:key: the grant still refuses every forged assertion."""
    victim = await quickstart(client, "legacy")
    async with services.engine.begin() as conn:
        await conn.execute(
            text("UPDATE agents SET did = :did WHERE id = :id"), {"did": did_of(raw), "id": victim["agent"]["id"]}
        )
    before = await snapshot(services)
    forged = forged_assertion(raw, TOKEN_ENDPOINT_URL, datetime.now(UTC))
    assert_error(await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": forged}), 400, "invalid_grant")
    await assert_unchanged(services, before, f"by a forged assertion under {label}")
