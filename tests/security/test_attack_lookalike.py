"""Unicode look-alike names (Unicode TR #36 "Unicode Security Considerations", TR #39 confusables): names are
labels, never identities. Agents named with a Cyrillic 'a' (U+0430) for a Latin 'a', zero-width joiners, right-to-left
overrides, other normal forms or fullwidth letters are stored exactly as sent (no folding, no normalization),
get distinct ids and did:keys, and one can never act as, see or be confused with the other."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from security_support import (
    JWT_BEARER,
    TOKEN,
    assert_unchanged,
    assertion_for,
    client_credentials,
    decode,
    make_child,
    snapshot,
)

from agentauth.bootstrap import Services
from support import assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio

# (label, the genuine name, its look-alike)
LOOKALIKES = [
    ("Cyrillic a", "paypal-agent", "p\u0430ypal-agent"),
    ("Cyrillic o and e", "root-operator", "r\u043e\u043et-op\u0435rator"),
    ("Greek omicron", "billing-bot", "billing-b\u03bft"),
    ("zero-width joiner", "paypal-agent", "pay\u200dpal-agent"),
    ("zero-width space", "paypal-agent", "pay\u200bpal-agent"),
    ("byte-order mark", "paypal-agent", "\ufeffpaypal-agent"),
    ("right-to-left override", "invoice-gnp.exe", "invoice-\u202egnp.exe"),
    ("NFC vs NFD", "caf\u00e9-agent", "cafe\u0301-agent"),
    ("fullwidth", "paypal-agent", "\uff50\uff41\uff59\uff50\uff41\uff4c-agent"),
    ("digit one for l", "paypal-agent", "paypa1-agent"),
    ("mathematical bold", "admin", "\U0001d41a\U0001d41d\U0001d426\U0001d422\U0001d427"),
]


def identity_name(created: dict[str, Any]) -> Any:
    subject = decode(created["identity_credential"])[1]["vc"]["credentialSubject"]
    return subject.get("name")


@pytest.mark.parametrize(("label", "genuine", "fake"), LOOKALIKES, ids=[x[0] for x in LOOKALIKES])
async def test_lookalike_root_agents_are_distinct_and_stored_exactly(
    client: httpx.AsyncClient, services: Services, label: str, genuine: str, fake: str
) -> None:
    assert genuine != fake
    real, spoof = await quickstart(client, genuine), await quickstart(client, fake)
    for created, name in ((real, genuine), (spoof, fake)):
        assert created["agent"]["name"] == name, f"{label}: stored {created['agent']['name']!r}, sent {name!r}"
        assert (
            ok(await client.get(f"/api/v1/agents/{created['agent']['id']}", headers=bearer(created["access_token"])))[
                "name"
            ]
            == name
        )
        assert identity_name(created) == name, "the signed identity credential carries the exact name"
    assert real["agent"]["id"] != spoof["agent"]["id"] and real["agent"]["did"] != spoof["agent"]["did"]
    assert real["agent"]["tenant_id"] != spoof["agent"]["tenant_id"]

    # The spoof cannot act as, see or change the genuine agent.
    before = await snapshot(services)
    spoof_auth = bearer(spoof["access_token"])
    assert_error(await client.get(f"/api/v1/agents/{real['agent']['id']}", headers=spoof_auth), 404, "not_found")
    renamed = await client.patch(f"/api/v1/agents/{real['agent']['id']}", json={"name": "x"}, headers=spoof_auth)
    assert_error(renamed, 404, "not_found")
    listed = ok(await client.get("/api/v1/agents", headers=spoof_auth))
    assert [a["id"] for a in listed["items"]] == [spoof["agent"]["id"]]
    # The genuine agent's id, DID or name as client_id with the spoof's key; a name is no client_id, not even
    # one's own.
    for client_id in (real["agent"]["id"], real["agent"]["did"], genuine, fake):
        data = {"grant_type": "client_credentials", "client_secret": spoof["api_key"], "client_id": client_id}
        assert_error(await client.post(TOKEN, data=data), 401, "invalid_client", f"client_id {client_id!r}")
    await assert_unchanged(services, before, f"by the {label} look-alike")

    # What the spoof can get is about the spoof: its own DID, its own tenant.
    minted = ok(await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion_for(spoof)}))
    claims = decode(minted["access_token"])[1]
    assert claims["sub"] == spoof["agent"]["did"] != real["agent"]["did"]
    assert claims["vc"]["credentialSubject"]["agentId"] == spoof["agent"]["id"]


async def test_lookalike_children_in_one_tenant_are_addressed_by_id_only(
    client: httpx.AsyncClient, services: Services
) -> None:
    root = await quickstart(client, "tenant")
    names = [genuine for _, genuine, _ in LOOKALIKES] + [fake for _, _, fake in LOOKALIKES]
    unique = list(dict.fromkeys(names))
    children = [await make_child(client, root["access_token"], name, scopes=["api.read"]) for name in unique]
    listed = ok(await client.get("/api/v1/agents", params={"limit": 100}, headers=bearer(root["access_token"])))
    by_id = {a["id"]: a["name"] for a in listed["items"]}
    assert len({c["agent"]["id"] for c in children}) == len(unique)
    assert len({c["agent"]["did"] for c in children}) == len(unique)
    for child, name in zip(children, unique, strict=True):
        assert by_id[child["agent"]["id"]] == name
    # A name is never accepted where an id is expected.
    before = await snapshot(services)
    for name in unique[:6]:
        response = await client.get(f"/api/v1/agents/{quote(name, safe='')}", headers=bearer(root["access_token"]))
        assert_error(response, 404, "not_found", f"GET by name {name!r}")
        body = {"delegate_agent_id": name, "scopes": ["api.read"]}
        delegated = await client.post("/api/v1/delegations", json=body, headers=bearer(root["access_token"]))
        assert_error(delegated, 404, "not_found", f"delegation to name {name!r}")
    await assert_unchanged(services, before, "by name lookups")
    # Each child's key yields that child's tokens only.
    for child in children[:4]:
        token = ok(await client_credentials(client, child["api_key"]))["access_token"]
        assert decode(token)[1]["sub"] == child["agent"]["did"]


async def test_duplicate_names_are_allowed_because_names_never_identify(client: httpx.AsyncClient) -> None:
    first, second = await quickstart(client, "same-name"), await quickstart(client, "same-name")
    assert first["agent"]["id"] != second["agent"]["id"] and first["agent"]["did"] != second["agent"]["did"]
    seen = await client.get(f"/api/v1/agents/{first['agent']['id']}", headers=bearer(second["access_token"]))
    assert_error(seen, 404, "not_found", "same name, other tenant")
