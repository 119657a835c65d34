"""The token endpoint through the grant registry (issue 13 item 3): the served OpenAPI form and metadata list
exactly the registered grants; a grant registered in a test registry is dispatched to and advertised; refusals
reach the audit trail exactly once, whichever path recorded them; URLs in documents and credentials are the
ones issued before the registry (verifiers rely on them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from api_support import TOKEN
from sqlalchemy import text

from agentauth.api.app import create_app
from agentauth.bootstrap import Services
from agentauth.errors import InvalidGrant
from agentauth.issuer.context import RequestContext
from agentauth.issuer.grants import GRANTS, Grant, GrantRegistry, Parameter
from agentauth.issuer.grants.base import param
from agentauth.issuer.schemas import TokenResponse
from agentauth.issuer.tokens import TokenService
from support import ISSUER_URL, assert_error, ok, quickstart

pytestmark = pytest.mark.anyio

FAKE = "urn:example:params:oauth:grant-type:fake"
EXCHANGE_PARAMS = ("subject_token", "subject_token_type", "actor_token", "actor_token_type")


class FakeGrant(Grant):
    grant_type = FAKE
    parameters = (Parameter("fake_code", "A code only this grant reads.", required=True),)

    async def handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        code = param(params, "fake_code", required=True)
        if code != "good":
            raise InvalidGrant("the fake code is wrong", debug=f"fake code {code}")
        now = datetime.now(UTC)
        return TokenResponse(access_token=f"fake-{code}", expires_in=1, scope="", expires_at=now, refresh_before=now)


async def audit_rows(services: Services, request_id: str) -> list[tuple[str, str, str]]:
    async with services.engine.connect() as conn:
        result = await conn.execute(
            text("SELECT action, outcome, reason FROM audit_events WHERE request_id = :r"), {"r": request_id}
        )
        return [(row[0], row[1], row[2]) for row in result]


async def test_the_served_openapi_form_lists_exactly_the_registered_grants(client: httpx.AsyncClient) -> None:
    document = ok(await client.get("/openapi.json"))
    operation = document["paths"][TOKEN]["post"]
    schema = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert schema["properties"]["grant_type"]["enum"] == [
        "client_credentials",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "authorization_code",
        "urn:openid:params:grant-type:ciba",
    ]
    assert set(schema["properties"]) == {"grant_type"} | {p.name for g in GRANTS for p in g.parameters}
    for name in EXCHANGE_PARAMS:
        assert "token-exchange" in schema["properties"][name]["description"], name
    assert operation["summary"] == (
        "Token endpoint (RFC 6749): client_credentials, refresh_token, jwt-bearer, token-exchange, authorization_code, "
        "ciba"
    )


async def test_metadata_lists_the_registered_grants_and_the_urls_issued_so_far(client: httpx.AsyncClient) -> None:
    metadata = ok(await client.get("/.well-known/oauth-authorization-server"))
    config = ok(await client.get("/.well-known/agent-configuration"))
    assert metadata["grant_types_supported"] == config["grant_types_supported"] == list(GRANTS.grant_types)
    assert metadata["token_endpoint"] == f"{ISSUER_URL}/api/v1/auth/token"
    assert metadata["introspection_endpoint"] == f"{ISSUER_URL}/api/v1/auth/introspect"
    assert metadata["revocation_endpoint"] == f"{ISSUER_URL}/api/v1/auth/revoke"
    assert metadata["registration_endpoint"] == f"{ISSUER_URL}/api/v1/auth/register"
    assert config["endpoints"] == {
        "authorization_endpoint": f"{ISSUER_URL}/authorize",
        "token_endpoint": f"{ISSUER_URL}/api/v1/auth/token",
        "registration_endpoint": f"{ISSUER_URL}/api/v1/auth/register",
        "jwks_uri": f"{ISSUER_URL}/.well-known/jwks.json",
        "did_document": f"{ISSUER_URL}/.well-known/did.json",
        "agents_endpoint": f"{ISSUER_URL}/api/v1/agents",
        "quickstart_endpoint": f"{ISSUER_URL}/api/v1/agents/quickstart",
        "credentials_endpoint": f"{ISSUER_URL}/api/v1/credentials",
        "delegations_endpoint": f"{ISSUER_URL}/api/v1/delegations",
        "policies_endpoint": f"{ISSUER_URL}/api/v1/policies",
        "evaluate_endpoint": f"{ISSUER_URL}/api/v1/policies/evaluate",
        "introspection_endpoint": f"{ISSUER_URL}/api/v1/auth/introspect",
        "revocation_endpoint": f"{ISSUER_URL}/api/v1/auth/revoke",
        "backchannel_authentication_endpoint": f"{ISSUER_URL}/api/v1/auth/bc-authorize",
        "audit_endpoint": f"{ISSUER_URL}/api/v1/audit/events",
        "status_lists_endpoint": f"{ISSUER_URL}/api/v1/status-lists",
        "mcp_endpoint": f"{ISSUER_URL}/mcp",
        "openapi": f"{ISSUER_URL}/openapi.json",
        "docs": f"{ISSUER_URL}/docs",
    }


async def test_status_list_urls_and_the_jwt_bearer_audience_are_unchanged(services: Services) -> None:
    assert services.core.token_endpoint == f"{ISSUER_URL}/api/v1/auth/token"
    entry = await services.status.allocate()
    list_id = int(entry.list_url.rsplit("/", 1)[1])
    assert entry.list_url == f"{ISSUER_URL}/api/v1/status-lists/{list_id}" == services.status.list_url(list_id)


async def test_a_grant_of_a_test_registry_is_dispatched_and_advertised(services: Services) -> None:
    services.tokens = TokenService(
        services.core, services.api_keys, services.clients, GrantRegistry(*GRANTS, FakeGrant)
    )
    app = create_app(services=services)
    app.state.services = services
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as client:
        answer = ok(await client.post(TOKEN, data={"grant_type": FAKE, "fake_code": "good"}))
        assert answer["access_token"] == "fake-good"
        refused = await client.post(
            TOKEN, data={"grant_type": FAKE, "fake_code": "bad"}, headers={"x-request-id": "fake-refused"}
        )
        assert_error(refused, 400, "invalid_grant")
        unknown = await client.post(
            TOKEN, data={"grant_type": "urn:example:other"}, headers={"x-request-id": "fake-unknown"}
        )
        assert_error(unknown, 400, "unsupported_grant_type")
        metadata = ok(await client.get("/.well-known/oauth-authorization-server"))
        config = ok(await client.get("/.well-known/agent-configuration"))
    assert metadata["grant_types_supported"] == config["grant_types_supported"] == [*GRANTS.grant_types, FAKE]
    # The fake grant does not record its own refusals: the token endpoint does, once; an unknown grant is none.
    assert await audit_rows(services, "fake-refused") == [("token.denied", "failure", f"{FAKE}: fake code bad")]
    assert await audit_rows(services, "fake-unknown") == []


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"grant_type": "client_credentials"}, "client_credentials: no client_secret"),
        ({"grant_type": "client_credentials", "client_secret": "ak_live_" + "x" * 43}, "client_credentials: "),
        ({"grant_type": "refresh_token", "refresh_token": "rt_unknown"}, "refresh_token: unknown refresh token"),
    ],
    ids=["no-secret", "unknown-key", "unknown-refresh-token"],
)
async def test_each_refused_grant_is_audited_exactly_once(
    client: httpx.AsyncClient, services: Services, form: dict[str, str], reason: str
) -> None:
    await quickstart(client, "audited")
    response = await client.post(TOKEN, data=form, headers={"x-request-id": "refused-once"})
    assert response.status_code in (400, 401), response.text
    rows = await audit_rows(services, "refused-once")
    assert len(rows) == 1, rows
    assert rows[0][:2] == ("token.denied", "failure")
    assert rows[0][2].startswith(reason), rows
