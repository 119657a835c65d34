"""The authorization code grant end to end through the pages and the token endpoint (issue 14 item 4), on SQLite
and PostgreSQL: an owner logs in, consents for one of their agents (or themself), the client redeems the code
once with its PKCE verifier, and the token says who it is for (``sub``), through which client (``client_id``) and
acting as which agent (``act``); refresh keeps all of it. Every refusal of RFC 6749 section 4.1.2.1 / 4.1.3 and
RFC 7636 is checked to store nothing and issue nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from agentauth import paths
from agentauth.bootstrap import Services
from agentauth.issuer.context import RequestContext
from agentauth.keys import KeyPair
from agentauth.vc import NonceRegistry, create_proof
from support import ISSUER_URL, assert_error, bearer, ok, quickstart

pytestmark = pytest.mark.anyio
REDIRECT = "http://127.0.0.1:9000/callback"
PASSWORD = "correct horse battery staple"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def hidden(page: str) -> dict[str, str]:
    import html

    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


async def register(client: httpx.AsyncClient, **extra: Any) -> str:
    body = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Test CLI"} | extra
    registered = await client.post(paths.REGISTER, json=body)
    assert registered.status_code == 201, registered.text
    return str(registered.json()["client_id"])


async def owner_with_tenant(client: httpx.AsyncClient, services: Services, email: str) -> dict[str, Any]:
    """An owner signed up and logged in through the pages (the session cookie stays in ``client``), owning a
    tenant made by quickstart and claimed with its root's API key."""
    for path in (paths.SIGNUP, paths.LOGIN):
        page = await client.get(path)
        assert page.status_code == 200, page.text
        form = hidden(page.text) | {"email": email, "password": PASSWORD}
        done = await client.post(path, data=form, headers={"Origin": ISSUER_URL})
        assert done.status_code in (200, 303), done.text
    tenant = await quickstart(client, "tenant-root", "assistant")
    session = await services.owners.session(client.cookies.get("agentauth_session"))
    assert session is not None
    await services.owners.claim_tenant(session, tenant["api_key"], RequestContext())
    return {"tenant": tenant, "owner_id": session.owner.id}


async def consent(
    client: httpx.AsyncClient, query: dict[str, Any], act_as: str | None = None, decision: str = "allow"
) -> httpx.Response:
    page = await client.get(paths.AUTHORIZE, params=query)
    assert page.status_code == 200, page.text
    form = hidden(page.text) | {"decision": decision}
    values = re.findall(r'name="act_as" value="([^"]+)"', page.text)
    form["act_as"] = act_as if act_as is not None else values[0]
    return await client.post(paths.AUTHORIZE, data=form, headers={"Origin": ISSUER_URL})


def redirected(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def test_code_flow_for_an_agent_of_the_owner(client: httpx.AsyncClient, services: Services) -> None:
    client_id = await register(client)
    owner = await owner_with_tenant(client, services, "ada@example.com")
    verifier, challenge = pkce()
    query = {
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "s-1",
        "code_challenge": challenge, "code_challenge_method": "S256", "scope": "agents.read",
    }  # fmt: skip
    agent_id = owner["tenant"]["agent"]["id"]
    answer = redirected(await consent(client, query, act_as=f"agent:{agent_id}"))
    assert answer["state"] == "s-1" and answer["iss"] == ISSUER_URL and "code" in answer
    form = {"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": client_id}  # fmt: skip
    tokens = ok(await client.post(paths.TOKEN, data=form))
    assert tokens["scope"] == "agents.read" and tokens["token_type"].lower() == "bearer"
    claims = services.tokens.self_verifier().verify_access_token(tokens["access_token"]).claims
    assert claims["sub"] == owner["owner_id"] and claims["client_id"] == client_id
    assert claims["act"] == {"sub": owner["tenant"]["agent"]["did"]} and claims["aud"] == ISSUER_URL
    # The token works on AgentAuth's own API, as the agent.
    listed = await client.get(paths.AGENTS, headers=bearer(tokens["access_token"]))
    assert listed.status_code == 200, listed.text
    # The code is single use: again -> invalid_grant, and what it issued is revoked.
    assert_error(await client.post(paths.TOKEN, data=form), 400, "invalid_grant")
    seen = ok(await client.post(paths.INTROSPECT, data={"token": tokens["access_token"],
                                                       "client_secret": owner["tenant"]["api_key"]}))  # fmt: skip
    assert seen["active"] is False
    refreshed = await client.post(paths.TOKEN, data={"grant_type": "refresh_token",
                                                    "refresh_token": tokens["refresh_token"]})  # fmt: skip
    assert_error(refreshed, 400, "invalid_grant")


async def test_one_code_presented_at_once_many_times_has_one_winner(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Redemptions are recorded set at a time (with the issuing round): the same code sent 8 times at once is
    spent once - one token pair, the other requests invalid_grant - and, being presented again, what it issued
    is revoked (RFC 6749 section 4.1.2). A code whose agent was deactivated since the consent issues nothing."""
    client_id = await register(client)
    owner = await owner_with_tenant(client, services, "cy@example.com")
    verifier, challenge = pkce()
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
             "code_challenge": challenge, "code_challenge_method": "S256"}  # fmt: skip
    answer = redirected(await consent(client, query, act_as=f"agent:{owner['tenant']['agent']['id']}"))
    form = {"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": client_id}  # fmt: skip
    answers = await asyncio.gather(*(client.post(paths.TOKEN, data=form) for _ in range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [400] * 7, [a.text for a in answers]
    assert all(a.json()["error"] == "invalid_grant" for a in answers if a.status_code == 400)
    (won,) = (a.json() for a in answers if a.status_code == 200)
    seen = ok(await client.post(paths.INTROSPECT, data={"token": won["access_token"],
                                                       "client_secret": owner["tenant"]["api_key"]}))  # fmt: skip
    assert seen["active"] is False

    child = {"name": "leaf", "agent_type": "tool"}
    root_token = owner["tenant"]["access_token"]
    made = ok(await client.post(paths.AGENTS, json=child, headers=bearer(root_token)), 201)
    verifier, challenge = pkce()
    query |= {"code_challenge": challenge}
    answer = redirected(await consent(client, query, act_as=f"agent:{made['agent']['id']}"))
    ok(await client.delete(f"{paths.AGENTS}/{made['agent']['id']}", headers=bearer(root_token)))
    form |= {"code": answer["code"], "code_verifier": verifier}
    before = ok(await client.get(f"{paths.AGENTS}/{made['agent']['id']}", headers=bearer(root_token)))
    assert_error(await client.post(paths.TOKEN, data=form), 400, "invalid_grant")
    assert before["status"] != "active"


async def test_refresh_keeps_subject_actor_client_and_audience(client: httpx.AsyncClient, services: Services) -> None:
    client_id = await register(client, grant_types=["authorization_code", "refresh_token"])
    owner = await owner_with_tenant(client, services, "bob@example.com")
    verifier, challenge = pkce()
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
             "code_challenge": challenge, "code_challenge_method": "S256"}  # fmt: skip
    answer = redirected(await consent(client, query, act_as=f"owner:{owner['tenant']['agent']['id']}"))
    form = {"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": client_id}  # fmt: skip
    first = ok(await client.post(paths.TOKEN, data=form))
    claims = services.tokens.self_verifier().verify_access_token(first["access_token"]).claims
    assert claims["sub"] == owner["owner_id"] and "act" not in claims
    again = ok(await client.post(paths.TOKEN, data={"grant_type": "refresh_token", "client_id": client_id,
                                                   "refresh_token": first["refresh_token"]}))  # fmt: skip
    renewed = services.tokens.self_verifier().verify_access_token(again["access_token"]).claims
    for name in ("sub", "client_id", "aud", "scope"):
        assert renewed[name] == claims[name], name
    other = await client.post(paths.TOKEN, data={"grant_type": "refresh_token", "client_id": "cli_other",
                                                "refresh_token": again["refresh_token"]})  # fmt: skip
    assert_error(other, 400, "invalid_grant")


async def test_pkce_and_redirect_rules(client: httpx.AsyncClient, services: Services) -> None:
    client_id = await register(client)
    await owner_with_tenant(client, services, "cy@example.com")
    verifier, challenge = pkce()
    base = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "x",
            "code_challenge": challenge, "code_challenge_method": "S256"}  # fmt: skip
    # Client or redirect URI in doubt: an error page, never a redirect.
    for bad in ({"client_id": "cli_unknown"}, {"redirect_uri": "https://evil.example/cb"},
                {"redirect_uri": REDIRECT + "/x"}, {"client_id": ""}):  # fmt: skip
        page = await client.get(paths.AUTHORIZE, params=base | bad)
        assert page.status_code == 400 and "location" not in page.headers, bad
    # Everything else: back to the client with the error, state and iss.
    for bad, error in (
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"resource": "https://unknown.example/api"}, "invalid_target"),
    ):
        query = {k: v for k, v in (base | bad).items() if v is not None}
        page = await client.get(paths.AUTHORIZE, params=query)
        if error == "invalid_target":  # known only once the owner chose who the client acts as
            page = await consent(client, query)
        answer = redirected(page)
        assert answer["error"] == error and answer["state"] == "x" and answer["iss"] == ISSUER_URL, bad
    answer = redirected(await consent(client, base))
    form = {"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": REDIRECT,
            "client_id": client_id}  # fmt: skip
    assert_error(await client.post(paths.TOKEN, data=form), 400, "invalid_request")  # no verifier
    wrong = form | {"code_verifier": pkce()[0]}
    assert_error(await client.post(paths.TOKEN, data=wrong), 400, "invalid_grant")
    other = await register(client)
    stolen = form | {"code_verifier": verifier, "client_id": other}
    assert_error(await client.post(paths.TOKEN, data=stolen), 400, "invalid_grant")
    elsewhere = form | {"code_verifier": verifier, "redirect_uri": "http://127.0.0.1:9000/other"}
    assert_error(await client.post(paths.TOKEN, data=elsewhere), 400, "invalid_grant")
    ok(await client.post(paths.TOKEN, data=form | {"code_verifier": verifier}))


async def test_denial_login_redirect_and_csrf(client: httpx.AsyncClient, services: Services) -> None:
    client_id = await register(client)
    _, challenge = pkce()
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "d",
             "code_challenge": challenge, "code_challenge_method": "S256"}  # fmt: skip
    anonymous = await client.get(paths.AUTHORIZE, params=query)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith(paths.LOGIN + "?next=")
    await owner_with_tenant(client, services, "dee@example.com")
    answer = redirected(await consent(client, query, decision="deny"))
    assert answer["error"] == "access_denied" and answer["state"] == "d" and answer["iss"] == ISSUER_URL
    page = await client.get(paths.AUTHORIZE, params=query)
    form = hidden(page.text) | {"decision": "allow", "act_as": re.findall(r'value="(owner:[^"]+)"', page.text)[0]}
    for forged in ({"csrf_token": "forged"}, {"csrf_token": ""}):
        refused = await client.post(paths.AUTHORIZE, data=form | forged, headers={"Origin": ISSUER_URL})
        assert refused.status_code == 403 and "location" not in refused.headers
    cross = await client.post(paths.AUTHORIZE, data=form, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and "location" not in cross.headers


async def test_metadata_validates_with_authlib(settings_factory: Any, backend: str) -> None:
    """RFC 8414 as Authlib's ``AuthorizationServerMetadata.validate`` reads it (an https issuer, as it demands)."""
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    from agentauth.api.app import create_app
    from agentauth.bootstrap import build_services
    from support import reset_postgres

    if backend == "postgres":
        await reset_postgres()
    issuer = "https://auth.example.com"
    services = await build_services(settings_factory(issuer_url=issuer))
    try:
        app = create_app(services=services)
        app.state.services = services
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=issuer) as http:
            metadata = ok(await http.get("/.well-known/oauth-authorization-server"))
    finally:
        await services.close()
    AuthorizationServerMetadata(metadata).validate()
    assert metadata["issuer"] == issuer and metadata["authorization_endpoint"] == f"{issuer}/authorize"
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "authorization_code" in metadata["grant_types_supported"]
    assert {"none", "client_secret_basic"} <= set(metadata["token_endpoint_auth_methods_supported"])
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["client_id_metadata_document_supported"] is True
    assert metadata["registration_endpoint"] == f"{issuer}/api/v1/auth/register"


async def test_client_authentication_at_redemption(client: httpx.AsyncClient, services: Services) -> None:
    """The client is authenticated before the code is looked at (one read for a registered client: its
    registration and the code together): an unknown client or a wrong or missing secret is invalid_client, whether
    or not the code exists; an unknown code of a known client is invalid_grant."""
    body = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post", "client_name": "Web"}
    confidential = await client.post(paths.REGISTER, json=body)
    assert confidential.status_code == 201, confidential.text
    client_id, secret = confidential.json()["client_id"], confidential.json()["client_secret"]
    public_id = await register(client)
    await owner_with_tenant(client, services, "dee@example.com")
    verifier, challenge = pkce()
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
             "code_challenge": challenge, "code_challenge_method": "S256"}  # fmt: skip
    code = redirected(await consent(client, query))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            "client_id": client_id}  # fmt: skip
    for refused in (form, form | {"client_secret": "not the secret"}, form | {"client_id": "cli_unknown"},
                    form | {"client_id": "cli_unknown", "client_secret": secret}):  # fmt: skip
        assert_error(await client.post(paths.TOKEN, data=refused), 401, "invalid_client")
    unknown = form | {"client_id": public_id, "code": secrets.token_urlsafe(32)}
    assert_error(await client.post(paths.TOKEN, data=unknown), 400, "invalid_grant")
    tokens = ok(await client.post(paths.TOKEN, data=form | {"client_secret": secret}))
    claims = services.tokens.self_verifier().verify_access_token(tokens["access_token"]).claims
    assert claims["client_id"] == client_id


async def test_dpop_jkt_binds_the_code_to_the_clients_key(client: httpx.AsyncClient, services: Services) -> None:
    """RFC 9449 section 10: with ``dpop_jkt`` in the authorization request the code is redeemed only with a proof
    by that key. A stolen code is useless: without a proof, or with the thief's own, it is refused - and not spent,
    so the client redeems it after. A malformed ``dpop_jkt`` is an error at the redirect URI."""
    client_id = await register(client)
    owner = await owner_with_tenant(client, services, "jkt@example.com")
    key, token_url = KeyPair.generate(), f"{ISSUER_URL}{paths.TOKEN}"
    verifier, challenge = pkce()
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "code_challenge": challenge,
             "code_challenge_method": "S256", "dpop_jkt": key.public.thumbprint(), "state": "s1"}  # fmt: skip
    answer = redirected(await consent(client, query, act_as=f"agent:{owner['tenant']['agent']['id']}"))
    form = {"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": client_id}  # fmt: skip
    assert_error(await client.post(paths.TOKEN, data=form), 400, "invalid_dpop_proof")
    thief = create_proof(KeyPair.generate(), "POST", token_url)
    stolen = await client.post(paths.TOKEN, data=form, headers={"DPoP": thief})
    assert_error(stolen, 400, "invalid_grant")
    assert "another DPoP key" in stolen.json()["error_description"]
    tokens = ok(await client.post(paths.TOKEN, data=form, headers={"DPoP": create_proof(key, "POST", token_url)}))
    assert tokens["token_type"] == "DPoP"
    claims = (
        services.tokens.self_verifier()
        .verify_access_token(tokens["access_token"], proven_jkt=key.public.thumbprint())
        .claims
    )
    assert claims["cnf"] == {"jkt": key.public.thumbprint()}

    bad = redirected(await client.get(paths.AUTHORIZE, params=query | {"dpop_jkt": "not-a-thumbprint"}))
    assert bad["error"] == "invalid_request" and "dpop_jkt" in bad["error_description"] and bad["state"] == "s1"


async def test_a_client_registered_dpop_bound_gets_no_bearer_tokens(
    client: httpx.AsyncClient, services: Services
) -> None:
    """RFC 9449 section 5.2 client metadata ``dpop_bound_access_tokens``: "the authorization server MUST reject
    token requests from this client that do not contain the DPoP header"."""
    refused = await client.post(paths.REGISTER, json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                                                      "dpop_bound_access_tokens": "yes"})  # fmt: skip
    assert_error(refused, 400, "invalid_client_metadata")
    body = {"redirect_uris": [REDIRECT], "dpop_bound_access_tokens": True, "token_endpoint_auth_method": "none"}
    registered = ok(await client.post(paths.REGISTER, json=body), 201)
    assert registered["dpop_bound_access_tokens"] is True
    owner = await owner_with_tenant(client, services, "bound@example.com")
    verifier, challenge = pkce()
    query = {"response_type": "code", "client_id": registered["client_id"], "redirect_uri": REDIRECT,
             "code_challenge": challenge, "code_challenge_method": "S256"}  # fmt: skip
    answer = redirected(await consent(client, query, act_as=f"agent:{owner['tenant']['agent']['id']}"))
    form = {"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": registered["client_id"]}  # fmt: skip
    bearer_request = await client.post(paths.TOKEN, data=form)
    assert_error(bearer_request, 400, "invalid_dpop_proof")
    proof = create_proof(KeyPair.generate(), "POST", f"{ISSUER_URL}{paths.TOKEN}")
    assert ok(await client.post(paths.TOKEN, data=form, headers={"DPoP": proof}))["token_type"] == "DPoP"


async def test_a_public_clients_code_and_refresh_are_bound_to_its_dpop_key(
    client: httpx.AsyncClient, services: Services
) -> None:
    """RFC 9449 section 5: the public client's tokens and its refresh family are bound to its proof key; a proof
    used once already is refused at redemption (and the code is spent all the same)."""
    client_id = await register(client, grant_types=["authorization_code", "refresh_token"])
    owner = await owner_with_tenant(client, services, "dee@example.com")
    key, token_url = KeyPair.generate(), f"{ISSUER_URL}{paths.TOKEN}"
    forms = []
    for _ in range(2):
        verifier, challenge = pkce()
        query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
                 "code_challenge": challenge, "code_challenge_method": "S256"}  # fmt: skip
        answer = redirected(await consent(client, query, act_as=f"agent:{owner['tenant']['agent']['id']}"))
        forms.append({"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": REDIRECT,
                      "code_verifier": verifier, "client_id": client_id})  # fmt: skip
    proof = create_proof(key, "POST", token_url)
    tokens = ok(await client.post(paths.TOKEN, data=forms[0], headers={"DPoP": proof}))
    assert tokens["token_type"] == "DPoP"
    claims = (
        services.tokens.self_verifier()
        .verify_access_token(tokens["access_token"], proven_jkt=key.public.thumbprint())
        .claims
    )
    assert claims["cnf"] == {"jkt": key.public.thumbprint()}
    services.tokens.proofs._local = NonceRegistry()  # another replica: only the database knows the proof
    assert_error(await client.post(paths.TOKEN, data=forms[1], headers={"DPoP": proof}), 400, "invalid_dpop_proof")
    assert_error(
        await client.post(paths.TOKEN, data=forms[1], headers={"DPoP": create_proof(key, "POST", token_url)}),
        400, "invalid_grant",
    )  # fmt: skip
    refresh = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": tokens["refresh_token"]}
    assert_error(await client.post(paths.TOKEN, data=refresh), 400, "invalid_dpop_proof")
    again = ok(await client.post(paths.TOKEN, data=refresh, headers={"DPoP": create_proof(key, "POST", token_url)}))
    assert again["token_type"] == "DPoP"
