"""Direct routes (``api/direct.py``) answer exactly what their FastAPI routes answer: the same app with the
direct routes taken out is the reference, for good requests and for every kind of bad one - including those the
direct handler declines and hands to FastAPI (a query or path parameter FastAPI must validate)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from agentauth.api.app import create_app
from agentauth.api.direct import DirectRoutes
from agentauth.bootstrap import Services
from support import ISSUER_URL, bearer, quickstart, route_table

pytestmark = pytest.mark.anyio

# Headers that differ between any two answers.
VARYING = {"x-request-id", "date"}


def app_for(services: Services, direct: bool) -> Any:
    app = create_app(services=services)
    app.state.services = services  # ASGITransport does not run the lifespan
    if not direct:
        middleware = [m for m in app.user_middleware if m.cls is DirectRoutes]
        assert len(middleware) == 1
        middleware[0].kwargs["routes"] = ()
    return app


@pytest.fixture
async def reference(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The app answering every route through FastAPI's router and dependencies."""
    app = app_for(services, direct=False)
    assert not direct_layer(app).exact and not direct_layer(app).templated
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as http:
        yield http


def direct_layer(app: Any) -> DirectRoutes:
    """The app's DirectRoutes instance, in its built middleware stack."""
    layer = app.middleware_stack or app.build_middleware_stack()
    app.middleware_stack = layer
    while not isinstance(layer, DirectRoutes):
        layer = layer.app
    return layer


def answer(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k not in VARYING}
    return response.status_code, headers, response.content


async def test_every_route_of_the_app_keeps_its_direct_routes_declared(services: Services) -> None:
    app = app_for(services, direct=True)
    (middleware,) = [m for m in app.user_middleware if m.cls is DirectRoutes]
    assert ("GET", "/api/v1/agents") in direct_layer(app).exact
    declared = {(method, path) for method, path, _ in route_table(app.routes)}
    direct = {(r.method, r.path) for r in middleware.kwargs["routes"]}
    assert {("GET", "/api/v1/agents"), ("GET", "/api/v1/agents/{agent_id}"), ("POST", "/api/v1/auth/token")} <= direct
    assert direct <= declared  # each stays a FastAPI route: OpenAPI, and the fallback for what it declines


async def test_direct_reads_answer_as_the_fastapi_routes(
    client: httpx.AsyncClient, reference: httpx.AsyncClient
) -> None:
    root = await quickstart(client, "direct")
    token = root["access_token"]
    child = await client.post("/api/v1/agents", json={"name": "c", "agent_type": "tool"}, headers=bearer(token))
    assert child.status_code == 201, child.text
    child_id = child.json()["agent"]["id"]
    other = await quickstart(client, "other tenant")

    good = bearer(token)
    requests: list[tuple[str, dict[str, str]]] = [
        ("/api/v1/agents", good),
        ("/api/v1/agents?limit=1", good),
        ("/api/v1/agents?limit=1&offset=1", good),
        ("/api/v1/agents?offset=5", good),
        ("/api/v1/agents?limit=100&offset=0", good),
        # Declined by the direct handler, answered by FastAPI's validation (or its parsing) in both apps:
        ("/api/v1/agents?limit=0", good),
        ("/api/v1/agents?limit=101", good),
        ("/api/v1/agents?limit=05", good),
        ("/api/v1/agents?limit=x", good),
        ("/api/v1/agents?limit=", good),
        ("/api/v1/agents?limit=1&limit=2", good),
        ("/api/v1/agents?offset=-1", good),
        ("/api/v1/agents?offset=1000000001", good),
        ("/api/v1/agents?other=1", good),
        ("/api/v1/agents?limit=%C2%B2", good),
        ("/api/v1/agents?limit=0", {}),
        ("/api/v1/agents/", good),
        # Authentication, by the same rules as HTTPBearer's:
        ("/api/v1/agents", {}),
        ("/api/v1/agents", {"Authorization": ""}),
        ("/api/v1/agents", {"Authorization": "Bearer"}),
        ("/api/v1/agents", {"Authorization": "Bearer "}),
        ("/api/v1/agents", {"Authorization": f"bearer {token}"}),
        ("/api/v1/agents", {"Authorization": f"Bearer   {token}  "}),
        ("/api/v1/agents", {"Authorization": f"Basic {token}"}),
        ("/api/v1/agents", {"Authorization": f"Bearer {token}x"}),
        ("/api/v1/agents", bearer(other["api_key"])),
        # One agent: own, child, another tenant's, unknown, too long an id, other paths under it.
        (f"/api/v1/agents/{root['agent']['id']}", good),
        (f"/api/v1/agents/{child_id}", good),
        (f"/api/v1/agents/{other['agent']['id']}", good),
        ("/api/v1/agents/agt_nope", good),
        ("/api/v1/agents/" + "a" * 64, good),
        ("/api/v1/agents/" + "a" * 65, good),
        ("/api/v1/agents/quickstart", good),
        (f"/api/v1/agents/{child_id}", {}),
        (f"/api/v1/agents/{child_id}/did.json", {}),
    ]
    for path, headers in requests:
        direct, through_fastapi = await client.get(path, headers=headers), await reference.get(path, headers=headers)
        assert answer(direct) == answer(through_fastapi), path
        assert direct.headers["x-request-id"], path
    listing = await client.get("/api/v1/agents", headers=good)
    assert [a["id"] for a in listing.json()["items"]] == [root["agent"]["id"], child_id]
    assert (await client.get("/api/v1/agents?limit=0", headers=good)).status_code == 400
    assert (await client.get(f"/api/v1/agents/{other['agent']['id']}", headers=good)).status_code == 404


async def test_direct_introspection_answers_as_the_fastapi_route(
    client: httpx.AsyncClient, reference: httpx.AsyncClient
) -> None:
    root = await quickstart(client, "introspect")
    token = root["access_token"]
    for path in ("/api/v1/auth/introspect", "/api/v1/auth/token/introspect"):
        for form, headers in (
            ({"token": token}, bearer(token)),
            ({"token": "nonsense"}, bearer(token)),
            ({"token": token}, {}),
            ({"token": token, "client_secret": root["api_key"]}, {}),
            ({}, bearer(token)),
        ):
            direct = await client.post(path, data=form, headers=headers)
            through_fastapi = await reference.post(path, data=form, headers=headers)
            status, headers_a, body = answer(direct)
            assert (status, headers_a) == answer(through_fastapi)[:2], (path, form)
            if status == 200:
                # The same fields; times may move by a second between the two calls.
                assert set(direct.json()) == set(through_fastapi.json()), (path, form)
                assert direct.json()["active"] == through_fastapi.json()["active"]
            else:
                assert body == through_fastapi.content, (path, form)


def json_request(body: bytes, token: str | None, content_type: str | None = "application/json") -> dict[str, Any]:
    headers = {"Content-Type": content_type} if content_type else {}
    return {"content": body, "headers": headers | (bearer(token) if token else {})}


# Bodies every JSON direct route must answer as FastAPI does: declined by the direct handler (not a JSON object
# of the model: FastAPI's 422, or its parsing) or answered by it.
BAD_BODIES: list[tuple[bytes, str | None]] = [
    (b"", "application/json"),
    (b"{", "application/json"),
    (b"[]", "application/json"),
    (b"null", "application/json"),
    (b'{"agent_id": NaN}', "application/json"),
    (b'{"x": 123456789012345678901234567890}', "application/json"),
    (b"{}", "application/json"),
    (b'{"unexpected": 1}', "application/json"),
    (b"{}", "text/plain"),
    (b"{}", None),
    (b"{}", "application/merge-patch+json"),
]


async def test_direct_check_permission_answers_as_the_fastapi_route(
    client: httpx.AsyncClient, reference: httpx.AsyncClient
) -> None:
    root = await quickstart(client, "evaluate")
    token = root["access_token"]
    good = orjson.dumps({"agent_id": root["agent"]["id"], "action": "read", "resource": "/docs/1"})
    json = "application/json"
    cases = [
        (good, token, json), (good, token, "application/json; charset=utf-8"), (good, None, json),
        (good, token + "x", json), (good, token, "Application/JSON"),
        (orjson.dumps({"agent_id": "agt_nope", "action": "read", "resource": "/x"}), token, json),
        (orjson.dumps({"agent_id": root["agent"]["id"], "action": "fly", "resource": "/x"}), token, json),
        *((body, token, kind) for body, kind in BAD_BODIES),
        *((body, None, kind) for body, kind in BAD_BODIES),
    ]  # fmt: skip
    for body, who, kind in cases:
        request = json_request(body, who, kind)
        direct = await client.post("/api/v1/policies/evaluate", **request)
        through_fastapi = await reference.post("/api/v1/policies/evaluate", **request)
        assert answer(direct) == answer(through_fastapi), (body, who is not None, kind)
    assert (await client.post("/api/v1/policies/evaluate", **json_request(good, token))).json()["allowed"] is True


async def test_direct_writes_answer_as_the_fastapi_routes(
    client: httpx.AsyncClient, reference: httpx.AsyncClient
) -> None:
    root = await quickstart(client, "writes")
    token = root["access_token"]
    child = await client.post("/api/v1/agents", json={"name": "c", "agent_type": "tool"}, headers=bearer(token))
    delegation = orjson.dumps({"delegate_agent_id": child.json()["agent"]["id"], "scopes": ["agents.read"]})
    registration = orjson.dumps({"name": "q", "agent_type": "tool"})
    for path, good in (("/api/v1/delegations", delegation), ("/api/v1/agents/quickstart", registration)):
        for body, who, kind in [(good, token, "application/json"), (good, None, "application/json"),
                                *((b, token, k) for b, k in BAD_BODIES)]:  # fmt: skip
            direct = await client.post(path, **json_request(body, who, kind))
            through_fastapi = await reference.post(path, **json_request(body, who, kind))
            status, headers, content = answer(direct)
            assert (status, headers) == answer(through_fastapi)[:2], (path, body, kind)
            if status == 201:  # new ids and times each: the same fields
                assert direct.json().keys() == through_fastapi.json().keys(), path
            else:
                assert content == through_fastapi.content, (path, body, kind)
    # What the direct routes wrote is there: two delegations, each with its signed credential.
    listed = await client.get("/api/v1/delegations", headers=bearer(token))
    assert listed.json()["total"] == 2


async def test_direct_revocation_answers_as_the_fastapi_route(
    client: httpx.AsyncClient, reference: httpx.AsyncClient
) -> None:
    root = await quickstart(client, "revoke")
    token = root["access_token"]
    spare = [(await client.post("/api/v1/auth/token", data={"grant_type": "client_credentials",
                                                              "client_secret": root["api_key"]})).json()["access_token"]
             for _ in range(4)]  # fmt: skip
    for path in ("/api/v1/auth/revoke", "/api/v1/auth/token/revoke"):
        for form, headers in (({"token": spare.pop()}, bearer(token)), ({"token": "nonsense"}, bearer(token)),
                              ({"token": token}, {}), ({}, bearer(token))):  # fmt: skip
            direct = await client.post(path, data=form, headers=headers)
            through_fastapi = await reference.post(path, data=form, headers=headers)
            assert answer(direct) == answer(through_fastapi), (path, form)
    introspected = await client.post("/api/v1/auth/introspect", data={"token": spare[0]}, headers=bearer(token))
    assert introspected.json()["active"] is True
