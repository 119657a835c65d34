"""Helpers for the token-lifecycle tests: an independent status-list decoder and token plumbing.

The decoder deliberately shares no code with ``agentauth.vc``: it splits the JWT, base64url-decodes by hand,
gunzips, and reads bits as Bitstring Status List v1.0 section 3.1 defines them (bit 0 = most significant bit
of byte 0). If the service and this decoder disagree, one of them is wrong - and a verifier in the field
would only ever run something like this one.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any
from urllib.parse import urlsplit

import httpx

from support import bearer, status_entry

INTROSPECT = "/api/v1/auth/introspect"
REVOKE = "/api/v1/auth/revoke"
TOKEN = "/api/v1/auth/token"
INACTIVE = {"active": False}


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def jwt_header(token: str) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(b64url_decode(token.split(".", maxsplit=1)[0]))
    return header


def jwt_payload(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return payload


def jtis(*tokens: str) -> list[str]:
    """The ``jti`` of each token, sorted (to compare sets of tokens with what the audit log names)."""
    return sorted(jwt_payload(t)["jti"] for t in tokens)


def status_slot(credential: str) -> tuple[str, int]:
    """(path of the status list URL, index) of a credential's ``BitstringStatusListEntry``."""
    entry = status_entry(jwt_payload(credential)["vc"])
    assert entry["type"] == "BitstringStatusListEntry" and entry["statusPurpose"] == "revocation"
    assert isinstance(entry["statusListIndex"], str) and entry["statusListIndex"].isdecimal()
    return urlsplit(entry["statusListCredential"]).path, int(entry["statusListIndex"])


def decode_bits(list_jwt: str) -> bytes:
    """The raw bitstring of a ``BitstringStatusListCredential`` JWT, decoded by hand."""
    encoded = jwt_payload(list_jwt)["vc"]["credentialSubject"]["encodedList"]
    assert encoded.startswith("u"), "encodedList must carry the multibase base64url prefix 'u'"
    return gzip.decompress(b64url_decode(encoded[1:]))


def bit(bits: bytes, index: int) -> int:
    return (bits[index // 8] >> (7 - index % 8)) & 1


def set_bits(bits: bytes) -> set[int]:
    return {n * 8 + k for n, byte in enumerate(bits) if byte for k in range(8) if (byte >> (7 - k)) & 1}


async def fetch_list(client: httpx.AsyncClient, path: str) -> httpx.Response:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response


async def status_bits(client: httpx.AsyncClient, *credentials: str) -> list[int]:
    """The status bit of each credential, read from its list as fetched over HTTP."""
    lists: dict[str, bytes] = {}
    out = []
    for credential in credentials:
        path, index = status_slot(credential)
        if path not in lists:
            lists[path] = decode_bits((await fetch_list(client, path)).text)
        out.append(bit(lists[path], index))
    return out


async def client_token(client: httpx.AsyncClient, api_key: str, scope: str | None = None) -> dict[str, Any]:
    data = {"grant_type": "client_credentials", "client_secret": api_key}
    if scope is not None:
        data["scope"] = scope
    response = await client.post(TOKEN, data=data)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def introspect(
    client: httpx.AsyncClient, caller: str, token: str, path: str = INTROSPECT, **extra: str
) -> dict[str, Any]:
    """Introspect ``token`` authenticating with ``caller`` (a bearer token, or an API key as client_secret)."""
    data = {"token": token, **extra}
    if caller.startswith("ak_"):
        response = await client.post(path, data={**data, "client_secret": caller})
    else:
        response = await client.post(path, data=data, headers=bearer(caller))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def revoke(client: httpx.AsyncClient, caller: str, token: str, path: str = REVOKE, **extra: str) -> None:
    data = {"token": token, **extra}
    if caller.startswith("ak_"):
        response = await client.post(path, data={**data, "client_secret": caller})
    else:
        response = await client.post(path, data=data, headers=bearer(caller))
    assert response.status_code == 200, response.text


async def audit_targets(client: httpx.AsyncClient, token: str, action: str) -> list[str]:
    """target_id of every audit event with ``action`` visible to ``token``'s tenant (all pages)."""
    targets: list[str] = []
    cursor: str | None = None
    while True:
        params = {"action": action, "limit": "100", **({"cursor": cursor} if cursor else {})}
        page = await client.get("/api/v1/audit/events", params=params, headers=bearer(token))
        assert page.status_code == 200, page.text
        targets.extend(e["target_id"] for e in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if not cursor:
            return targets


async def child_with_key(client: httpx.AsyncClient, root_token: str, name: str) -> tuple[dict[str, Any], str, str]:
    """A child agent of the caller, an API key for it, and an access token from that key."""
    created = await client.post("/api/v1/agents", json={"name": name, "agent_type": "tool"}, headers=bearer(root_token))
    assert created.status_code == 201, created.text
    agent: dict[str, Any] = created.json()["agent"]
    key = await client.post("/api/v1/credentials", json={"agent_id": agent["id"]}, headers=bearer(root_token))
    assert key.status_code == 201, key.text
    raw_key: str = key.json()["raw_key"]
    return agent, raw_key, str((await client_token(client, raw_key))["access_token"])


async def delegate(client: httpx.AsyncClient, token: str, delegate_id: str, scopes: list[str]) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/delegations", json={"delegate_agent_id": delegate_id, "scopes": scopes}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def exchange(client: httpx.AsyncClient, credential: str, actor_token: str) -> httpx.Response:
    """RFC 8693: the delegate trades a delegation credential (plus its own token) for a delegated token."""
    return await client.post(
        TOKEN,
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": credential,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "actor_token": actor_token,
            "actor_token_type": "urn:ietf:params:oauth:token-type:access_token",
        },
    )
