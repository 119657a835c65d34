"""Helpers shared by the delegation tests (``test_delegation*.py``): agents with keys, delegating, token
exchange (RFC 8693), a depth-3 chain built through the REST API, offline verifiers fed only with what the
service publishes, and a snapshot of the tables a refused request must not change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import text

from agentauth.bootstrap import Services
from agentauth.vc import StaticStatusLists, Verifier
from agentauth.vc.jws import parse_compact
from support import ISSUER_URL, bearer, quickstart

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"

# What each hop of the standard chain hands down: every hop narrows.
ROOT_GRANT = ["agents.read", "api.read", "credentials.read", "delegations.read", "delegations.write"]
SECOND_HOP = ["agents.read", "api.read", "delegations.read", "delegations.write"]
THIRD_HOP = ["agents.read", "api.read"]
HOP_SCOPES = (ROOT_GRANT, SECOND_HOP, THIRD_HOP)


def claims(jwt: str) -> dict[str, Any]:
    """The payload of a compact JWS, signature not checked (for building variants and reading fields)."""
    return parse_compact(jwt).payload


async def child_with_key(
    client: httpx.AsyncClient, root_token: str, name: str, scopes: list[str] | None = None
) -> dict[str, Any]:
    """A child agent of the caller, with an API key and a client_credentials access token."""
    body: dict[str, Any] = {"name": name, "agent_type": "tool"}
    if scopes is not None:
        body["scopes"] = scopes
    created = await client.post("/api/v1/agents", json=body, headers=bearer(root_token))
    assert created.status_code == 201, created.text
    agent = created.json()["agent"]
    key = await client.post("/api/v1/credentials", json={"agent_id": agent["id"]}, headers=bearer(root_token))
    assert key.status_code == 201, key.text
    token = await client.post(
        "/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": key.json()["raw_key"]}
    )
    assert token.status_code == 200, token.text
    return {"agent": agent, "key": key.json()["raw_key"], "token": token.json()["access_token"]}


async def delegate(
    client: httpx.AsyncClient, token: str, delegate_id: str, scopes: list[str], **extra: Any
) -> httpx.Response:
    body = {"delegate_agent_id": delegate_id, "scopes": scopes, **extra}
    return await client.post("/api/v1/delegations", json=body, headers=bearer(token))


async def exchange(
    client: httpx.AsyncClient,
    subject_token: str,
    *,
    actor_token: str | None = None,
    api_key: str | None = None,
    scope: str | None = None,
    subject_token_type: str = JWT_TYPE,
) -> httpx.Response:
    data = {"grant_type": EXCHANGE, "subject_token": subject_token, "subject_token_type": subject_token_type}
    if actor_token is not None:
        data |= {"actor_token": actor_token, "actor_token_type": ACCESS_TYPE}
    if api_key is not None:
        data["client_secret"] = api_key
    if scope is not None:
        data["scope"] = scope
    return await client.post("/api/v1/auth/token", data=data)


@dataclass
class Chain:
    """root -> agents[0] -> agents[1] -> agents[2]: ``delegations[i]`` is the hop to ``agents[i]`` and
    ``tokens[i]`` the access token ``agents[i]`` obtained by exchanging it."""

    root: dict[str, Any]
    agents: list[dict[str, Any]] = field(default_factory=list)
    delegations: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    @property
    def links(self) -> list[str]:
        return [d["credential"] for d in self.delegations]


async def build_chain(client: httpx.AsyncClient, hops: int = 3) -> Chain:
    """A chain of ``hops`` delegations through the REST API, each delegate acting under the previous hop."""
    root = await quickstart(client, "root")
    chain = Chain(root=root)
    for i in range(hops):
        chain.agents.append(await child_with_key(client, root["access_token"], f"hop{i + 1}"))
    acting = root["access_token"]
    for i, agent in enumerate(chain.agents):
        created = await delegate(client, acting, agent["agent"]["id"], HOP_SCOPES[i])
        assert created.status_code == 201, created.text
        chain.delegations.append(created.json())
        exchanged = await exchange(client, created.json()["credential"], actor_token=agent["token"])
        assert exchanged.status_code == 200, exchanged.text
        acting = exchanged.json()["access_token"]
        chain.tokens.append(acting)
    return chain


def status_urls(*jwts: str) -> set[str]:
    """Every status list a token (and the delegation chain inside it) or credential points at."""
    urls = set()
    for jwt in jwts:
        body = claims(jwt)
        entries = body["vc"].get("credentialStatus") or []
        urls |= {entry["statusListCredential"] for entry in ([entries] if isinstance(entries, dict) else entries)}
        urls |= status_urls(*body.get("delegation_chain", []))
    return urls


async def offline_verifier(client: httpx.AsyncClient, *jwts: str) -> Verifier:
    """A third-party verifier holding only the published JWKS and the status lists these JWTs name."""
    jwks = (await client.get("/.well-known/jwks.json")).json()
    lists = {}
    for url in status_urls(*jwts):
        response = await client.get(urlsplit(url).path)
        assert response.status_code == 200, response.text
        lists[url] = response.text
    return Verifier(issuer_url=ISSUER_URL, jwks=jwks, status_source=StaticStatusLists(lists))


async def snapshot(services: Services) -> dict[str, list[Any]]:
    """The state a refused request must leave alone: agents, API keys, delegations and signed credentials."""
    queries = {
        "agents": "SELECT id, status FROM agents ORDER BY id",
        "api_keys": "SELECT id, status, revoked_at FROM api_keys ORDER BY id",
        "delegations": "SELECT id, status, revoked_at, expires_at FROM delegations ORDER BY id",
        "credentials": "SELECT jti, kind, revoked_at FROM credentials ORDER BY jti",
    }
    async with services.engine.connect() as conn:
        return {name: [tuple(row) for row in await conn.execute(text(sql))] for name, sql in queries.items()}


def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json().get("error")
