"""Authentication and authorization on every protected route, generated from the route table: missing, forged,
expired or wrong-kind tokens get 401 invalid_token with a Bearer challenge naming the error; a token lacking the
route's scope gets 403 insufficient_scope; nothing changes. And inputs the database cannot store must be
refused, never answered with 5xx."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from api_support import (
    TOKEN,
    Root,
    Tenant,
    assert_unchanged,
    basic,
    by_resource,
    client_credentials,
    lenient_client,
    make_root,
    make_tenant,
    snapshot,
    tenant_ids,
    valid_body,
)

from agentauth.bootstrap import Services
from agentauth.keys import KeyPair
from agentauth.storage import agents as agents_repo
from support import app_route_table, assert_error, bearer, fill_path, requires_principal

pytestmark = pytest.mark.anyio

PROTECTED = [(m, p, r) for m, p, r in app_route_table() if requires_principal(r)]
WRITE_SCOPES_MISSING = "api.read api.write agents.read credentials.read delegations.read policies.read audit.read"
READ_ONLY_POSTS = {"/api/v1/policies/evaluate"}


@pytest.fixture
async def world(client: httpx.AsyncClient) -> Root:
    return await make_root(client, "bad-auth")


@pytest.fixture
async def tenant(client: httpx.AsyncClient) -> Tenant:
    return await make_tenant(client, "bad-auth")


# -- authentication and authorization on every protected route (generated from the route table) -----------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _segments(jwt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = jwt.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(header))), json.loads(base64.urlsafe_b64decode(pad(payload)))


def _compact(header: dict[str, Any], payload: dict[str, Any], signer: KeyPair | None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = _b64(signer.sign(signing_input.encode())) if signer else ""
    return f"{signing_input}.{signature}"


async def _issuer_signed(services: Services, agent_id: str, now: datetime) -> str:
    """An access token really signed by the issuer, never recorded in the database (``now`` may be past)."""
    async with services.sessions() as session:
        agent = await agents_repo.get(session, agent_id)
    assert agent is not None
    jwt, _, _ = services.core.access_token_row(
        agent, ["agents.read"], status=await services.status.allocate(), now=now, client_id=agent.id,
        api_key_id=None, family_id=None,
    )  # fmt: skip
    return jwt


async def bad_credentials(services: Services, tenant: Tenant) -> dict[str, dict[str, str]]:
    """Authorization headers that must all be refused with 401 invalid_token."""
    token = tenant.token
    header, payload = _segments(token)
    head, body, signature = token.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    return {
        "no header": {},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage bearer": bearer("garbage"),
        "three garbage segments": bearer("a.b.c"),
        "payload tampered": bearer(f"{head}.{flipped}.{signature}"),
        "scope widened, re-signed by a stranger": bearer(
            _compact(header, payload | {"scope": "admin"}, KeyPair.generate())
        ),
        "alg none": bearer(_compact(header | {"alg": "none"}, payload, None)),
        "identity credential": bearer(tenant.root["identity_credential"]),
        "delegation credential": bearer(tenant.delegation["credential"]),
        "refresh token": bearer(tenant.root["refresh_token"]),
        "api key as bearer": bearer(tenant.root["api_key"]),
        "api key as basic": {"Authorization": basic(tenant.agent_id, tenant.root["api_key"])},
        "expired, issuer-signed": bearer(
            await _issuer_signed(services, tenant.agent_id, datetime.now(UTC) - timedelta(hours=2))
        ),
        "issuer-signed, never issued": bearer(await _issuer_signed(services, tenant.agent_id, datetime.now(UTC))),
    }


def test_protected_routes_are_found() -> None:
    paths = {(m, p) for m, p, _ in PROTECTED}
    assert ("GET", "/api/v1/agents") in paths and ("PATCH", "/api/v1/agents/{agent_id}") in paths
    assert ("POST", "/api/v1/credentials/{credential_id}/rotate") in paths
    assert ("GET", "/api/v1/audit/events") in paths
    assert len(paths) >= 20


PROTECTED_GROUPS = by_resource(PROTECTED)


@pytest.mark.parametrize("resource", PROTECTED_GROUPS)
async def test_protected_routes_refuse_bad_tokens_and_missing_scopes(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, resource: str
) -> None:
    credentials = await bad_credentials(services, tenant)
    only_introspect = (await client_credentials(client, tenant.root["api_key"], "tokens.introspect"))["access_token"]
    read_only = (await client_credentials(client, tenant.root["api_key"], WRITE_SCOPES_MISSING))["access_token"]
    ids = tenant_ids(tenant)
    before = await snapshot(services)
    for method, path, route in PROTECTED_GROUPS[resource]:
        url, body = fill_path(path, ids), valid_body(method, path, route, ids)
        for label, headers in credentials.items():
            response = await client.request(method, url, json=body, headers=headers)
            what = f"{method} {path} with {label}"
            assert_error(response, 401, "invalid_token", what=what)
            assert 'realm="agentauth"' in response.headers["www-authenticate"], what
        response = await client.request(method, url, json=body, headers=bearer(only_introspect))
        assert_error(response, 403, "insufficient_scope", what=f"{method} {path} with tokens.introspect only")
        if method != "GET" and path not in READ_ONLY_POSTS:
            # api.write and every *.read scope: still no write to AgentAuth's own resources.
            response = await client.request(method, url, json=body, headers=bearer(read_only))
            assert_error(response, 403, "insufficient_scope", what=f"{method} {path} with read scopes + api.write")
    await assert_unchanged(services, before, resource)


# -- inputs the database cannot take: the API must refuse them, never answer 5xx ---------------------------


async def test_offset_beyond_64_bits_is_invalid_request(services: Services, world: Root) -> None:
    async with lenient_client(services) as http:
        for path in ["/api/v1/agents", "/api/v1/credentials", "/api/v1/delegations"]:
            response = await http.get(path, params={"offset": str(2**63)}, headers=bearer(world.token))
            assert_error(response, 400, "invalid_request", what=path)


async def test_audit_since_without_timezone_is_not_a_server_error(services: Services, world: Root) -> None:
    async with lenient_client(services) as http:
        response = await http.get(
            "/api/v1/audit/events", params={"since": "2020-01-01T00:00:00"}, headers=bearer(world.token)
        )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert_error(response, 400, "invalid_request")


NUL_CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "quickstart name": ("POST", "/api/v1/agents/quickstart", {"json": {"name": "a\u0000b", "agent_type": "tool"}}),
    "patch description": ("PATCH", "/api/v1/agents/{agent_id}", {"json": {"description": "a\u0000b"}}),
    "agent id in path": ("GET", "/api/v1/agents/agt_%00", {}),
    "audit action filter": ("GET", "/api/v1/audit/events", {"params": {"action": "agent.\u0000"}}),
    "credentials agent_id filter": ("GET", "/api/v1/credentials", {"params": {"agent_id": "agt_\u0000"}}),
    "client_secret": ("POST", TOKEN, {"data": {"grant_type": "client_credentials",
                                              "client_secret": "ak_live_\u0000" + "a" * 42}}),
}  # fmt: skip


async def test_nul_character_is_never_a_server_error(
    request: pytest.FixtureRequest, services: Services, backend: str, world: Root
) -> None:
    server_errors = []
    async with lenient_client(services) as http:
        for name, (method, path, request_kw) in NUL_CASES.items():
            before = await snapshot(services)
            url = fill_path(path, {"agent_id": world.child["id"]})
            response = await http.request(method, url, headers=bearer(world.token), **request_kw)
            if response.status_code >= 500:
                server_errors.append(f"{name}: {response.status_code} {response.text}")
            elif response.status_code >= 400:
                assert set(response.json()) == {"error", "error_description"}, name
                await assert_unchanged(services, before, name)
    assert server_errors == []
