"""An agent's DPoP requirement (issue 15 item 2), on SQLite and PostgreSQL: ``require_dpop`` refuses bearer
issuance at every grant, ``bind_to_agent_key`` refuses any proof key but the agent's own did:key - so ``cnf.jkt``
is the thumbprint of ``sub``'s key and a verifier holding only the JWKS checks identity and possession with one
key. Set on an agent, a requirement holds for its whole subtree: children start at their parent's, raising it
raises the subtree, and nobody below can lower it under the parent's."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from api_support import make_child
from delegation_support import delegate, exchange
from joserfc import jws
from joserfc.jwk import OKPKey
from test_dpop_token_endpoint import access_tokens

from agentauth import paths
from agentauth.bootstrap import Services
from agentauth.did import decode_did_key
from agentauth.keys import KeyPair, PublicKey
from agentauth.vc import create_agent_assertion, create_proof
from agentauth.vc.dpop import access_token_hash
from support import ISSUER_URL, assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio
TOKEN_URL = f"{ISSUER_URL}{paths.TOKEN}"
AGENTS = f"{paths.API_V1}/agents"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def other_key_proof(key: OKPKey | None = None, htm: str = "POST", htu: str = TOKEN_URL, **claims: str) -> str:
    """A valid proof (by default for the token endpoint), by a key that is nobody's did:key (built with joserfc)."""
    key = key or OKPKey.generate_key("Ed25519")
    header = {"typ": "dpop+jwt", "alg": "Ed25519", "jwk": key.as_dict(private=False)}
    body = {"jti": str(uuid.uuid4()), "htm": htm, "htu": htu, "iat": int(time.time()), **claims}
    return jws.serialize_compact(header, json.dumps(body).encode(), key, algorithms=["Ed25519"])


async def set_dpop(client: httpx.AsyncClient, token: str, agent_id: str, **fields: bool) -> httpx.Response:
    return await client.patch(f"{AGENTS}/{agent_id}", json=fields, headers=bearer(token))


def grant_forms(made: dict[str, Any], agent_key: KeyPair, services: Services) -> dict[str, dict[str, str]]:
    """A token request of each grant the agent can make on its own: API key, private_key_jwt, jwt-bearer and
    refresh (of the quickstart's family, issued before the requirement)."""
    now = services.core.clock()
    agent_id = made["agent"]["id"]
    return {
        "api key": {"grant_type": "client_credentials", "client_secret": made["api_key"]},
        "private_key_jwt": {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": create_agent_assertion(agent_key, audience=TOKEN_URL, now=now, client_id=agent_id),
        },
        "jwt-bearer": {
            "grant_type": JWT_BEARER,
            "assertion": create_agent_assertion(agent_key, audience=TOKEN_URL, now=now),
        },
        "refresh": {"grant_type": "refresh_token", "refresh_token": made["refresh_token"]},
    }


async def test_require_dpop_refuses_bearer_issuance_at_every_grant(
    client: httpx.AsyncClient, services: Services
) -> None:
    made = await quickstart(client, "strict")
    agent_key = KeyPair.from_jwk(made["private_key_jwk"])
    shown = ok(await set_dpop(client, made["access_token"], made["agent"]["id"], require_dpop=True))
    assert shown["require_dpop"] is True and shown["bind_to_agent_key"] is False
    before = await access_tokens(services)
    for grant, form in grant_forms(made, agent_key, services).items():
        refused = await client.post(paths.TOKEN, data=form)
        assert_error(refused, 400, "invalid_dpop_proof", grant)
        assert "must be DPoP-bound" in refused.json()["error_description"], grant
    assert await access_tokens(services) == before, "a refused request issued a token"
    # Nothing was used up: the same requests with a proof (any key) get DPoP-bound tokens.
    for grant, form in grant_forms(made, agent_key, services).items():
        issued = ok(await client.post(paths.TOKEN, data=form, headers={"DPoP": other_key_proof()}), 200)
        assert issued["token_type"] == "DPoP", grant
    # The API-key refusal is in the tenant's own audit log, saying why.
    key = OKPKey.generate_key("Ed25519")
    form = grant_forms(made, agent_key, services)["api key"]
    reader = ok(await client.post(paths.TOKEN, data=form, headers={"DPoP": other_key_proof(key)}))["access_token"]
    url = f"{ISSUER_URL}{paths.AUDIT_EVENTS}"
    headers = {"Authorization": f"DPoP {reader}",
               "DPoP": other_key_proof(key, "GET", url, ath=access_token_hash(reader))}  # fmt: skip
    audit = ok(await client.get(paths.AUDIT_EVENTS, params={"action": "token.denied"}, headers=headers))
    assert any("requires DPoP" in (event["reason"] or "") for event in audit["items"]), audit


async def test_bind_to_agent_key_refuses_any_other_proof_key(client: httpx.AsyncClient, services: Services) -> None:
    made = await quickstart(client, "bound")
    agent_key = KeyPair.from_jwk(made["private_key_jwk"])
    shown = ok(await set_dpop(client, made["access_token"], made["agent"]["id"], bind_to_agent_key=True))
    assert shown["require_dpop"] is True and shown["bind_to_agent_key"] is True
    before = await access_tokens(services)
    for grant, form in grant_forms(made, agent_key, services).items():
        refused = await client.post(paths.TOKEN, data=form, headers={"DPoP": other_key_proof()})
        assert_error(refused, 400, "invalid_dpop_proof", grant)
        assert "own did:key" in refused.json()["error_description"], grant
        assert_error(await client.post(paths.TOKEN, data=form), 400, "invalid_dpop_proof", grant)
    assert await access_tokens(services) == before
    # Signed by the agent's did:key: issued, and cnf.jkt is the thumbprint of sub's key - which anyone derives
    # from the DID itself, so an offline verifier checks possession against sub with the proof of a request.
    for grant, form in grant_forms(made, agent_key, services).items():
        issued = ok(
            await client.post(paths.TOKEN, data=form, headers={"DPoP": create_proof(agent_key, "POST", TOKEN_URL)})
        )
        claims = (
            services.tokens.self_verifier()
            .verify_access_token(issued["access_token"], proven_jkt=agent_key.public.thumbprint())
            .claims
        )
        assert claims["sub"] == made["agent"]["did"], grant
        assert claims["cnf"]["jkt"] == PublicKey.from_bytes(decode_did_key(claims["sub"])).thumbprint(), grant
    # The agent's own API takes it with a proof by the same key.
    token = issued["access_token"]
    me = f"{ISSUER_URL}{AGENTS}/{made['agent']['id']}"
    headers = {"Authorization": f"DPoP {token}",
               "DPoP": create_proof(agent_key, "GET", me, access_token=token)}  # fmt: skip
    assert ok(await client.get(f"{AGENTS}/{made['agent']['id']}", headers=headers))["bind_to_agent_key"] is True


async def test_a_requirement_holds_for_the_whole_subtree(client: httpx.AsyncClient) -> None:
    made = await quickstart(client, "tenant")
    root_token, root_id = made["access_token"], made["agent"]["id"]
    child, child_key, child_token = await make_child(client, root_token, "child")
    grandchild, _, _ = await make_child(client, child_token, "grandchild")
    assert child["require_dpop"] is False and child["bind_to_agent_key"] is False

    # Raising the root's (the tenant's setting) raises everyone below it.
    ok(await set_dpop(client, root_token, root_id, require_dpop=True))
    for agent in (child, grandchild):
        assert ok(await client.get(f"{AGENTS}/{agent['id']}", headers=bearer(root_token)))["require_dpop"] is True
    refused = await client.post(paths.TOKEN, data={"grant_type": "client_credentials",
                                                   "client_secret": child_key["raw_key"]})  # fmt: skip
    assert_error(refused, 400, "invalid_dpop_proof")

    # A new child starts at its parent's; asking for less is refused.
    created = ok(await client.post(AGENTS, json={"name": "new", "agent_type": "tool"}, headers=bearer(root_token)), 201)
    assert created["agent"]["require_dpop"] is True
    weaker = {"name": "weak", "agent_type": "tool", "require_dpop": False}
    assert_error(await client.post(AGENTS, json=weaker, headers=bearer(root_token)), 403, "access_denied")
    stronger = {"name": "strong", "agent_type": "tool", "bind_to_agent_key": True}
    strong = ok(await client.post(AGENTS, json=stronger, headers=bearer(root_token)), 201)["agent"]
    assert strong["require_dpop"] is True and strong["bind_to_agent_key"] is True

    # Below the parent's: refused, for the parent and the agent itself alike; the agent's own cannot go down at
    # all (only its parent's can), a root's can: it is the tenant's setting.
    assert_error(await set_dpop(client, root_token, child["id"], require_dpop=False), 403, "access_denied")
    ok(await set_dpop(client, root_token, child["id"], bind_to_agent_key=True))
    assert_error(await set_dpop(client, child_token, child["id"], bind_to_agent_key=False), 403, "access_denied")
    grand = ok(await client.get(f"{AGENTS}/{grandchild['id']}", headers=bearer(root_token)))
    assert grand["bind_to_agent_key"] is True, "raising the child raised its subtree"
    ok(await set_dpop(client, root_token, child["id"], bind_to_agent_key=False))  # back to the root's: allowed
    lowered = ok(await set_dpop(client, root_token, root_id, require_dpop=False))
    assert lowered["require_dpop"] is False
    # Lowering does not lower the subtree: what was required below stays required until changed there.
    kept = ok(await client.get(f"{AGENTS}/{grandchild['id']}", headers=bearer(root_token)))
    assert kept["bind_to_agent_key"] is True

    # Contradictions are 400 and change nothing.
    contradiction = await set_dpop(client, root_token, child["id"], require_dpop=False, bind_to_agent_key=True)
    assert_error(contradiction, 400, "invalid_request")
    assert ok(await client.get(f"{AGENTS}/{child['id']}", headers=bearer(root_token)))["require_dpop"] is True


async def test_token_exchange_applies_the_actors_requirement(client: httpx.AsyncClient) -> None:
    made = await quickstart(client, "lender")
    delegate_agent, key, delegate_token = await make_child(client, made["access_token"], "borrower")
    lent = ok(await delegate(client, made["access_token"], delegate_agent["id"], ["agents.read"]), 201)
    ok(await set_dpop(client, made["access_token"], delegate_agent["id"], require_dpop=True))
    refused = await exchange(client, lent["credential"], api_key=key["raw_key"])
    assert_error(refused, 400, "invalid_dpop_proof")
    data = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": lent["credential"],
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "client_secret": key["raw_key"]}  # fmt: skip
    issued = ok(await client.post(paths.TOKEN, data=data, headers={"DPoP": other_key_proof()}))
    assert issued["token_type"] == "DPoP"
    assert delegate_token  # issued before the requirement: bearer tokens already out stay valid until they expire


async def test_the_protected_resource_metadata_names_dpop(client: httpx.AsyncClient) -> None:
    """RFC 9728 section 2 for AgentAuth's own resources: DPoP proofs of these algorithms are accepted, and bearer
    tokens are too (whether an agent gets bound tokens is the agent's setting, not the resource's)."""
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        document = ok(await client.get(path))
        assert document["dpop_signing_alg_values_supported"] == ["EdDSA", "Ed25519", "ES256"], path
        assert document["dpop_bound_access_tokens_required"] is False, path
