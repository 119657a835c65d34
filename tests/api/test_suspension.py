"""The kill switch's reversible half (issue 17 item 3): suspending an agent stops its subtree here at once and for
offline verifiers at their next list fetch (the suspension bits of Bitstring Status List v1.0), revokes nothing,
and resuming restores everything - the same tokens, keys and delegations. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from lifecycle_support import (
    INACTIVE,
    TOKEN,
    audit_targets,
    child_with_key,
    delegate,
    exchange,
    fetch_list,
    introspect,
    jwt_payload,
)

from agentauth.bootstrap import Services
from agentauth.errors import NotFound
from agentauth.vc import StaticStatusLists, VerificationError, Verifier
from support import ISSUER_URL, bearer, quickstart, status_entry, status_urls

pytestmark = pytest.mark.anyio


async def offline(client: httpx.AsyncClient, token: str) -> str | None:
    """What a third party holding the JWKS and freshly fetched lists concludes: None (valid) or the refusal code."""
    credentials = [token, *jwt_payload(token).get("delegation_chain", [])]
    lists = StaticStatusLists()
    for credential in credentials:
        for url in status_urls(jwt_payload(credential)["vc"]):
            lists.put(url, (await fetch_list(client, urlsplit(url).path)).text)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    try:
        Verifier(issuer_url=ISSUER_URL, jwks=jwks, status_source=lists).verify_access_token(token)
    except VerificationError as exc:
        return exc.code
    return None


async def online(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/api/v1/agents", headers=bearer(token))).status_code


async def act(client: httpx.AsyncClient, token: str, agent_id: str, what: str) -> httpx.Response:
    return await client.post(f"/api/v1/agents/{agent_id}/{what}", headers=bearer(token))


async def agent_status(client: httpx.AsyncClient, token: str, agent_id: str) -> str:
    response = await client.get(f"/api/v1/agents/{agent_id}", headers=bearer(token))
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def key_works(client: httpx.AsyncClient, api_key: str) -> httpx.Response:
    return await client.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": api_key})


def suspension_index(token: str) -> tuple[str, int]:
    entry = status_entry(jwt_payload(token)["vc"], "suspension")
    return urlsplit(entry["statusListCredential"]).path, int(entry["statusListIndex"])


async def suspended_bit(client: httpx.AsyncClient, token: str) -> bool:
    path, index = suspension_index(token)
    published = (await fetch_list(client, path)).text
    jwks = (await client.get("/.well-known/jwks.json")).json()
    url = status_entry(jwt_payload(token)["vc"], "suspension")["statusListCredential"]
    verifier = Verifier(issuer_url=ISSUER_URL, jwks=jwks, status_source=StaticStatusLists({url: published}))
    return bool(verifier.status_list(url, verifier_now()).bits.get(index))


def verifier_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_every_credential_carries_a_revocation_and_a_suspension_entry_at_one_index(
    client: httpx.AsyncClient,
) -> None:
    root = await quickstart(client, "two-entries")
    for credential in (root["access_token"], root["identity_credential"]):
        vc = jwt_payload(credential)["vc"]
        revocation, suspension = status_entry(vc), status_entry(vc, "suspension")
        assert suspension["statusListIndex"] == revocation["statusListIndex"]
        assert suspension["statusListCredential"] == revocation["statusListCredential"] + "/suspension"
        listed = jwt_payload((await fetch_list(client, urlsplit(suspension["statusListCredential"]).path)).text)
        assert listed["vc"]["credentialSubject"]["statusPurpose"] == "suspension"
        assert listed["vc"]["id"] == suspension["statusListCredential"]
    assert await offline(client, root["access_token"]) is None
    assert (await client.get("/api/v1/status-lists/1/refresh")).status_code == 404


async def test_suspend_stops_the_subtree_everywhere_and_resume_restores_it(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "suspender")
    owner = root["access_token"]
    worker, worker_key, worker_token = await child_with_key(client, owner, "worker")
    helper, _, helper_token = await child_with_key(client, worker_token, "helper")  # below the worker
    bystander, _, bystander_token = await child_with_key(client, owner, "bystander")
    # The worker lends agents.read to the bystander (outside its subtree): the chain passes through the worker.
    grant = await delegate(client, worker_token, bystander["id"], ["agents.read"])
    lent = (await exchange(client, grant["credential"], bystander_token)).json()["access_token"]
    live = (worker_token, helper_token, lent)
    for token in (*live, bystander_token):
        assert await offline(client, token) is None and await online(client, token) == 200

    suspended = await act(client, owner, worker["id"], "suspend")
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended"
    assert await agent_status(client, owner, helper["id"]) == "suspended"
    for token in live:
        assert await online(client, token) == 401
        assert await introspect(client, owner, token) == INACTIVE
        assert await offline(client, token) == "suspended", token
    assert await suspended_bit(client, worker_token)
    refused = await key_works(client, worker_key)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    # The bystander itself is untouched: only what rests on the worker stops.
    assert await online(client, bystander_token) == 200 and await offline(client, bystander_token) is None
    assert await agent_status(client, owner, bystander["id"]) == "active"
    # Nothing was revoked: the keys and the delegation are as they were.
    keys = (await client.get("/api/v1/credentials", params={"agent_id": worker["id"]}, headers=bearer(owner))).json()
    assert [k["status"] for k in keys["items"]] == ["active"]
    stored = await client.get(f"/api/v1/delegations/{grant['id']}", headers=bearer(owner))
    assert stored.json()["status"] == "active"
    # Suspending again changes nothing; a suspended agent cannot be changed or lend anything.
    assert (await act(client, owner, worker["id"], "suspend")).json()["status"] == "suspended"
    renamed = await client.patch(f"/api/v1/agents/{worker['id']}", json={"name": "x"}, headers=bearer(owner))
    assert renamed.status_code == 409
    # Only the top of the suspension resumes.
    below = await act(client, owner, helper["id"], "resume")
    assert below.status_code == 409 and "parent is suspended" in below.json()["error_description"]

    resumed = await act(client, owner, worker["id"], "resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    assert await agent_status(client, owner, helper["id"]) == "active"
    for token in live:  # the very same tokens, again valid everywhere
        assert await online(client, token) == 200
        assert (await introspect(client, owner, token))["active"] is True
        assert await offline(client, token) is None
    assert not await suspended_bit(client, worker_token)
    assert (await key_works(client, worker_key)).status_code == 200
    assert sorted(await audit_targets(client, owner, "agent.suspended")) == sorted([worker["id"], helper["id"]])
    assert sorted(await audit_targets(client, owner, "agent.resumed")) == sorted([worker["id"], helper["id"]])


async def test_a_suspended_agent_can_then_be_revoked_for_good(client: httpx.AsyncClient) -> None:
    root = await quickstart(client, "suspend-then-revoke")
    owner = root["access_token"]
    worker, worker_key, worker_token = await child_with_key(client, owner, "worker")
    assert (await act(client, owner, worker["id"], "suspend")).status_code == 200
    assert await offline(client, worker_token) == "suspended"

    gone = await client.delete(f"/api/v1/agents/{worker['id']}", headers=bearer(owner))
    assert gone.status_code == 200 and gone.json()["status"] == "deactivated"
    assert await offline(client, worker_token) == "revoked"
    keys = (await client.get("/api/v1/credentials", params={"agent_id": worker["id"]}, headers=bearer(owner))).json()
    assert [k["status"] for k in keys["items"]] == ["revoked"]
    again = await act(client, owner, worker["id"], "resume")
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert (await act(client, owner, worker["id"], "suspend")).status_code == 409
    assert (await key_works(client, worker_key)).status_code == 401


async def test_who_may_suspend(client: httpx.AsyncClient) -> None:
    a, b = await quickstart(client, "tenant-a"), await quickstart(client, "tenant-b")
    worker, _, worker_token = await child_with_key(client, a["access_token"], "worker")
    # Another tenant: 404, nothing changes.
    foreign = await act(client, b["access_token"], worker["id"], "suspend")
    assert foreign.status_code == 404
    assert await agent_status(client, a["access_token"], worker["id"]) == "active"
    # An agent cannot suspend itself (its parent can), nor its parent.
    itself = await act(client, worker_token, worker["id"], "suspend")
    assert itself.status_code == 403 and itself.json()["error"] == "access_denied"
    parent = await act(client, worker_token, a["agent"]["id"], "suspend")
    assert parent.status_code in (403, 404)
    assert await online(client, worker_token) == 200
    # Without agents.write: refused by scope.
    narrow = (
        await client.post(
            TOKEN, data={"grant_type": "refresh_token", "refresh_token": a["refresh_token"], "scope": "agents.read"}
        )
    ).json()["access_token"]
    scoped = await act(client, narrow, worker["id"], "suspend")
    assert scoped.status_code == 403 and scoped.json()["error"] == "insufficient_scope"


async def test_the_kill_switch_report_names_each_list_and_when_verifiers_have_the_change(
    client: httpx.AsyncClient, services: Services
) -> None:
    """What the console shows after a kill switch (``AgentService.status_reach``): the lists holding the subtree's
    credentials; a list no verifier fetched has nothing to reach, a fetched one reaches verifiers one ttl after the
    last copy they could hold."""
    owner = (await quickstart(client, "reach"))["access_token"]
    worker, _, worker_token = await child_with_key(client, owner, "worker")
    as_root = await services.agents.operator_principal(worker["id"], "test")
    suspension_url = status_entry(jwt_payload(worker_token)["vc"], "suspension")["statusListCredential"]
    revocation_url = status_entry(jwt_payload(worker_token)["vc"])["statusListCredential"]
    assert (await act(client, owner, worker["id"], "suspend")).status_code == 200

    (unfetched,) = await services.agents.status_reach(as_root, worker["id"], "suspension")
    assert (unfetched.url, unfetched.purpose, unfetched.published_at, unfetched.reached_by) == (
        suspension_url, "suspension", None, None
    )  # fmt: skip
    await fetch_list(client, urlsplit(suspension_url).path)  # a verifier takes a copy, then the agent resumes
    assert (await act(client, owner, worker["id"], "resume")).status_code == 200
    (fetched,) = await services.agents.status_reach(as_root, worker["id"], "suspension")
    now, ttl = services.core.clock(), timedelta(seconds=services.settings.status_list_ttl_seconds)
    assert fetched.published_at is not None and fetched.reached_by is not None
    assert fetched.published_at + ttl <= fetched.reached_by <= now + ttl
    (revocation,) = await services.agents.status_reach(as_root, worker["id"], "revocation")
    assert revocation.url == revocation_url and revocation.reached_by is None
    # Only for an agent of the caller's own subtree.
    stranger = await services.agents.operator_principal((await quickstart(client, "stranger"))["agent"]["id"], "test")
    with pytest.raises(NotFound):
        await services.agents.status_reach(stranger, worker["id"], "suspension")
