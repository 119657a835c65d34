"""Bad input at the token endpoint (RFC 6749 sections 3.2, 4.4, 5.2 and 6; RFC 7523): the RFC error code and
status, exactly {"error", "error_description"}, WWW-Authenticate on 401, and no state change - checked by
re-reading the database before and after."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from api_support import (
    FORM,
    JWT_BEARER,
    MAX_BODY,
    TOKEN,
    TOKEN_EXCHANGE,
    Root,
    assert_unchanged,
    assertion_for,
    basic,
    client_credentials,
    form,
    make_root,
    snapshot,
)

from agentauth.bootstrap import Services
from support import assert_error, bearer, ok

pytestmark = pytest.mark.anyio

JSON_CT = {"content-type": "application/json"}


def raw_json(content: bytes) -> dict[str, Any]:
    return {"content": content, "headers": JSON_CT}


@pytest.fixture
async def world(client: httpx.AsyncClient) -> Root:
    return await make_root(client, "bad-token")


def assertion(world: Root) -> str:
    return assertion_for(world.root)


# -- the token endpoint ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenCase:
    status: int
    error: str
    request: Callable[[Root], dict[str, Any]]


def _cc(w: Root) -> tuple[str, str]:
    return ("client_secret", w.root["api_key"])


GT_CC = ("grant_type", "client_credentials")
TOKEN_CASES: dict[str, TokenCase] = {
    # content type (RFC 6749 section 4.4.2: application/x-www-form-urlencoded; JSON is our extension)
    "text-plain": TokenCase(400, "invalid_request", lambda w: {
        "content": urlencode([GT_CC, _cc(w)]).encode(), "headers": {"content-type": "text/plain"}}),
    "multipart": TokenCase(400, "invalid_request", lambda w: {
        "files": {"grant_type": (None, "client_credentials"), "client_secret": (None, w.root["api_key"])}}),
    "no-content-type": TokenCase(400, "invalid_request", lambda w: {"content": urlencode([GT_CC, _cc(w)]).encode()}),
    "xml": TokenCase(400, "invalid_request", lambda w: {
        "content": b"<grant_type>client_credentials</grant_type>", "headers": {"content-type": "application/xml"}}),
    # malformed bodies
    "json-truncated": TokenCase(400, "invalid_request", lambda w: raw_json(b'{"grant_type": ')),
    "json-array": TokenCase(400, "invalid_request", lambda w: raw_json(b'["client_credentials"]')),
    "json-string": TokenCase(400, "invalid_request", lambda w: raw_json(b'"client_credentials"')),
    "json-bad-utf8": TokenCase(400, "invalid_request", lambda w: {
        "content": b'{"grant_type": "client_credentials\xff"}', "headers": JSON_CT}),
    "form-bad-utf8": TokenCase(400, "invalid_request", lambda w: {"content": b"grant_type=\xff\xfe", "headers": FORM}),
    "form-no-equals": TokenCase(400, "invalid_request", lambda w: {"content": b"grant_type", "headers": FORM}),
    # grant types
    "grant-password": TokenCase(400, "unsupported_grant_type", lambda w: form(("grant_type", "password"), _cc(w))),
    "grant-authorization-code-no-verifier": TokenCase(400, "invalid_request", lambda w: form(
        ("grant_type", "authorization_code"), ("code", "abc"))),
    "grant-authorization-code-unknown-client": TokenCase(401, "invalid_client", lambda w: form(
        ("grant_type", "authorization_code"), ("code", "abc"), ("code_verifier", "v" * 43),
        ("client_id", "cli_unknown"))),
    "grant-saml2": TokenCase(400, "unsupported_grant_type", lambda w: form(
        ("grant_type", "urn:ietf:params:oauth:grant-type:saml2-bearer"), ("assertion", "x"))),
    "grant-wrong-case": TokenCase(400, "unsupported_grant_type", lambda w: form(
        ("grant_type", "CLIENT_CREDENTIALS"), _cc(w))),
    "grant-missing": TokenCase(400, "invalid_request", lambda w: form(_cc(w))),
    "grant-empty": TokenCase(400, "invalid_request", lambda w: form(("grant_type", ""), _cc(w))),
    "grant-empty-body": TokenCase(400, "invalid_request", lambda w: {"content": b"", "headers": FORM}),
    "grant-json-number": TokenCase(400, "invalid_request", lambda w: {"json": {"grant_type": 5}}),
    # RFC 6749 section 3.2: "parameters MUST NOT be included more than once"
    "dup-grant-type": TokenCase(400, "invalid_request", lambda w: form(GT_CC, GT_CC, _cc(w))),
    "dup-client-secret": TokenCase(400, "invalid_request", lambda w: form(GT_CC, _cc(w), _cc(w))),
    "dup-scope": TokenCase(400, "invalid_request", lambda w: form(
        GT_CC, _cc(w), ("scope", "agents.read"), ("scope", "agents.read"))),
    "dup-refresh-token": TokenCase(400, "invalid_request", lambda w: form(
        ("grant_type", "refresh_token"), ("refresh_token", w.root["refresh_token"]),
        ("refresh_token", w.root["refresh_token"]))),
    "dup-assertion": TokenCase(400, "invalid_request", lambda w: form(
        ("grant_type", JWT_BEARER), ("assertion", a := assertion(w)), ("assertion", a))),
    # section 2.3.1: "MUST NOT use more than one authentication method in each request"
    "basic-and-body-secret": TokenCase(400, "invalid_request", lambda w: {
        **form(GT_CC, _cc(w)), "headers": FORM | {"authorization": basic(w.agent_id, w.root["api_key"])}}),
    # scopes (section 5.2 invalid_scope)
    "cc-unknown-scope": TokenCase(400, "invalid_scope", lambda w: form(GT_CC, _cc(w), ("scope", "agents.read nope"))),
    "refresh-unknown-scope": TokenCase(400, "invalid_scope", lambda w: form(
        ("grant_type", "refresh_token"), ("refresh_token", w.root["refresh_token"]), ("scope", "admin"))),
    "jwt-bearer-unknown-scope": TokenCase(400, "invalid_scope", lambda w: form(
        ("grant_type", JWT_BEARER), ("assertion", assertion(w)), ("scope", "root"))),
    "cc-json-scope-list": TokenCase(400, "invalid_request", lambda w: {
        "json": {"grant_type": "client_credentials", "client_secret": w.root["api_key"], "scope": ["agents.read"]}}),
    # missing grant parameters
    "refresh-missing-token": TokenCase(400, "invalid_request", lambda w: form(("grant_type", "refresh_token"))),
    "refresh-empty-token": TokenCase(400, "invalid_request", lambda w: form(
        ("grant_type", "refresh_token"), ("refresh_token", ""))),
    "jwt-bearer-missing-assertion": TokenCase(400, "invalid_request", lambda w: form(("grant_type", JWT_BEARER))),
    "exchange-missing-subject": TokenCase(400, "invalid_request", lambda w: form(
        ("grant_type", TOKEN_EXCHANGE), _cc(w))),
    "exchange-missing-subject-type": TokenCase(400, "invalid_request", lambda w: form(
        ("grant_type", TOKEN_EXCHANGE), ("subject_token", w.token), _cc(w))),
    # wrong types (JSON)
    "json-secret-number": TokenCase(400, "invalid_request", lambda w: {
        "json": {"grant_type": "client_credentials", "client_secret": 12345}}),
    "json-refresh-object": TokenCase(400, "invalid_request", lambda w: {
        "json": {"grant_type": "refresh_token", "refresh_token": {"token": w.root["refresh_token"]}}}),
    "json-assertion-list": TokenCase(400, "invalid_request", lambda w: {
        "json": {"grant_type": JWT_BEARER, "assertion": [assertion(w)]}}),
    # invalid grants
    "refresh-garbage": TokenCase(400, "invalid_grant", lambda w: form(
        ("grant_type", "refresh_token"), ("refresh_token", "rt_" + "A" * 43))),
    "refresh-is-access-token": TokenCase(400, "invalid_grant", lambda w: form(
        ("grant_type", "refresh_token"), ("refresh_token", w.token))),
    "jwt-bearer-garbage": TokenCase(400, "invalid_grant", lambda w: form(
        ("grant_type", JWT_BEARER), ("assertion", "a.b.c"))),
    "jwt-bearer-access-token": TokenCase(400, "invalid_grant", lambda w: form(
        ("grant_type", JWT_BEARER), ("assertion", w.token))),
    # client authentication (section 5.2: invalid_client is 401 with WWW-Authenticate)
    "cc-no-secret": TokenCase(401, "invalid_client", lambda w: form(GT_CC)),
    "cc-empty-secret": TokenCase(401, "invalid_client", lambda w: form(GT_CC, ("client_secret", ""))),
    "cc-garbage-secret": TokenCase(401, "invalid_client", lambda w: form(GT_CC, ("client_secret", "hunter2"))),
    "cc-unknown-key": TokenCase(401, "invalid_client", lambda w: form(GT_CC, ("client_secret", "ak_live_" + "Q" * 43))),
    "cc-key-last-char-flipped": TokenCase(401, "invalid_client", lambda w: form(
        GT_CC, ("client_secret", w.root["api_key"][:-1] + ("A" if w.root["api_key"][-1] != "A" else "B")))),
    "cc-client-id-mismatch": TokenCase(401, "invalid_client", lambda w: form(
        GT_CC, _cc(w), ("client_id", w.child["id"]))),
    "basic-wrong-secret": TokenCase(401, "invalid_client", lambda w: {
        **form(GT_CC), "headers": FORM | {"authorization": basic(w.agent_id, "ak_live_" + "Z" * 43)}}),
    "basic-malformed": TokenCase(401, "invalid_client", lambda w: {
        **form(GT_CC), "headers": FORM | {"authorization": "Basic !!not-base64!!"}}),
    "basic-other-agent": TokenCase(401, "invalid_client", lambda w: {
        **form(GT_CC), "headers": FORM | {"authorization": basic(w.child["id"], w.root["api_key"])}}),
}  # fmt: skip


ERROR_CLASSES = sorted({(c.status, c.error) for c in TOKEN_CASES.values()})


@pytest.mark.parametrize(("status", "error"), ERROR_CLASSES, ids=[e for _, e in ERROR_CLASSES])
async def test_token_endpoint_refuses(
    client: httpx.AsyncClient, services: Services, world: Root, status: int, error: str
) -> None:
    """One test per error class; each case is its own request with its own before/after snapshot."""
    cases = {name: c for name, c in TOKEN_CASES.items() if (c.status, c.error) == (status, error)}
    assert cases
    for name, case in cases.items():
        request = case.request(world)
        before = await snapshot(services)
        response = await client.post(TOKEN, **request)
        assert_error(response, status, error, challenge="Basic" if error == "invalid_client" else None, what=name)
        assert response.headers["cache-control"] == "no-store", name
        assert world.root["api_key"] not in response.text, name
        await assert_unchanged(services, before, name)


async def test_token_excess_scopes_are_invalid_scope(
    client: httpx.AsyncClient, services: Services, world: Root
) -> None:
    limited = ok(
        await client.post("/api/v1/credentials", json={"scopes": ["agents.read"]}, headers=bearer(world.token)), 201
    )
    narrow = await client_credentials(client, world.root["api_key"], "agents.read")
    attempts = {
        "key limited to agents.read asks agents.write": form(
            GT_CC, ("client_secret", limited["raw_key"]), ("scope", "agents.read agents.write")
        ),
        "refresh of an agents.read family asks audit.read": form(
            ("grant_type", "refresh_token"), ("refresh_token", narrow["refresh_token"]), ("scope", "audit.read")
        ),
    }
    for label, request in attempts.items():
        before = await snapshot(services)
        assert_error(await client.post(TOKEN, **request), 400, "invalid_scope")
        await assert_unchanged(services, before, label)
    # The refused refresh consumed nothing: the token still rotates, within its family's scope.
    refreshed = await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": narrow["refresh_token"]})
    assert refreshed.status_code == 200 and refreshed.json()["scope"] == "agents.read"


async def test_jwt_bearer_refused_for_scope_does_not_burn_the_assertion(
    client: httpx.AsyncClient, services: Services, world: Root
) -> None:
    signed = assertion(world)
    before = await snapshot(services)
    refused = await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": signed, "scope": "nope"})
    assert_error(refused, 400, "invalid_scope")
    await assert_unchanged(services, before)
    assert (await client.post(TOKEN, data={"grant_type": JWT_BEARER, "assertion": signed})).status_code == 200


async def test_token_body_size_limit(client: httpx.AsyncClient, services: Services, world: Root) -> None:
    prefix = urlencode([GT_CC, _cc(world)]).encode() + b"&pad="

    async def chunks() -> Any:  # no Content-Length: the limit is enforced while streaming
        yield prefix
        for _ in range(10):
            yield b"x" * 8192

    for label, request in {
        "one byte over": {"content": prefix + b"x" * (MAX_BODY + 1 - len(prefix)), "headers": FORM},
        "four times over": {"content": prefix + b"x" * (4 * MAX_BODY - len(prefix)), "headers": FORM},
        "chunked": {"content": chunks(), "headers": FORM},
    }.items():
        before = await snapshot(services)
        assert_error(await client.post(TOKEN, **request), 413, "invalid_request", what=label)
        await assert_unchanged(services, before, label)
    exactly = await client.post(TOKEN, content=prefix + b"x" * (MAX_BODY - len(prefix)), headers=FORM)
    assert exactly.status_code == 200, exactly.text  # unknown parameters are ignored (RFC 6749 section 3.1)


async def test_malformed_client_secret_fails_only_its_own_request(
    request: pytest.FixtureRequest, client: httpx.AsyncClient, backend: str, world: Root
) -> None:
    """Token requests are issued in micro-batches; one bad request must not fail the others of its batch."""
    good = {"grant_type": "client_credentials", "client_secret": world.root["api_key"]}
    bad = {"grant_type": "client_credentials", "client_secret": "ak_live_\u0000" + "a" * 42}
    bodies = [good, bad] * 5
    responses = await asyncio.gather(*(client.post(TOKEN, data=b) for b in bodies))
    statuses = [r.status_code for r in responses]
    assert statuses[0::2] == [200] * 5, statuses
    assert all(s in (400, 401) for s in statuses[1::2]), statuses
