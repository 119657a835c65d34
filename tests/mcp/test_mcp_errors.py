"""Every tool's error path through the official MCP client over HTTP: bad token, missing scope, unknown id, bad
input types, refused grants, policy denials - each an ``isError`` result whose text starts with the RFC error code
and says what to do next. Plus verify_token's failure reasons."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mcp.client.session import ClientSession
from mcp_support import RunningServer, call, fail, http_session, secrets_of

pytestmark = pytest.mark.anyio


@dataclass
class World:
    root: dict[str, Any]
    token: str  # root's full-scope token
    limited: str  # root's token from a key holding only api.read
    child: dict[str, Any]
    child_token: str
    delegation: dict[str, Any]
    key_id: str


async def make_world(server: RunningServer, session: ClientSession) -> World:
    root = await call(session, "quickstart", name="errors", agent_type="orchestrator")
    token = root["access_token"]
    key = await call(
        session, "create_credential", agent_id=root["agent"]["id"], access_token=token, scopes=["api.read"]
    )
    limited = await call(session, "authenticate", api_key=key["raw_key"])
    child = await call(session, "create_agent", name="c", agent_type="tool", access_token=token)
    child_key = await call(session, "create_credential", agent_id=child["agent"]["id"], access_token=token)
    child_pair = await call(session, "authenticate", api_key=child_key["raw_key"])
    delegation = await call(
        session, "create_delegation", delegate_agent_id=child["agent"]["id"], scopes=["api.read"], access_token=token
    )
    server.secrets += secrets_of(root, key, limited, child, child_key, child_pair)
    return World(
        root["agent"], token, limited["access_token"], child["agent"], child_pair["access_token"], delegation, key["id"]
    )


def authenticated_calls(w: World) -> dict[str, dict[str, Any]]:
    """One well-formed call per tool that needs an access token (the token added by each test)."""
    return {
        "create_credential": {"agent_id": w.root["id"]},
        "list_credentials": {},
        "rotate_credential": {"credential_id": w.key_id},
        "revoke_credential": {"credential_id": w.key_id},
        "create_delegation": {"delegate_agent_id": w.child["id"], "scopes": ["api.read"]},
        "list_delegations": {},
        "revoke_delegation": {"delegation_id": w.delegation["id"]},
        "check_permission": {"agent_id": w.child["id"], "action": "read", "resource": "files/x"},
        "list_agents": {},
        "get_agent": {"agent_id": w.root["id"]},
        "create_agent": {"name": "n", "agent_type": "tool"},
    }


async def test_bad_or_missing_access_token(server: RunningServer) -> None:
    async with http_session(f"{server.url}/mcp") as session:
        world = await make_world(server, session)
        for tool, arguments in authenticated_calls(world).items():
            text = await fail(session, tool, access_token="eyJhbGciOiJFZERTQSJ9.e30.AAAA", **arguments)
            assert text.startswith("invalid_token: the access token is invalid. Get a fresh access token"), text
            text = await fail(session, tool, **arguments)
            assert text.startswith("invalid_token: an access token is required: pass access_token"), text
        text = await fail(session, "exchange_delegation", credential=world.delegation["credential"])
        assert text.startswith("invalid_token: an access token is required")
        # introspect_token without a caller: a token that cannot authenticate itself is simply inactive.
        assert await call(session, "introspect_token", token="not-a-token") == {"active": False}
        assert (await fail(session, "introspect_token", token="x", access_token="bad")).startswith("invalid_token: ")
        assert (await fail(session, "revoke_token", token="x", access_token="bad")).startswith("invalid_token: ")
        # A refresh token alone is its own credential (issue 12 item 18); an rt_ string that is not one proves nothing.
        assert (await fail(session, "introspect_token", token="rt_abc")).startswith(
            "invalid_token: not a refresh token"
        )
        assert (await fail(session, "revoke_token", token="rt_abc")).startswith("invalid_token: not a refresh token")


async def test_missing_scope(server: RunningServer) -> None:
    async with http_session(f"{server.url}/mcp") as session:
        world = await make_world(server, session)
        for tool, arguments in authenticated_calls(world).items():
            text = await fail(session, tool, access_token=world.limited, **arguments)
            assert text.startswith("insufficient_scope: "), (tool, text)
            assert "authenticate with a key that holds it" in text
        # Introspecting a token of the tenant without tokens.introspect, or revoking another tenant's token:
        # nothing is revealed or revoked, and no error tells whether the token exists (RFC 7662 / RFC 7009).
        assert await call(session, "introspect_token", token=world.child_token, access_token=world.limited) == {
            "active": False
        }
        stranger = await call(session, "quickstart", name="stranger", agent_type="tool")
        server.secrets += secrets_of(stranger)
        outsider = stranger["access_token"]
        assert await call(session, "introspect_token", token=world.token, access_token=outsider) == {"active": False}
        assert (await call(session, "revoke_token", token=world.child_token, access_token=outsider))["success"]
        assert (await call(session, "introspect_token", token=world.child_token))["active"] is True
        # A token or delegation can never be widened.
        key = await call(session, "create_credential", agent_id=world.root["id"], access_token=world.token, scopes=[])
        server.secrets.append(key["raw_key"])
        text = await fail(session, "authenticate", api_key=key["raw_key"], scopes=["nope.scope"])
        assert text.startswith("invalid_scope: unknown scope(s): nope.scope. Ask only for scopes listed by discover")
        text = await fail(
            session,
            "exchange_delegation",
            credential=world.delegation["credential"],
            access_token=world.child_token,
            scopes=["agents.write"],
        )
        assert text.startswith("invalid_scope: none of the requested scopes was delegated"), text


async def test_unknown_ids(server: RunningServer) -> None:
    async with http_session(f"{server.url}/mcp") as session:
        w = await make_world(server, session)
        t = w.token
        cases = [
            ("get_agent", {"agent_id": "agt_000000000000000000000000"}, "no such agent"),
            ("create_credential", {"agent_id": "agt_missing"}, "no such agent"),
            ("list_credentials", {"agent_id": "agt_missing"}, "no such agent"),
            ("rotate_credential", {"credential_id": "key_missing"}, "no such credential"),
            ("revoke_credential", {"credential_id": "key_missing"}, "no such credential"),
            ("create_delegation", {"delegate_agent_id": "agt_missing", "scopes": ["api.read"]}, "no such agent"),
            ("revoke_delegation", {"delegation_id": "dlg_missing"}, "no such delegation"),
            ("check_permission", {"agent_id": "agt_missing", "action": "read", "resource": "x"}, "no such agent"),
        ]
        for tool, arguments, description in cases:
            text = await fail(session, tool, access_token=t, **arguments)
            assert text.startswith(f"not_found: {description}. The id does not exist"), (tool, text)
        # Another tenant's agent is unknown too (existence elsewhere is not revealed).
        other = await call(session, "quickstart", name="other", agent_type="tool")
        server.secrets += secrets_of(other)
        text = await fail(session, "get_agent", agent_id=other["agent"]["id"], access_token=t)
        assert text.startswith("not_found: no such agent")


BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("quickstart", {"name": "x", "agent_type": "robot"}, "agent_type"),
    ("quickstart", {"name": 12, "agent_type": "tool"}, "name"),
    ("quickstart", {"name": "   ", "agent_type": "tool"}, "name"),
    ("quickstart", {"agent_type": "tool"}, "name"),
    ("authenticate", {"api_key": 5}, "api_key"),
    ("authenticate", {"api_key": "ak_live_do-not-echo-me", "scopes": "agents.read"}, "scopes"),
    ("refresh_token", {"refresh_token_value": 7}, "refresh_token_value"),
    ("refresh_token", {}, "refresh_token_value"),
    ("introspect_token", {"token": None}, "token"),
    ("revoke_token", {"token": ["a"]}, "token"),
    ("create_credential", {"agent_id": "agt/../x", "access_token": "t"}, "agent_id"),
    ("create_credential", {"agent_id": "agt_x", "access_token": "t", "expires_in_days": 0}, "expires_in_days"),
    ("rotate_credential", {"credential_id": 12, "access_token": "t"}, "credential_id"),
    ("revoke_credential", {"credential_id": "", "access_token": "t"}, "credential_id"),
    ("create_delegation", {"delegate_agent_id": "agt_x", "scopes": [], "access_token": "t"}, "scopes"),
    ("create_delegation", {"delegate_agent_id": "agt_x", "scopes": ["a"], "max_chain_depth": 11}, "max_chain_depth"),
    ("check_permission", {"agent_id": "agt_x", "action": "fly", "resource": "x", "access_token": "t"}, "action"),
    ("check_permission", {"agent_id": "agt_x", "action": "read", "resource": "", "access_token": "t"}, "resource"),
    ("list_agents", {"limit": 101}, "limit"),
    ("list_agents", {"limit": "ten"}, "limit"),
    ("list_agents", {"offset": -1}, "offset"),
    ("list_agents", {"offset": 2**64}, "offset"),
    ("get_agent", {"agent_id": None}, "agent_id"),
    ("list_credentials", {"limit": 0}, "limit"),
    ("list_delegations", {"role": "owner"}, "role"),
    ("revoke_delegation", {"delegation_id": "a b"}, "delegation_id"),
    ("create_agent", {"name": "x", "agent_type": "tool", "trust_level": "godlike"}, "trust_level"),
    ("create_agent", {"name": "x", "agent_type": 3}, "agent_type"),
    ("verify_token", {"token": 42}, "token"),
    ("exchange_delegation", {"credential": "c", "scopes": "api.read"}, "scopes"),
]


@pytest.mark.parametrize(("tool", "arguments", "field"), BAD_INPUTS)
async def test_bad_input_types(server: RunningServer, tool: str, arguments: dict[str, Any], field: str) -> None:
    async with http_session(f"{server.url}/mcp") as session:
        text = await fail(session, tool, **arguments)
    assert text.startswith(f"invalid_request: {field}"), text
    assert text.endswith("Correct the arguments named above and call the tool again.")
    for value in arguments.values():
        if isinstance(value, str) and len(value) > 6:
            assert value not in text  # the rejected values are not echoed


async def test_refused_grants_and_conflicts(server: RunningServer) -> None:
    async with http_session(f"{server.url}/mcp") as session:
        w = await make_world(server, session)
        text = await fail(session, "authenticate", api_key="ak_live_" + "A" * 43)
        assert text.startswith("invalid_client: client authentication failed. The API key was not accepted")
        text = await fail(session, "authenticate")  # over HTTP there is no default key
        assert text.startswith("invalid_client: no API key: pass api_key")
        text = await fail(session, "refresh_token", refresh_token_value="rt_" + "x" * 40)
        assert text.startswith("invalid_grant: refresh token is invalid. That refresh token or delegation")
        text = await fail(session, "exchange_delegation", credential="a.b.c", access_token=w.child_token)
        assert text.startswith("invalid_grant: subject_token is not a valid delegation credential")
        # Only the named delegate can use a delegation.
        text = await fail(session, "exchange_delegation", credential=w.delegation["credential"], access_token=w.token)
        assert text.startswith("invalid_grant: only the delegate named in the delegation can use it")
        # The same did:key twice, a revoked key rotated, a delegation to oneself.
        did = w.root["did"]
        text = await fail(session, "quickstart", name="dup", agent_type="tool", public_key=did)
        assert text.startswith("conflict: an agent with this did:key is already registered. The object is not in")
        await call(session, "revoke_credential", credential_id=w.key_id, access_token=w.token)
        again = await call(session, "revoke_credential", credential_id=w.key_id, access_token=w.token)
        assert again["status"] == "revoked"  # idempotent
        text = await fail(session, "rotate_credential", credential_id=w.key_id, access_token=w.token)
        assert text.startswith("conflict: credential is not active"), text
        text = await fail(
            session, "create_delegation", delegate_agent_id=w.root["id"], scopes=["api.read"], access_token=w.token
        )
        assert text.startswith("invalid_request: an agent cannot delegate to itself"), text
        text = await fail(session, "quickstart", name="k", agent_type="tool", public_key={"kty": "OKP", "d": "x"})
        assert text.startswith("invalid_request: public_key must not contain the private member 'd'"), text


async def test_deny_policy_applies_to_mcp_as_to_rest(server: RunningServer) -> None:
    async with http_session(f"{server.url}/mcp") as session:
        w = await make_world(server, session)
        policy = {
            "name": "no agent listing",
            "effect": "deny",
            "subjects": {"all": True},
            "actions": ["read"],
            "resources": ["api/v1/agents"],
        }
        async with httpx.AsyncClient(base_url=server.url) as rest:
            headers = {"Authorization": f"Bearer {w.token}"}
            assert (await rest.post("/api/v1/policies", json=policy, headers=headers)).status_code == 201
            rest_denied = await rest.get("/api/v1/agents", headers=headers)
        assert rest_denied.status_code == 403
        text = await fail(session, "list_agents", access_token=w.token)
        assert text.startswith("access_denied: denied by policy"), text
        assert text.startswith(f"access_denied: {rest_denied.json()['error_description']}")
        assert (await call(session, "get_agent", agent_id=w.child["id"], access_token=w.token))["id"] == w.child["id"]


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "admin everything"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_verify_token_reasons(server: RunningServer) -> None:
    async with http_session(f"{server.url}/mcp") as session:
        w = await make_world(server, session)
        valid = await call(session, "verify_token", token=w.token)
        assert valid["valid"] is True and valid["credential_type"] == "access_token"
        assert valid["claims"]["iss"] == server.url and valid["reason"] is None
        assert (await call(session, "verify_token", token=w.token, audience=server.url))["valid"] is True
        checks = [
            ({"token": "garbage"}, "malformed"),
            ({"token": _tampered(w.token)}, "invalid_signature"),
            ({"token": w.token, "audience": "https://elsewhere.example"}, "invalid_audience"),
        ]
        for arguments, reason in checks:
            verdict = await call(session, "verify_token", **arguments)
            assert (verdict["valid"], verdict["reason"], verdict["claims"]) == (False, reason, None), verdict
            assert verdict["message"]

        credential = await call(session, "verify_token", token=w.delegation["credential"])
        assert credential["valid"] is True and credential["credential_type"] == "AgentDelegationCredential"
        assert credential["claims"]["sub"] == w.child["did"]

        acting = await call(
            session, "exchange_delegation", credential=w.delegation["credential"], access_token=w.child_token
        )
        server.secrets.append(acting["access_token"])
        delegated = await call(session, "verify_token", token=acting["access_token"])
        assert delegated["valid"] is True and delegated["claims"]["sub"] == w.root["did"]
        assert [link["delegate"] for link in delegated["delegation_chain"]] == [w.child["did"]]

        await call(session, "revoke_delegation", delegation_id=w.delegation["id"], access_token=w.token)
        for token in (acting["access_token"], w.delegation["credential"]):
            verdict = await call(session, "verify_token", token=token)
            assert (verdict["valid"], verdict["reason"]) == (False, "revoked"), verdict
