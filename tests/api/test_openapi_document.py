"""The OpenAPI document and the docs pages (issue 16 item 2): form-only bodies where the RFCs say form, short
unique operationIds, described tags, the token endpoint's real 400/401/429 answers matching the RFC 6749 section
5.2 schema it documents, introspection answers matching theirs; ``/docs`` and ``/redoc`` load Swagger UI and
ReDoc from this origin under a Content-Security-Policy that allows nothing else (the browser side:
tests/e2e/test_docs_browser.py)."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import httpx
import pytest
from api_support import custom_client

from agentauth import errors, paths
from agentauth.api import docs
from agentauth.api.openapi import TOKEN_400_ERRORS, IntrospectionResponse, TokenError
from agentauth.issuer import resource_server_schemas, schemas, webhook_schemas
from support import bearer, ok, quickstart

pytestmark = pytest.mark.anyio

HTTP_METHODS = {"get", "put", "post", "patch", "delete"}
TOKEN, INTROSPECT, REVOKE = paths.TOKEN, paths.INTROSPECT, paths.REVOKE


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in document["paths"].items() for m, op in item.items() if m in HTTP_METHODS]


async def test_token_introspect_and_revoke_declare_a_form_body_only(client: httpx.AsyncClient) -> None:
    document = ok(await client.get("/openapi.json"))
    for path in (TOKEN, INTROSPECT, REVOKE):
        content = document["paths"][path]["post"]["requestBody"]["content"]
        assert list(content) == ["application/x-www-form-urlencoded"], path
    token_form = document["paths"][TOKEN]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    exchange = token_form["examples"]["token-exchange"]["value"]
    assert {"subject_token", "subject_token_type", "actor_token", "actor_token_type"} <= set(exchange)
    assert set(token_form["examples"]) == {
        "client_credentials", "refresh_token", "jwt-bearer", "token-exchange", "authorization_code",
    }  # fmt: skip


async def test_operation_ids_are_short_unique_and_camel_case(client: httpx.AsyncClient) -> None:
    document = ok(await client.get("/openapi.json"))
    ids = {(method, path): op["operationId"] for method, path, op in operations(document)}
    assert len(set(ids.values())) == len(ids), sorted(ids.values())
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", i) for i in ids.values()), sorted(ids.values())
    assert ids["post", TOKEN] == "token" and ids["post", INTROSPECT] == "introspect" and ids["post", REVOKE] == "revoke"
    assert ids["get", "/api/v1/agents"] == "listAgents" and ids["post", "/api/v1/agents"] == "createAgent"


async def test_every_tag_is_described(client: httpx.AsyncClient) -> None:
    document = ok(await client.get("/openapi.json"))
    described = {tag["name"]: tag.get("description", "") for tag in document["tags"]}
    used = {tag for _, _, op in operations(document) for tag in op.get("tags", [])}
    assert used <= {name for name, text in described.items() if text}, used - set(described)
    assert "client_id" in described["agents"] and "client_id" in document["info"]["description"]


def test_the_documented_token_errors_are_those_the_exception_classes_send() -> None:
    enum = set(TokenError.model_json_schema()["properties"]["error"]["enum"])
    sent = {c.error for c in TOKEN_400_ERRORS} | {errors.InvalidClient.error, errors.RateLimited.error}
    assert enum == sent


async def test_the_token_endpoint_refusals_match_what_it_documents(settings_factory: Any, backend: str) -> None:
    async with custom_client(settings_factory, backend, token_rate_per_ip=2) as (_, http):
        documented = ok(await http.get("/openapi.json"))["paths"][TOKEN]["post"]["responses"]
        refusals = [
            await http.post(TOKEN, data={"grant_type": "urn:example:unknown"}),
            await http.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": "ak_live_" + "x" * 43}),
            await http.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": "ak_live_x"}),
        ]
    assert [r.status_code for r in refusals] == [400, 401, 429]
    assert [TokenError.model_validate(r.json()).error for r in refusals] == [
        "unsupported_grant_type", "invalid_client", "rate_limited",
    ]  # fmt: skip
    for response in refusals:
        answer = documented[str(response.status_code)]
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/TokenError"}, response.status_code
        for header in answer.get("headers", {}):
            if header != "DPoP-Nonce":  # only with use_dpop_nonce
                assert header in response.headers, (response.status_code, header)


async def test_introspection_answers_match_their_documented_model(client: httpx.AsyncClient) -> None:
    documented = ok(await client.get("/openapi.json"))["paths"][INTROSPECT]["post"]["responses"]["200"]
    assert documented["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/IntrospectionResponse"}
    agent = await quickstart(client, "introspected")
    token, refresh = agent["access_token"], agent["refresh_token"]
    active = ok(await client.post(INTROSPECT, data={"token": token}, headers=bearer(token)))
    refreshing = ok(await client.post(INTROSPECT, data={"token": refresh, "token_type_hint": "refresh_token"}))
    assert (await client.post(REVOKE, data={"token": token}, headers=bearer(token))).status_code == 200
    inactive = ok(await client.post(INTROSPECT, data={"token": refresh}))
    assert IntrospectionResponse.model_validate(active).active is True
    assert IntrospectionResponse.model_validate(refreshing).token_type == "refresh_token"
    assert IntrospectionResponse.model_validate(inactive).model_dump(exclude_none=True) == {"active": False}


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _only_this_origin(policy: str) -> dict[str, str]:
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    for name in ("script-src", "style-src", "img-src", "connect-src"):
        sources = directives[name].split()
        assert sources[0] == "'self'", (name, sources)
        assert all(s in ("data:",) or re.fullmatch(r"'(sha256|nonce)-[A-Za-z0-9+/_=-]+'", s) for s in sources[1:])
    return directives


async def test_docs_pages_load_swagger_ui_and_redoc_from_this_origin(client: httpx.AsyncClient) -> None:
    swagger = await client.get("/docs")
    assert swagger.status_code == 200 and swagger.headers["x-frame-options"] == "DENY"
    directives = _only_this_origin(swagger.headers["content-security-policy"])
    inline = re.findall(r"<script>(.*?)</script>", swagger.text, re.DOTALL)
    assert len(inline) == 1 and "SwaggerUIBundle" in inline[0] and "/openapi.json" in inline[0]
    assert directives["script-src"] == f"'self' {_sha256_source(inline[0])}" and directives["worker-src"] == "'none'"
    redocs = [await client.get("/redoc") for _ in range(2)]
    nonces = []
    for redoc in redocs:
        redoc_directives = _only_this_origin(redoc.headers["content-security-policy"])
        style_src = redoc_directives["style-src"]
        nonce = re.fullmatch(r"'self' 'nonce-([A-Za-z0-9_-]{24})'", style_src)
        assert nonce is not None and f'<script nonce="{nonce[1]}">' in redoc.text, style_src
        assert redoc_directives["script-src"] == style_src and redoc_directives["worker-src"] == "blob:"
        nonces.append(nonce[1])
    assert nonces[0] != nonces[1]
    urls = re.findall(r'(?:src|href|spec-url)="([^"]*)"', swagger.text + redocs[0].text)
    assert urls and all(u.startswith((docs.STATIC + "/", "/openapi.json")) for u in urls), urls
    for url in set(urls) - {"/openapi.json"}:
        asset = await client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert (await client.get("/docs/oauth2-redirect")).status_code == 404  # FastAPI's own pages are off


async def test_every_operation_and_schema_is_described_and_every_json_body_has_an_example(
    client: httpx.AsyncClient,
) -> None:
    document = ok(await client.get("/openapi.json"))
    undescribed = [f"{m} {p}" for m, p, op in operations(document) if len(op.get("description", "")) < 30]
    assert undescribed == []
    for method, path, op in operations(document):
        declared = op.get("x-agentauth-operation")
        if declared:  # what a token needs is said where people read it
            assert all(f"`{scope}`" in op["description"] for scope in declared["scopes"]), (method, path)
    schemas = document["components"]["schemas"]
    assert [name for name, schema in schemas.items() if not schema.get("description")] == []
    for method, path, op in operations(document):
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            schema = body["schema"]
            if "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
            assert schema.get("examples"), f"{method} {path}: its body schema has no example"


def test_the_request_examples_are_valid_requests() -> None:
    models = [
        schemas.QuickstartRequest, schemas.CreateAgentRequest, schemas.UpdateAgentRequest,
        schemas.CreateApiKeyRequest, schemas.CreateDelegationRequest, schemas.PolicyIn, schemas.EvaluateRequest,
        resource_server_schemas.ResourceServerIn, resource_server_schemas.ResourceServerChange,
        webhook_schemas.WebhookIn, webhook_schemas.WebhookChange,
    ]  # fmt: skip
    for model in models:
        examples = (model.model_config.get("json_schema_extra") or {}).get("examples")  # type: ignore[union-attr]
        assert examples, model.__name__
        for example in examples:
            model.model_validate(example)
