"""Connected clients in the console (``/console/{tenant}/clients``): a client an owner consented to in the
authorization code flow is listed with what it may do; Disconnect withdraws the consent and revokes the grant -
the refresh token and the access tokens minted with it stop working at once -, and another owner can neither see
nor disconnect it (404, nothing changes)."""

from __future__ import annotations

import re

import httpx
import pytest
from security_support import INTROSPECT, TOKEN
from test_attack_authorization import code_for, owner, pkce, query, redeem_form, register

from agentauth import paths
from agentauth.bootstrap import Services
from support import ISSUER_URL, bearer, ok

pytestmark = pytest.mark.anyio


async def test_disconnecting_a_client_revokes_its_grant(client: httpx.AsyncClient, services: Services) -> None:
    client_id = (await register(client, grant_types=["authorization_code", "refresh_token"]))["client_id"]
    me = await owner(client, services, "ann@example.com")
    tenant = me["tenant"]["agent"]["id"]
    verifier, challenge = pkce()
    code = await code_for(client, query(client_id, challenge), act_as="agent")
    tokens = ok(await client.post(TOKEN, data=redeem_form(code, verifier, client_id)))
    assert ok(await client.get(paths.AGENTS, headers=bearer(tokens["access_token"])))

    page = await client.get(f"/console/{tenant}/clients")
    assert page.status_code == 200 and f'data-client-id="{client_id}"' in page.text

    # Another owner, with a session of their own and a tenant of their own.
    transport = client._transport  # the same app, another cookie jar
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as other:
        them = await owner(other, services, "bob@example.com")
        headers = {"Origin": ISSUER_URL}
        assert (await other.get(f"/console/{tenant}/clients")).status_code == 404
        for where in (tenant, them["tenant"]["agent"]["id"]):
            tried = await other.post(f"/console/{where}/clients/disconnect", headers=headers,
                                     data={"csrf_token": them["csrf"], "client_id": client_id})  # fmt: skip
            assert tried.status_code == 404, (where, tried.status_code)
    assert ok(await client.get(paths.AGENTS, headers=bearer(tokens["access_token"])))  # still connected
    assert (await client.post(f"/console/{tenant}/clients/disconnect", data={"client_id": client_id},
                              headers={"Origin": ISSUER_URL})).status_code == 403  # fmt: skip

    done = await client.post(f"/console/{tenant}/clients/disconnect", headers={"Origin": ISSUER_URL},
                             data={"csrf_token": me["csrf"], "client_id": client_id})  # fmt: skip
    assert done.status_code == 200 and "1 grant(s) revoked" in done.text, done.text
    assert f'data-client-id="{client_id}"' not in done.text and "id=no-clients" in done.text

    assert (await client.get(paths.AGENTS, headers=bearer(tokens["access_token"]))).status_code == 401
    refreshed = await client.post(TOKEN, data={"grant_type": "refresh_token", "client_id": client_id,
                                              "refresh_token": tokens["refresh_token"]})  # fmt: skip
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    seen = ok(await client.post(INTROSPECT, data={"token": tokens["access_token"],
                                                 "client_secret": me["tenant"]["api_key"]}))  # fmt: skip
    assert seen["active"] is False
    again = await client.post(f"/console/{tenant}/clients/disconnect", headers={"Origin": ISSUER_URL},
                              data={"csrf_token": me["csrf"], "client_id": client_id})  # fmt: skip
    assert again.status_code == 404 and re.search("holds no consent", again.text)
