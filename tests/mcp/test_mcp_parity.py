"""REST and MCP give the same answer for the same operation, field by field (both over real HTTP, one server).

Values that differ by nature between two calls - fresh tokens, keys, ids, timestamps - are compared for presence
only; everything else must be equal. A field REST leaves out because it is null may be null in MCP.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mcp_support import RunningServer, call, fail, http_session, secrets_of

pytestmark = pytest.mark.anyio

TOKEN_VOLATILE = {"access_token", "refresh_token", "expires_at", "refresh_before"}
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def comparable(value: Any, volatile: set[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: "<volatile>" if k in volatile else comparable(v, volatile) for k, v in value.items() if v is not None
        }
    if isinstance(value, list):
        return [comparable(v, volatile) for v in value]
    return value


def assert_same(rest: Any, mcp: Any, volatile: set[str] | None = None) -> None:
    assert comparable(rest, volatile or set()) == comparable(mcp, volatile or set())


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Tenant:
    """A root agent registered through REST, and the same agent's tokens."""

    def __init__(self, registered: dict[str, Any]) -> None:
        self.registered = registered
        self.id: str = registered["agent"]["id"]
        self.token: str = registered["access_token"]


async def tenant(rest: httpx.AsyncClient, server: RunningServer, name: str) -> Tenant:
    registered = ok(await rest.post("/api/v1/agents/quickstart", json={"name": name, "agent_type": "assistant"}), 201)
    server.secrets += secrets_of(registered)
    return Tenant(registered)


async def test_registration_and_token_grants(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as rest, http_session(f"{server.url}/mcp") as mcp:
        assert ok(await rest.get("/.well-known/agent-configuration")) == await call(mcp, "discover")

        body = {"name": "parity", "agent_type": "tool", "description": "same"}
        via_rest = ok(await rest.post("/api/v1/agents/quickstart", json=body), 201)
        via_mcp = await call(mcp, "quickstart", **body)
        server.secrets += secrets_of(via_rest, via_mcp)
        volatile = TOKEN_VOLATILE | {"id", "did", "tenant_id", "created_at", "updated_at", "api_key", "api_key_id"}
        volatile |= {"identity_credential", "d", "x"}
        assert_same(via_rest, via_mcp, volatile)

        key = via_rest["api_key"]
        grant = {"grant_type": "client_credentials", "client_secret": key, "scope": "agents.read credentials.read"}
        rest_pair = ok(await rest.post("/api/v1/auth/token", data=grant))
        mcp_pair = await call(mcp, "authenticate", api_key=key, scopes=["agents.read", "credentials.read"])
        server.secrets += secrets_of(rest_pair, mcp_pair)
        assert_same(rest_pair, mcp_pair, TOKEN_VOLATILE)

        refresh = {"grant_type": "refresh_token", "refresh_token": rest_pair["refresh_token"]}
        rest_new = ok(await rest.post("/api/v1/auth/token", data=refresh))
        mcp_new = await call(mcp, "refresh_token", refresh_token_value=mcp_pair["refresh_token"])
        server.secrets += secrets_of(rest_new, mcp_new)
        assert_same(rest_new, mcp_new, TOKEN_VOLATILE)

        # A spent refresh token: the same refusal through both (and reuse revokes both families).
        rest_reuse = await rest.post("/api/v1/auth/token", data=refresh)
        mcp_reuse = await fail(mcp, "refresh_token", refresh_token_value=mcp_pair["refresh_token"])
        assert rest_reuse.status_code == 400
        assert mcp_reuse.startswith(f"{rest_reuse.json()['error']}: {rest_reuse.json()['error_description']}")


async def test_reads(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as rest, http_session(f"{server.url}/mcp") as mcp:
        root = await tenant(rest, server, "reads")
        headers = bearer(root.token)
        child = ok(await rest.post("/api/v1/agents", json={"name": "c", "agent_type": "tool"}, headers=headers), 201)
        child_id = child["agent"]["id"]
        ok(await rest.post("/api/v1/credentials", json={"agent_id": child_id}, headers=headers), 201)
        grant = {"delegate_agent_id": child_id, "scopes": ["api.read"]}
        ok(await rest.post("/api/v1/delegations", json=grant, headers=headers), 201)

        assert_same(
            ok(await rest.get("/api/v1/agents", params={"limit": 1, "offset": 1}, headers=headers)),
            await call(mcp, "list_agents", access_token=root.token, limit=1, offset=1),
        )
        assert_same(
            ok(await rest.get(f"/api/v1/agents/{child_id}", headers=headers)),
            await call(mcp, "get_agent", agent_id=child_id, access_token=root.token),
        )
        assert_same(
            ok(await rest.get("/api/v1/credentials", params={"agent_id": child_id}, headers=headers)),
            await call(mcp, "list_credentials", agent_id=child_id, access_token=root.token),
        )
        assert_same(
            ok(await rest.get("/api/v1/delegations", params={"role": "delegator"}, headers=headers)),
            await call(mcp, "list_delegations", role="delegator", access_token=root.token),
        )
        for action in ("read", "delete"):
            question = {"agent_id": child_id, "action": action, "resource": "docs/a.txt"}
            assert_same(
                ok(await rest.post("/api/v1/policies/evaluate", json=question, headers=headers)),
                await call(mcp, "check_permission", access_token=root.token, **question),
            )
        assert_same(
            ok(await rest.post("/api/v1/auth/introspect", data={"token": root.token}, headers=headers)),
            await call(mcp, "introspect_token", token=root.token, access_token=root.token),
        )


async def test_writes(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as rest, http_session(f"{server.url}/mcp") as mcp:
        root = await tenant(rest, server, "writes")
        headers = bearer(root.token)
        agent_volatile = {"id", "did", "created_at", "updated_at", "identity_credential", "d", "x"}
        spec = {"name": "w", "agent_type": "autonomous", "scopes": ["agents.read", "api.read"], "trust_level": "basic"}
        rest_agent = ok(await rest.post("/api/v1/agents", json=spec, headers=headers), 201)
        mcp_agent = await call(mcp, "create_agent", access_token=root.token, **spec)
        server.secrets += secrets_of(rest_agent, mcp_agent)
        assert_same(rest_agent, mcp_agent, agent_volatile)
        delegate = rest_agent["agent"]["id"]

        key_volatile = {"id", "prefix", "raw_key", "created_at", "old_credential_id", "revoked_at"}
        key_spec = {"agent_id": delegate, "scopes": ["agents.read"], "name": "k", "expires_in_days": 30}
        rest_key = ok(await rest.post("/api/v1/credentials", json=key_spec, headers=headers), 201)
        mcp_key = await call(mcp, "create_credential", access_token=root.token, **key_spec)
        server.secrets += secrets_of(rest_key, mcp_key)
        assert_same(rest_key, mcp_key, key_volatile | {"expires_at"})

        rest_rotated = ok(await rest.post(f"/api/v1/credentials/{rest_key['id']}/rotate", headers=headers))
        mcp_rotated = await call(mcp, "rotate_credential", credential_id=mcp_key["id"], access_token=root.token)
        server.secrets += secrets_of(rest_rotated, mcp_rotated)
        assert_same(rest_rotated, mcp_rotated, key_volatile | {"expires_at"})
        assert (rest_rotated["old_credential_id"], mcp_rotated["old_credential_id"]) == (rest_key["id"], mcp_key["id"])

        rest_revoked = ok(await rest.post(f"/api/v1/credentials/{rest_rotated['id']}/revoke", headers=headers))
        mcp_revoked = await call(mcp, "revoke_credential", credential_id=mcp_rotated["id"], access_token=root.token)
        assert_same(rest_revoked, mcp_revoked, key_volatile | {"expires_at"})
        assert rest_revoked["status"] == mcp_revoked["status"] == "revoked"

        grant = {"delegate_agent_id": delegate, "scopes": ["api.read"], "max_chain_depth": 2, "expires_in_hours": 5}
        dlg_volatile = {"id", "credential", "created_at", "expires_at", "revoked_at"}
        rest_dlg = ok(await rest.post("/api/v1/delegations", json=grant, headers=headers), 201)
        mcp_dlg = await call(mcp, "create_delegation", access_token=root.token, **grant)
        assert_same(rest_dlg, mcp_dlg, dlg_volatile)

        # The delegate acts under each delegation: token exchange through REST and through MCP.
        delegate_key = ok(await rest.post("/api/v1/credentials", json={"agent_id": delegate}, headers=headers), 201)
        login = {"grant_type": "client_credentials", "client_secret": delegate_key["raw_key"]}
        delegate_token = ok(await rest.post("/api/v1/auth/token", data=login))["access_token"]
        server.secrets += [delegate_key["raw_key"], delegate_token]
        exchange = {
            "grant_type": EXCHANGE,
            "subject_token": rest_dlg["credential"],
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "actor_token": delegate_token,
            "actor_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }
        rest_acting = ok(await rest.post("/api/v1/auth/token", data=exchange))
        mcp_acting = await call(
            mcp, "exchange_delegation", credential=mcp_dlg["credential"], access_token=delegate_token
        )
        server.secrets += secrets_of(rest_acting, mcp_acting)
        assert_same(rest_acting, mcp_acting, TOKEN_VOLATILE | {"expires_in"})

        rest_gone = ok(await rest.post(f"/api/v1/delegations/{rest_dlg['id']}/revoke", headers=headers))
        mcp_gone = await call(mcp, "revoke_delegation", delegation_id=mcp_dlg["id"], access_token=root.token)
        assert_same(rest_gone, mcp_gone, dlg_volatile)
        assert rest_gone["status"] == mcp_gone["status"] == "revoked"

        # Revocation (RFC 7009): REST answers 200 with no body, MCP success; afterwards both tokens are inactive.
        extra = [ok(await rest.post("/api/v1/auth/token", data=login))["access_token"] for _ in range(2)]
        server.secrets += extra
        revoked = await rest.post("/api/v1/auth/revoke", data={"token": extra[0]}, headers=headers)
        assert revoked.status_code == 200
        assert (await call(mcp, "revoke_token", token=extra[1], access_token=root.token))["success"] is True
        for token in extra:
            assert_same(
                ok(await rest.post("/api/v1/auth/introspect", data={"token": token}, headers=headers)),
                await call(mcp, "introspect_token", token=token, access_token=root.token),
            )


async def test_errors(server: RunningServer) -> None:
    """The same failure answers with the same RFC error code and description through both."""
    async with httpx.AsyncClient(base_url=server.url) as rest, http_session(f"{server.url}/mcp") as mcp:
        root = await tenant(rest, server, "errors")
        headers = bearer(root.token)
        cases: list[tuple[httpx.Response, str]] = [
            (await rest.get("/api/v1/agents/agt_missing", headers=headers), await fail(
                mcp, "get_agent", agent_id="agt_missing", access_token=root.token)),
            (await rest.get("/api/v1/agents", headers=bearer("x.y.z")), await fail(
                mcp, "list_agents", access_token="x.y.z")),
            (await rest.post("/api/v1/credentials", json={"scopes": ["nope"]}, headers=headers), await fail(
                mcp, "create_credential", agent_id=root.id, scopes=["nope"], access_token=root.token)),
            (await rest.post("/api/v1/credentials/key_missing/rotate", headers=headers), await fail(
                mcp, "rotate_credential", credential_id="key_missing", access_token=root.token)),
            (await rest.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": "ak_x"}),
             await fail(mcp, "authenticate", api_key="ak_x")),
        ]  # fmt: skip
        for response, tool_text in cases:
            body = response.json()
            assert tool_text.startswith(f"{body['error']}: {body['error_description'].rstrip('.')}."), tool_text
