"""Issue 15 must-show: with ``bind_to_agent_key`` a real ``agentauth serve`` refuses, at issuance, a DPoP proof
signed by any key but the agent's did:key; and a third party's *offline* verifier - holding nothing but the
issuer's JWKS and a copy of its status list - checks possession against ``sub``: the token's ``cnf.jkt`` is the
thumbprint of the key ``sub`` names, and the request's proof is signed by it (``DPoPSettings(require_agent_key=
True)``). A token of an agent without the setting, bound to some other key, passes an ordinary DPoP check and
fails this one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from dpop_support import joserfc_proof
from joserfc.jwk import OKPKey

from agentauth.keys import KeyPair
from agentauth.sdk import DPoPSettings, authenticate, offline_verifier
from agentauth.sdk.bearer import AGENT_KEY_DESCRIPTION, BearerError
from agentauth.vc import StaticStatusLists, VerifiedToken, create_proof
from agentauth.vc.jws import parse_compact
from live_server import LiveServer, start_issuer
from support import status_urls

RESOURCE = "https://reports.example.com"
URL = f"{RESOURCE}/reports"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_issuer(tmp_path_factory.mktemp("agent-key"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tenant(issuer: LiveServer) -> dict[str, str]:
    """A tenant whose root registered the resource server: (root token)."""
    made = httpx.post(f"{issuer.url}/api/v1/agents/quickstart", json={"name": "root", "agent_type": "orchestrator"})
    assert made.status_code == 201, made.text
    headers = {"Authorization": f"Bearer {made.json()['access_token']}"}
    server = {"identifier": RESOURCE, "name": "reports", "kind": "rest", "scopes": [{"name": "reports.read"}]}
    assert httpx.post(f"{issuer.url}/api/v1/resource-servers", json=server, headers=headers).status_code == 201
    return headers


def agent(
    issuer: LiveServer, http: httpx.Client, root: dict[str, str], *, bind: bool
) -> tuple[dict[str, Any], KeyPair]:
    """A child agent of the tenant (``bind_to_agent_key`` or not) with its API key: (its fields + api_key, its key)."""
    body = {"name": "signer", "agent_type": "tool", "bind_to_agent_key": bind}
    made = http.post(f"{issuer.url}/api/v1/agents", json=body, headers=root)
    assert made.status_code == 201, made.text
    child = made.json()
    assert child["agent"]["bind_to_agent_key"] is bind
    key = http.post(f"{issuer.url}/api/v1/credentials", json={"agent_id": child["agent"]["id"]}, headers=root)
    assert key.status_code == 201, key.text
    return {**child, "api_key": key.json()["raw_key"]}, KeyPair.from_jwk(child["private_key_jwk"])


def token(issuer: LiveServer, http: httpx.Client, made: dict[str, Any], proof: str) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_secret": made["api_key"], "resource": RESOURCE}
    return http.post(f"{issuer.url}/api/v1/auth/token", data=form, headers={"DPoP": proof})


def verify_offline(issuer: LiveServer, http: httpx.Client, access: str, proof: str) -> VerifiedToken:
    """What the third party runs: the JWKS and the token's status list, fetched once beforehand (here now), and
    nothing else - no call to the issuer while verifying."""
    jwks = http.get(f"{issuer.url}/.well-known/jwks.json").json()
    lists = StaticStatusLists({url: http.get(url).text for url in status_urls(parse_compact(access).payload["vc"])})
    verifier = offline_verifier(jwks, resource=RESOURCE, issuer_url=issuer.url, status_source=lists)
    settings = DPoPSettings(require_agent_key=True)
    return asyncio.run(
        authenticate(verifier, f"DPoP {access}", dpop=settings, dpop_proofs=[proof], method="GET", uri=URL)
    )


def test_bind_to_agent_key_end_to_end_with_an_offline_verifier(issuer: LiveServer, tenant: dict[str, str]) -> None:
    with httpx.Client(timeout=10) as http:
        made, key = agent(issuer, http, tenant, bind=True)
        token_url = f"{issuer.url}/api/v1/auth/token"
        # At issuance: a proof by any other key is refused (an Ed25519 key made by joserfc, and another did:key).
        for other in (OKPKey.generate_key("Ed25519"), KeyPair.generate()):
            if isinstance(other, KeyPair):
                proof = create_proof(other, "POST", token_url)
            else:
                proof = joserfc_proof(other, "POST", token_url, None)
            refused = token(issuer, http, made, proof)
            assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof", refused.text
        issued = token(issuer, http, made, create_proof(key, "POST", token_url))
        assert issued.status_code == 200 and issued.json()["token_type"] == "DPoP", issued.text
        access = issued.json()["access_token"]

        verified = verify_offline(issuer, http, access, create_proof(key, "GET", URL, access_token=access))
        assert verified.subject == made["agent"]["did"] and verified.bound_to_holder_key

        # An agent without the setting binds its token to whatever key it likes: a fine DPoP token, but not one
        # that proves the caller holds sub's key - the offline check refuses it.
        loose, _ = agent(issuer, http, tenant, bind=False)
        other = KeyPair.generate()
        bound_elsewhere = token(issuer, http, loose, create_proof(other, "POST", token_url)).json()["access_token"]
        with pytest.raises(BearerError) as refusal:
            verify_offline(issuer, http, bound_elsewhere, create_proof(other, "GET", URL, access_token=bound_elsewhere))
        assert refusal.value.status == 401 and refusal.value.description == AGENT_KEY_DESCRIPTION
