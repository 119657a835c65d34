"""Registration modes (AGENTAUTH_REGISTRATION=open|token|closed) and the abuse limits on quickstart and the token
endpoint, each on services built with those settings (the fixtures' pattern, other settings)."""

from __future__ import annotations

from typing import Any

import pytest
from api_support import TOKEN, assert_unchanged, custom_client, row_counts, snapshot

from support import assert_error

pytestmark = pytest.mark.anyio

QUICKSTART = "/api/v1/agents/quickstart"
BODY = {"name": "newcomer", "agent_type": "assistant"}


async def test_closed_registration_refuses_everyone(settings_factory: Any, backend: str) -> None:
    async with custom_client(settings_factory, backend, registration="closed") as (services, client):
        before = await snapshot(services)
        for body in (BODY, BODY | {"registration_token": "anything"}):
            assert_error(await client.post(QUICKSTART, json=body), 403, "access_denied")
        await assert_unchanged(services, before)
        assert (await row_counts(services))["agents"] == 0
        config = (await client.get("/.well-known/agent-configuration")).json()
        assert config["registration"] == "closed"


async def test_token_registration_needs_the_right_token(settings_factory: Any, backend: str) -> None:
    async with custom_client(
        settings_factory, backend, registration="token", registration_token="bootstrap-s3cret"
    ) as (services, client):
        before = await snapshot(services)
        for token in (None, "", "wrong", "bootstrap-s3cre", "bootstrap-s3cret "):
            body = BODY if token is None else BODY | {"registration_token": token}
            response = await client.post(QUICKSTART, json=body)
            assert_error(response, 403, "access_denied")
            assert "bootstrap-s3cret" not in response.text
        await assert_unchanged(services, before)
        created = await client.post(QUICKSTART, json=BODY | {"registration_token": "bootstrap-s3cret"})
        assert created.status_code == 201, created.text
        assert (await row_counts(services))["agents"] == 1


async def test_open_registration_ignores_a_registration_token(settings_factory: Any, backend: str) -> None:
    async with custom_client(settings_factory, backend, registration="open") as (_, client):
        assert (await client.post(QUICKSTART, json=BODY | {"registration_token": "x"})).status_code == 201
        assert (await client.post(QUICKSTART, json=BODY)).status_code == 201


async def test_quickstart_rate_limit_per_ip(settings_factory: Any, backend: str) -> None:
    async with custom_client(settings_factory, backend, quickstart_rate_per_ip=2) as (services, client):
        for i in range(2):
            assert (await client.post(QUICKSTART, json=BODY | {"name": f"a{i}"})).status_code == 201
        before = await snapshot(services)
        limited = await client.post(QUICKSTART, json=BODY | {"name": "third"})
        assert_error(limited, 429, "rate_limited")
        retry_after = limited.headers["retry-after"]
        assert retry_after.isdigit() and 1 <= int(retry_after) <= 60
        await assert_unchanged(services, before)
        assert (await row_counts(services))["agents"] == 2


async def test_token_rate_limit_per_client(settings_factory: Any, backend: str) -> None:
    async with custom_client(settings_factory, backend, token_rate_per_client=3) as (services, client):
        first = (await client.post(QUICKSTART, json=BODY)).json()
        second = (await client.post(QUICKSTART, json=BODY | {"name": "other"})).json()
        grant = {"grant_type": "client_credentials", "client_secret": first["api_key"]}
        assert [(await client.post(TOKEN, data=grant)).status_code for _ in range(3)] == [200, 200, 200]
        before = await row_counts(services)
        limited = await client.post(TOKEN, data=grant)
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        assert await row_counts(services) == before
        # Per client: another agent's key is not limited by the first one's traffic.
        other = await client.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": second["api_key"]})
        assert other.status_code == 200, other.text
