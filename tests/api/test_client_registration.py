"""RFC 7591 dynamic client registration at the ``registration_endpoint`` (issue 14 item 3), on SQLite and
PostgreSQL: a success echoes the metadata (section 3.2.1), a confidential client's secret is shown once and
stored only as its keyed hash, each section 3.2.2 error has its code and a description and stores nothing, the
``AGENTAUTH_REGISTRATION`` modes govern it as they govern quickstart, and each IP is rate-limited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from agentauth import paths
from agentauth.api.app import create_app
from agentauth.bootstrap import Services, build_services
from agentauth.storage.models import OAuthClientRow
from support import ISSUER_URL, assert_error, reset_postgres

pytestmark = pytest.mark.anyio
REGISTER = paths.REGISTER
NATIVE = {"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none", "client_name": "CLI"}


@pytest.fixture
async def make_client(settings_factory: Any, backend: str) -> AsyncIterator[Callable[..., Any]]:
    """An ASGI client on services built with ``overrides`` (one per test), closed at the end."""
    opened: list[tuple[Services, httpx.AsyncClient]] = []
    if backend == "postgres":
        await reset_postgres()

    async def make(**overrides: Any) -> tuple[Services, httpx.AsyncClient]:
        services = await build_services(settings_factory(**overrides))
        app = create_app(services=services)
        app.state.services = services
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
        http = httpx.AsyncClient(transport=transport, base_url=ISSUER_URL)
        opened.append((services, http))
        return services, http

    yield make
    for services, http in opened:
        await http.aclose()
        await services.close()


async def stored_clients(services: Services) -> list[OAuthClientRow]:
    async with services.sessions() as session:
        return list((await session.scalars(select(OAuthClientRow))).all())


async def test_public_client_registers_and_resolves(client: httpx.AsyncClient, services: Services) -> None:
    response = await client.post(REGISTER, json=NATIVE | {"logo_uri": "https://app.example/logo.png", "x-unknown": 1})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["client_id"].startswith("cli_")
    assert isinstance(body["client_id_issued_at"], int)
    assert "client_secret" not in body and "x-unknown" not in body
    assert body["redirect_uris"] == NATIVE["redirect_uris"]
    assert body["token_endpoint_auth_method"] == "none"
    assert body["grant_types"] == ["authorization_code"] and body["response_types"] == ["code"]
    assert body["client_name"] == "CLI" and body["logo_uri"] == "https://app.example/logo.png"
    resolved = await services.clients.resolve(body["client_id"])
    assert resolved is not None and resolved.source == "dcr" and resolved.is_public
    assert resolved.redirect_uris == ("http://127.0.0.1/callback",) and resolved.client_name == "CLI"
    assert await services.clients.resolve("cli_unknown") is None


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_confidential_client_secret_is_shown_once_and_stored_hashed(
    client: httpx.AsyncClient, services: Services, method: str
) -> None:
    metadata = {
        "redirect_uris": ["https://app.example/cb"],
        "token_endpoint_auth_method": method,
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "agents.read agents.read",
    }
    body = (await client.post(REGISTER, json=metadata)).json()
    secret = body["client_secret"]
    assert secret.startswith("cs_") and len(secret) >= 40 and body["client_secret_expires_at"] == 0
    assert body["scope"] == "agents.read"  # duplicates folded
    (row,) = await stored_clients(services)
    assert row.secret_hash == services.core.hasher.hash(secret) and secret not in str(row.document)
    async with services.sessions() as session:  # the raw secret is nowhere in the table
        dump = str((await session.execute(text("SELECT * FROM oauth_clients"))).all())
    assert secret not in dump
    assert (await services.clients.authenticate_secret(body["client_id"], secret)) is not None
    assert await services.clients.authenticate_secret(body["client_id"], secret + "x") is None
    assert await services.clients.authenticate_secret("cli_nobody", secret) is None
    resolved = await services.clients.resolve(body["client_id"])
    assert resolved is not None and resolved.token_endpoint_auth_method == method and not resolved.is_public


async def test_default_auth_method_is_client_secret_basic(client: httpx.AsyncClient) -> None:
    body = (await client.post(REGISTER, json={"redirect_uris": ["https://app.example/cb"]})).json()
    assert body["token_endpoint_auth_method"] == "client_secret_basic" and "client_secret" in body


BAD_REDIRECTS = {
    "missing": {},
    "empty list": {"redirect_uris": []},
    "not a list": {"redirect_uris": "https://app.example/cb"},
    "not a string": {"redirect_uris": [7]},
    "relative": {"redirect_uris": ["/callback"]},
    "fragment": {"redirect_uris": ["https://app.example/cb#frag"]},
    "http non-loopback": {"redirect_uris": ["http://app.example/cb"]},
    "http private ip": {"redirect_uris": ["http://10.0.0.1/cb"]},
    "javascript": {"redirect_uris": ["javascript:alert(1)"]},
    "data": {"redirect_uris": ["data:text/html,hi"]},
    "file": {"redirect_uris": ["file:///etc/passwd"]},
    "userinfo": {"redirect_uris": ["https://evil@app.example/cb"]},
    "too many": {"redirect_uris": [f"https://app.example/{i}" for i in range(11)]},
    "control char": {"redirect_uris": ["https://app.example/c\nb"]},
}
BAD_METADATA = {
    "auth method": {"token_endpoint_auth_method": "client_secret_jwt"},
    "private_key_jwt without keys": {"token_endpoint_auth_method": "private_key_jwt"},
    "grant type": {"grant_types": ["client_credentials"]},
    "implicit": {"response_types": ["token"]},
    "code without authorization_code": {"grant_types": ["refresh_token"], "response_types": ["code"]},
    "grant types not a list": {"grant_types": "authorization_code"},
    "logo not https": {"logo_uri": "http://app.example/logo.png"},
    "logo javascript": {"logo_uri": "javascript:alert(1)"},
    "logo unclosed bracket": {"logo_uri": "https://[oops/logo.png"},
    "client_name too long": {"client_name": "x" * 201},
    "client_name not text": {"client_name": 5},
    "scope with quote": {"scope": 'a"b'},
    "application_type": {"application_type": "desktop"},
    "contacts": {"contacts": "me@example.com"},
}


@pytest.mark.parametrize("case", BAD_REDIRECTS)
async def test_invalid_redirect_uri(client: httpx.AsyncClient, services: Services, case: str) -> None:
    response = await client.post(REGISTER, json={"token_endpoint_auth_method": "none", **BAD_REDIRECTS[case]})
    body = assert_error(response, 400, "invalid_redirect_uri", case)
    assert body["error_description"]
    assert await stored_clients(services) == []


@pytest.mark.parametrize("case", BAD_METADATA)
async def test_invalid_client_metadata(client: httpx.AsyncClient, services: Services, case: str) -> None:
    response = await client.post(REGISTER, json=NATIVE | BAD_METADATA[case])
    assert_error(response, 400, "invalid_client_metadata", case)
    assert await stored_clients(services) == []


@pytest.mark.parametrize(
    ("content", "content_type", "error"),
    [
        (b"{not json", "application/json", "invalid_client_metadata"),
        (b"[1, 2]", "application/json", "invalid_client_metadata"),
        (b"redirect_uris=https://a.example/cb", "application/x-www-form-urlencoded", "invalid_request"),
    ],
)
async def test_unusable_bodies(
    client: httpx.AsyncClient, services: Services, content: bytes, content_type: str, error: str
) -> None:
    response = await client.post(REGISTER, content=content, headers={"content-type": content_type})
    assert_error(response, 400, error)
    assert await stored_clients(services) == []


async def test_closed_registration_refuses(make_client: Any) -> None:
    services, http = await make_client(registration="closed")
    assert_error(await http.post(REGISTER, json=NATIVE), 403, "access_denied")
    assert await stored_clients(services) == []


async def test_token_registration_needs_the_initial_access_token(make_client: Any) -> None:
    services, http = await make_client(registration="token", registration_token="initial-secret-token")
    assert_error(await http.post(REGISTER, json=NATIVE), 401, "invalid_token")
    wrong = {"authorization": "Bearer initial-secret-tokem"}
    assert_error(await http.post(REGISTER, json=NATIVE, headers=wrong), 401, "invalid_token")
    assert await stored_clients(services) == []
    right = {"authorization": "Bearer initial-secret-token"}
    response = await http.post(REGISTER, json=NATIVE, headers=right)
    assert response.status_code == 201, response.text
    assert len(await stored_clients(services)) == 1


async def test_token_mode_without_a_configured_token_registers_nobody(make_client: Any) -> None:
    services, http = await make_client(registration="token")
    assert_error(await http.post(REGISTER, json=NATIVE, headers={"authorization": "Bearer x"}), 401, "invalid_token")
    assert await stored_clients(services) == []


async def test_registration_is_rate_limited_per_ip(make_client: Any) -> None:
    services, http = await make_client(client_registration_rate_per_ip=3)
    statuses = [(await http.post(REGISTER, json=NATIVE)).status_code for _ in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
    limited = await http.post(REGISTER, json=NATIVE)
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    async with services.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OAuthClientRow)) == 3


async def test_an_agent_is_a_confidential_client(client: httpx.AsyncClient, services: Services) -> None:
    tenant = (await client.post(paths.QUICKSTART, json={"name": "bot", "agent_type": "tool"})).json()
    agent_id = tenant["agent"]["id"]
    resolved = await services.clients.resolve(agent_id)
    assert resolved is not None and resolved.source == "agent" and resolved.redirect_uris == ()
    assert resolved.token_endpoint_auth_method == "client_secret_basic" and not resolved.is_public
    assert "client_credentials" in resolved.grant_types
    assert await services.clients.resolve("agt_doesnotexist") is None
    assert await services.clients.resolve("") is None
    assert await services.clients.resolve("something-else") is None
