"""The authorization code grant for AgentAuth's own API named by any of its identifiers (RFC 8707 ``resource`` =
the issuer URL, its REST API or its MCP endpoint - what an MCP client sends for ``/mcp``), at /authorize and again
at the token endpoint, on SQLite and PostgreSQL; and the pages' Referrer-Policy, under which browsers still send
``Origin`` on the forms' POSTs. Both found by the MCP conformance suite driving a real browser
(tests/conformance): the token endpoint refused ``resource=<issuer>/mcp`` after a consent for it, and Chromium
sent ``Origin: null`` under ``no-referrer``, which the pages' Origin check refuses."""

from __future__ import annotations

import httpx
import pytest
from test_authorization_code import REDIRECT, consent, owner_with_tenant, pkce, redirected, register

from agentauth import paths
from agentauth.bootstrap import Services
from support import ISSUER_URL, assert_error, ok

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("resource", [ISSUER_URL, f"{ISSUER_URL}{paths.MCP}", f"{ISSUER_URL}{paths.API_V1}"])
async def test_own_api_by_any_identifier(client: httpx.AsyncClient, services: Services, resource: str) -> None:
    client_id = await register(client)
    await owner_with_tenant(client, services, "grace@example.com")
    verifier, challenge = pkce()
    query = {
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "s",
        "code_challenge": challenge, "code_challenge_method": "S256", "resource": resource,
    }  # fmt: skip
    code = redirected(await consent(client, query))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            "client_id": client_id, "resource": resource}  # fmt: skip
    tokens = ok(await client.post(paths.TOKEN, data=form))
    claims = services.tokens.self_verifier().verify_access_token(tokens["access_token"]).claims
    assert claims["aud"] == ISSUER_URL


async def test_own_api_consent_does_not_cover_another_resource(client: httpx.AsyncClient, services: Services) -> None:
    client_id = await register(client)
    await owner_with_tenant(client, services, "hopper@example.com")
    verifier, challenge = pkce()
    query = {
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "s",
        "code_challenge": challenge, "code_challenge_method": "S256", "resource": f"{ISSUER_URL}{paths.MCP}",
    }  # fmt: skip
    code = redirected(await consent(client, query))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            "client_id": client_id, "resource": "https://files.example.com/mcp"}  # fmt: skip
    assert_error(await client.post(paths.TOKEN, data=form), 400, "invalid_target")


async def test_pages_let_browsers_send_origin(client: httpx.AsyncClient) -> None:
    # Fetch "append a request Origin header": under no-referrer a form POST's Origin is "null"; same-origin keeps
    # it for this site's own forms and still sends no Referer anywhere else.
    for path in (paths.LOGIN, paths.SIGNUP):
        answer = await client.get(path)
        assert answer.headers["referrer-policy"] == "same-origin", path
