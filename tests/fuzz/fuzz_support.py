"""Helpers for the OpenAPI fuzz suite: a fresh agent with real objects to bind path parameters to, and the
documentation defects known today (each a strict xfail in test_openapi.py, so fixing one shows up)."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from support import status_entry


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def bind_objects(http: Any) -> tuple[dict[str, str], dict[str, str]]:
    """A fresh quickstart agent (its bearer header) and one object of each kind a path parameter names, made with
    it: a child (never the agent itself, so a fuzzed DELETE cannot end the run's token), a second API key (not
    the one the token was issued with: rotating that one would revoke the token), a delegation, a policy that
    denies nothing, and the status list its token points at."""
    agent = _ok(http.post("/api/v1/agents/quickstart", json={"name": f"fuzz-{secrets.token_hex(4)}",
                                                              "agent_type": "orchestrator"}), 201)  # fmt: skip
    auth = {"Authorization": f"Bearer {agent['access_token']}"}
    child = _ok(http.post("/api/v1/agents", json={"name": "fuzz-child", "agent_type": "tool"}, headers=auth), 201)
    key = _ok(http.post("/api/v1/credentials", json={"name": "fuzz-key"}, headers=auth), 201)
    grant = {"delegate_agent_id": child["agent"]["id"], "scopes": ["api.read"]}
    delegation = _ok(http.post("/api/v1/delegations", json=grant, headers=auth), 201)
    policy = {"name": "fuzz", "effect": "allow", "subjects": {"agent_types": ["tool"]}, "actions": ["read"],
              "resources": ["fuzz/**"]}  # fmt: skip
    policy_id = _ok(http.post("/api/v1/policies", json=policy, headers=auth), 201)["id"]
    server = {"identifier": f"https://{policy_id}.example.com/mcp", "name": "fuzz", "scopes": [{"name": "f.read"}]}
    server_id = _ok(http.post("/api/v1/resource-servers", json=server, headers=auth), 201)["id"]
    hook = {"url": "http://127.0.0.1:9/fuzz", "events": ["agent.*"]}
    webhook_id = _ok(http.post("/api/v1/webhooks", json=hook, headers=auth), 201)["id"]
    payload = agent["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    list_id = status_entry(claims["vc"])["statusListCredential"].rsplit("/", 1)[1]
    objects = {
        "agent_id": child["agent"]["id"],
        "credential_id": key["id"],
        "delegation_id": delegation["id"],
        "policy_id": policy_id,
        "server_id": server_id,
        "webhook_id": webhook_id,
        "delivery_id": 1,  # no delivery is made for it (no worker runs here): the 404 path
        "list_id": int(list_id),
    }
    return auth, objects  # type: ignore[return-value]


# (method, path) -> status codes the operation answers without declaring them in its OpenAPI ``responses``.
# Empty since api/openapi.py declares the error answers (this suite found 29 operations missing them).
KNOWN_UNDOCUMENTED: dict[tuple[str, str], set[int]] = {}
# (method, path) -> what its documented response schema gets wrong (response_schema_conformance).
KNOWN_SCHEMA_DEFECTS: dict[tuple[str, str], str] = {}
