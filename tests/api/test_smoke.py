"""First contact: quickstart, a token, a protected route - through the real app and database."""

from __future__ import annotations

import httpx
import pytest

from support import bearer, quickstart

pytestmark = pytest.mark.anyio


async def test_quickstart_token_and_protected_route(client: httpx.AsyncClient) -> None:
    registered = await quickstart(client, "smoke")
    assert registered["agent"]["did"].startswith("did:key:z6Mk")
    assert registered["api_key"].startswith("ak_live_")
    token = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials", "client_secret": registered["api_key"], "scope": "agents.read"},
    )
    assert token.status_code == 200, token.text
    assert token.headers["cache-control"] == "no-store"
    body = token.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "agents.read"
    listing = await client.get("/api/v1/agents", headers=bearer(body["access_token"]))
    assert listing.status_code == 200
    assert [a["id"] for a in listing.json()["items"]] == [registered["agent"]["id"]]
