"""Oversized and pathological requests (RFC 9110 section 15.5.14 "413 Content Too Large", RFC 6585 section 5
"431 Request Header Fields Too Large"): every route that takes a body refuses one over the limit with 413 -
declared by Content-Length or streamed without it - oversized header sets get 431, deeply nested JSON and huge
query strings get a 4xx, and none of it changes the database. Routes come from the app's route table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from security_support import World, assert_unchanged, snapshot

from agentauth.api.middleware import DEFAULT_MAX_BODY_BYTES, MAX_HEADER_BYTES
from agentauth.bootstrap import Services
from support import app_route_table, assert_error, bearer, fill_path, path_params

pytestmark = pytest.mark.anyio

ROUTES = app_route_table()
# Routes that read a request body: a pydantic body, or a documented form/JSON body read directly (the token,
# introspection and revocation endpoints, and their aliases - the same endpoint function). Action routes such
# as POST .../revoke take no body and never read one, so a body streamed to them is simply not consumed.
_READERS = {r.endpoint for _, _, r in ROUTES if r.body_field is not None or (r.openapi_extra or {}).get("requestBody")}
ALL_WRITES = [(m, p, r) for m, p, r in ROUTES if m in ("POST", "PUT", "PATCH")]
WRITES = [(m, p, r) for m, p, r in ALL_WRITES if r.endpoint in _READERS]
JSON_CT = {"content-type": "application/json"}
FORM_CT = {"content-type": "application/x-www-form-urlencoded"}


def url_of(path: str, w: World) -> str:
    return fill_path(path, dict.fromkeys(path_params(path), w.child_id))


def oversized(route: APIRoute) -> tuple[bytes, dict[str, str]]:
    if route.body_field is not None:
        return b'{"name": "a", "pad": "' + b"x" * DEFAULT_MAX_BODY_BYTES + b'"}', JSON_CT
    return b"grant_type=client_credentials&pad=" + b"x" * DEFAULT_MAX_BODY_BYTES, FORM_CT


def test_the_limits_are_the_documented_ones() -> None:
    assert DEFAULT_MAX_BODY_BYTES == 64 * 1024 and MAX_HEADER_BYTES == 16 * 1024
    assert len(ALL_WRITES) > len(WRITES) >= 12
    assert {p for _, p, _ in WRITES} >= {"/api/v1/auth/token", "/api/v1/auth/token/introspect", "/api/v1/agents"}


@pytest.mark.parametrize(("method", "path", "route"), ALL_WRITES, ids=[f"{m} {p}" for m, p, _ in ALL_WRITES])
async def test_oversized_body_with_content_length_is_413(
    client: httpx.AsyncClient, services: Services, world: World, method: str, path: str, route: APIRoute
) -> None:
    body, content_type = oversized(route)
    before = await snapshot(services)
    response = await client.request(
        method, url_of(path, world), content=body, headers=bearer(world.a_token) | content_type
    )
    assert_error(response, 413, "invalid_request", f"{method} {path}")
    await assert_unchanged(services, before, f"by an oversized body to {method} {path}")


async def streamed(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 8192):
        yield body[start : start + 8192]


@pytest.mark.parametrize(("method", "path", "route"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
async def test_oversized_body_without_content_length_is_413(
    client: httpx.AsyncClient, services: Services, world: World, method: str, path: str, route: APIRoute
) -> None:
    body, content_type = oversized(route)
    before = await snapshot(services)
    request = client.build_request(
        method, url_of(path, world), content=streamed(body), headers=bearer(world.a_token) | content_type
    )
    assert "content-length" not in request.headers and request.headers.get("transfer-encoding") == "chunked"
    response = await client.send(request)
    await assert_unchanged(services, before, f"by a streamed oversized body to {method} {path}")
    assert_error(response, 413, "invalid_request", f"streamed to {method} {path}")


@pytest.mark.parametrize(
    ("label", "headers"),
    [
        ("one huge header", {"x-pad": "x" * MAX_HEADER_BYTES}),
        ("many small headers", {f"x-h{i}": "v" * 8 for i in range(2000)}),
        ("huge bearer token", {"authorization": "Bearer " + "a" * MAX_HEADER_BYTES}),
        ("huge cookie", {"cookie": "s=" + "c" * 2 * MAX_HEADER_BYTES}),
    ],
)
async def test_oversized_headers_are_431(
    client: httpx.AsyncClient, services: Services, world: World, label: str, headers: dict[str, str]
) -> None:
    before = await snapshot(services)
    for method, url, kwargs in [
        ("GET", "/api/v1/agents", {}),
        ("POST", "/api/v1/agents/quickstart", {"json": {"name": "big", "agent_type": "tool"}}),
        (
            "POST",
            "/api/v1/auth/token",
            {"data": {"grant_type": "client_credentials", "client_secret": world.a["api_key"]}},
        ),
        ("GET", "/.well-known/jwks.json", {}),
    ]:
        response = await client.request(method, url, headers=bearer(world.a_token) | headers, **kwargs)
        assert_error(response, 431, "invalid_request", f"{label} on {method} {url}")
    await assert_unchanged(services, before, f"by {label}")


async def test_headers_just_under_the_limit_are_served(client: httpx.AsyncClient, world: World) -> None:
    """The control for the 431 cases: the limit is the documented one, not lower."""
    pad = MAX_HEADER_BYTES - len(world.a_token) - 1024  # the token, the other headers and their names fit in 1 KiB
    response = await client.get("/api/v1/agents", headers=bearer(world.a_token) | {"x-pad": "x" * pad})
    assert response.status_code == 200, response.text


DEEP = 30_000  # fits in 64 KiB as "[[[...]]]"


@pytest.mark.parametrize(("method", "path", "route"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
async def test_deeply_nested_json_is_a_4xx(
    client: httpx.AsyncClient, services: Services, world: World, method: str, path: str, route: APIRoute
) -> None:
    nested = b"[" * DEEP + b"]" * DEEP
    bodies: dict[str, bytes] = {
        "bare": nested,
        "in a field": b'{"name": "a", "agent_type": "tool", "public_key": {"k": ' + nested + b"}}",
        "in an object chain": b'{"a":' * (DEEP // 5) + b"1" + b"}" * (DEEP // 5),
    }
    before = await snapshot(services)
    for label, body in bodies.items():
        assert len(body) < DEFAULT_MAX_BODY_BYTES
        response = await client.request(
            method, url_of(path, world), content=body, headers=bearer(world.a_token) | JSON_CT
        )
        assert 400 <= response.status_code < 500, (
            f"[{label} to {method} {path}] {response.status_code}: {response.text[:300]}"
        )
    await assert_unchanged(services, before, f"by nested JSON to {method} {path}")


async def test_huge_query_strings_are_not_a_5xx(client: httpx.AsyncClient, services: Services, world: World) -> None:
    before = await snapshot(services)
    queries: dict[str, Any] = {
        "one long value": {"limit": "1", "agent_id": "a" * 60_000},
        "five thousand parameters": [(f"p{i}", "v") for i in range(5_000)],
        "a repeated parameter": [("limit", "1")] * 7_000,
    }
    for label, params in queries.items():
        for url in ("/api/v1/agents", "/api/v1/credentials", "/api/v1/audit/events"):
            response = await client.get(url, params=params, headers=bearer(world.a_token))
            assert response.status_code < 500, f"[{label} on {url}] {response.status_code}: {response.text[:300]}"
    await assert_unchanged(services, before, "by huge query strings")
