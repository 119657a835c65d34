"""Bad input at the JSON endpoints: unparseable bodies, wrong content types, oversized bodies, schema violations
(wrong types, out-of-range values, unknown fields) and bad query/path parameters - 400 invalid_request (or
invalid_scope, 413), exactly {"error", "error_description"}, and no state change in the database."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from api_support import (
    FORM,
    JSON_CT,
    MAX_BODY,
    Root,
    Tenant,
    assert_unchanged,
    by_resource,
    make_root,
    make_tenant,
    snapshot,
    tenant_ids,
    valid_body,
)

from agentauth.bootstrap import Services
from agentauth.keys import KeyPair
from support import app_route_table, assert_error, bearer, fill_path

pytestmark = pytest.mark.anyio

ROUTES = app_route_table()
ROUTE_OF = {(m, p): r for m, p, r in ROUTES}


@pytest.fixture
async def world(client: httpx.AsyncClient) -> Root:
    return await make_root(client, "bad-body")


@pytest.fixture
async def tenant(client: httpx.AsyncClient) -> Tenant:
    return await make_tenant(client, "bad-body")


# -- JSON endpoints: unparseable bodies, wrong content types, oversized bodies ------------------------------

JSON_ENDPOINTS = [(m, p) for m, p, r in ROUTES if r.body_field is not None]
UNPARSEABLE = {
    "truncated": b'{"name": "a", "agent_type": ',
    "trailing-comma": b'{"name": "a", "agent_type": "tool",}',
    "not-json": b"name=a&agent_type=tool",
    "array": b'[{"name": "a", "agent_type": "tool"}]',
    "null": b"null",
    "empty": b"",
    "bad-utf8": b'{"name": "\xff\xfe", "agent_type": "tool"}',
}


def test_json_endpoints_cover_every_route_with_a_body() -> None:
    assert {p for _, p in JSON_ENDPOINTS} >= {
        "/api/v1/agents/quickstart", "/api/v1/agents", "/api/v1/agents/{agent_id}", "/api/v1/credentials",
        "/api/v1/delegations", "/api/v1/policies", "/api/v1/policies/{policy_id}", "/api/v1/policies/evaluate",
    }  # fmt: skip


JSON_GROUPS = by_resource([(m, p, ROUTE_OF[m, p]) for m, p in JSON_ENDPOINTS])


@pytest.mark.parametrize("resource", JSON_GROUPS)
async def test_json_endpoints_refuse_unusable_bodies(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, resource: str
) -> None:
    for method, path, route in JSON_GROUPS[resource]:
        url = fill_path(path, tenant_ids(tenant))
        good = json.dumps(valid_body(method, path, route, tenant_ids(tenant)) or {}).encode()
        auth = bearer(tenant.token)
        attempts: dict[str, dict[str, Any]] = {
            f"json {label}": {"content": body, "headers": auth | JSON_CT} for label, body in UNPARSEABLE.items()
        }
        attempts |= {
            "text/plain": {"content": good, "headers": auth | {"content-type": "text/plain"}},
            "form-encoded": {"content": b"name=a&agent_type=tool", "headers": auth | FORM},
            "multipart": {"files": {"name": (None, "a")}, "headers": auth},
            "xml": {"content": b"<name>a</name>", "headers": auth | {"content-type": "application/xml"}},
            "oversized": {"content": good[:-1] + b', "pad": "' + b"x" * MAX_BODY + b'"}', "headers": auth | JSON_CT},
        }
        for label, request in attempts.items():
            what = f"{method} {path}: {label}"
            before = await snapshot(services)
            response = await client.request(method, url, **request)
            assert_error(response, 413 if label == "oversized" else 400, "invalid_request", what=what)
            await assert_unchanged(services, before, what)


async def test_oversized_chunked_json_body_is_413(client: httpx.AsyncClient, services: Services, world: Root) -> None:
    async def chunks() -> Any:
        yield b'{"name": "a", "agent_type": "tool", "description": "'
        for _ in range(10):
            yield b"x" * 8192
        yield b'"}'

    before = await snapshot(services)
    response = await client.post("/api/v1/agents", content=chunks(), headers=bearer(world.token) | JSON_CT)
    await assert_unchanged(services, before)
    assert_error(response, 413, "invalid_request")


# -- schema violations: wrong types, out-of-range values, unknown fields ----------------------------------

LONG = "x" * 201
QS, AG, AGI, CR = "/api/v1/agents/quickstart", "/api/v1/agents", "/api/v1/agents/{agent_id}", "/api/v1/credentials"
DG, PO, EV = "/api/v1/delegations", "/api/v1/policies", "/api/v1/policies/evaluate"
SCOPE = "invalid_scope"


def agent(**fields: Any) -> dict[str, Any]:
    return {"name": "a", "agent_type": "tool", **fields}


def grant(**fields: Any) -> dict[str, Any]:
    return {"delegate_agent_id": "{agent_id}", "scopes": ["api.read"], **fields}


def policy(**fields: Any) -> dict[str, Any]:
    return {
        "name": "p",
        "effect": "deny",
        "subjects": {"all": True},
        "actions": ["read"],
        "resources": ["**"],
        **fields,
    }


# name: (method, path, body[, error]); error defaults to invalid_request. In paths and bodies, {agent_id} is
# the child agent and {root_id} the caller itself.
SCHEMA_CASES: dict[str, tuple[Any, ...]] = {
    "quickstart name number": ("POST", QS, agent(name=123)),
    "quickstart name empty": ("POST", QS, agent(name="")),
    "quickstart name blank": ("POST", QS, agent(name="   ")),
    "quickstart name too long": ("POST", QS, agent(name=LONG)),
    "quickstart agent_type unknown": ("POST", QS, agent(agent_type="robot")),
    "quickstart agent_type missing": ("POST", QS, {"name": "a"}),
    "quickstart description too long": ("POST", QS, agent(description="d" * 2001)),
    "quickstart public_key number": ("POST", QS, agent(public_key=5)),
    "quickstart public_key bad did": ("POST", QS, agent(public_key="did:key:zNope")),
    "quickstart public_key private jwk": ("POST", QS, agent(public_key=KeyPair.generate().private_jwk())),
    "quickstart public_key X25519": ("POST", QS, agent(public_key={"kty": "OKP", "crv": "X25519", "x": "A" * 43})),
    "quickstart unknown field": ("POST", QS, agent(is_admin=True)),
    "quickstart registration_token number": ("POST", QS, agent(registration_token=7)),
    "child name number": ("POST", AG, agent(name=123)),
    "child trust_level unknown": ("POST", AG, agent(trust_level="god")),
    "child scopes string": ("POST", AG, agent(scopes="agents.read")),
    "child scopes numbers": ("POST", AG, agent(scopes=[1])),
    "child scopes unknown": ("POST", AG, agent(scopes=["root"]), SCOPE),
    "child tenant_id field": ("POST", AG, agent(tenant_id="agt_other")),
    "child parent_id field": ("POST", AG, agent(parent_id="agt_other")),
    "patch nothing": ("PATCH", AGI, {}),
    "patch only nulls": ("PATCH", AGI, {"name": None, "description": None}),
    "patch name number": ("PATCH", AGI, {"name": 123}),
    "patch name empty": ("PATCH", AGI, {"name": ""}),
    "patch trust_level unknown": ("PATCH", AGI, {"trust_level": "admin"}),
    "patch status field": ("PATCH", AGI, {"status": "active"}),
    "patch scopes field": ("PATCH", AGI, {"scopes": ["audit.read"]}),
    "patch description too long": ("PATCH", AGI, {"description": "d" * 2001}),
    "key expires_in_days 0": ("POST", CR, {"expires_in_days": 0}),
    "key expires_in_days 3651": ("POST", CR, {"expires_in_days": 3651}),
    "key expires_in_days text": ("POST", CR, {"expires_in_days": "soon"}),
    "key expires_in_days fraction": ("POST", CR, {"expires_in_days": 1.5}),
    "key scopes string": ("POST", CR, {"scopes": "agents.read"}),
    "key scopes unknown": ("POST", CR, {"scopes": ["agents.read", "keys.everything"]}, SCOPE),
    "key agent_id number": ("POST", CR, {"agent_id": 5}),
    "key name too long": ("POST", CR, {"name": LONG}),
    "key raw_key field": ("POST", CR, {"raw_key": "ak_live_" + "a" * 43}),
    "delegation no scopes": ("POST", DG, grant(scopes=[])),
    "delegation unknown scope": ("POST", DG, grant(scopes=["god"]), SCOPE),
    "delegation depth 11": ("POST", DG, grant(max_chain_depth=11)),
    "delegation expires 0h": ("POST", DG, grant(expires_in_hours=0)),
    "delegation to self": ("POST", DG, grant(delegate_agent_id="{root_id}")),
    "policy effect unknown": ("POST", PO, policy(effect="maybe")),
    "policy no actions": ("POST", PO, policy(actions=[])),
    "policy unknown action": ("POST", PO, policy(actions=["fly"])),
    "policy priority 5000": ("POST", PO, policy(priority=5000)),
    "policy resource with ..": ("POST", PO, policy(resources=["a/../b"])),
    "evaluate unknown action": ("POST", EV, {"agent_id": "{agent_id}", "action": "fly", "resource": "x"}),
}


def _placeholders(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: _placeholders(v, ids) for k, v in value.items()}
    return value


SCHEMA_GROUPS = sorted({case[1] for case in SCHEMA_CASES.values()})


@pytest.mark.parametrize("path", SCHEMA_GROUPS)
async def test_schema_violations_are_refused(
    client: httpx.AsyncClient, services: Services, world: Root, path: str
) -> None:
    ids = {"agent_id": world.child["id"], "root_id": world.agent_id}
    for name, case in SCHEMA_CASES.items():
        method, case_path, body, error = (*case, "invalid_request")[:4]
        if case_path != path:
            continue
        before = await snapshot(services)
        response = await client.request(
            method, fill_path(path, ids), json=_placeholders(body, ids), headers=bearer(world.token)
        )
        assert_error(response, 400, error, what=name)
        await assert_unchanged(services, before, name)


# -- query and path parameters -----------------------------------------------------------------------------

QUERY_CASES: dict[str, list[dict[str, str]]] = {
    "/api/v1/agents": [{"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"limit": "-1"}, {"offset": "-1"},
                       {"offset": "1.5"}, {"limit": ""}],
    "/api/v1/credentials": [{"limit": "0"}, {"limit": "101"}, {"offset": "-1"}, {"agent_id": "a" * 65}],
    "/api/v1/delegations": [{"limit": "0"}, {"limit": "101"}, {"offset": "-1"}, {"role": "boss"}],
    "/api/v1/audit/events": [{"limit": "0"}, {"limit": "101"}, {"outcome": "maybe"}, {"cursor": "abc"},
                             {"cursor": "-1"}, {"cursor": "9" * 19}, {"since": "yesterday"}, {"action": "a" * 61}],
}  # fmt: skip


async def test_bad_query_and_path_parameters(client: httpx.AsyncClient, services: Services, world: Root) -> None:
    before = await snapshot(services)
    for path, cases in QUERY_CASES.items():
        for params in cases:
            response = await client.get(path, params=params, headers=bearer(world.token))
            assert_error(response, 400, "invalid_request", what=f"{path} {params}")
    for list_id in ["0", "-1", "abc", "1.5", str(2**31)]:
        assert_error(await client.get(f"/api/v1/status-lists/{list_id}"), 400, "invalid_request", what=list_id)
    assert_error(await client.get("/api/v1/agents/" + "a" * 65, headers=bearer(world.token)), 400, "invalid_request")
    for path in ["/api/v1/agents/agt_000000000000000000000000", "/api/v1/credentials/key_000000000000000000000000",
                 "/api/v1/delegations/dlg_000000000000000000000000", "/api/v1/policies/pol_000000000000000000000000",
                 "/api/v1/status-lists/999999", "/api/v1/agents/agt_000000000000000000000000/did.json"]:  # fmt: skip
        assert_error(await client.get(path, headers=bearer(world.token)), 404, "not_found", what=path)
    await assert_unchanged(services, before)
