"""An agent's first minutes with AgentAuth: register, get a token, call an API, prove who it is.

1. quickstart: the issuer makes the agent a did:key identity, an identity credential and an API key;
2. token: the agent trades its API key for an access token with just the scope it needs (api.read);
3. call: it calls the resource server with the token as a bearer;
4. present: it answers the resource server's challenge with a Verifiable Presentation of its identity
   credential, signed with its own did:key - the server checks holder binding, audience and nonce offline.

With ``--dpop`` (RFC 9449) the token is sender-constrained: the token request carries a DPoP proof signed by
the agent's own did:key, so the token is bound to that key (``token_type: DPoP``, ``cnf.jkt``), and every call
sends ``Authorization: DPoP <token>`` with a fresh proof of that request (``agentauth.sdk.DPoPAuth``; it also
answers a server's nonce challenge). A copied token is useless without the key.

Run (with `agentauth serve` on 8000 and examples/resource_server.py on 9000):

    python examples/agent.py --issuer http://127.0.0.1:8000 --resource http://127.0.0.1:9000 [--dpop]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

import httpx

from agentauth.keys import KeyPair
from agentauth.sdk import DPoPAuth
from agentauth.vc import create_presentation


def check(response: httpx.Response, step: str) -> dict[str, Any]:
    if response.is_error:
        sys.exit(f"{step} failed: HTTP {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body


def run(issuer: str, resource: str, name: str, *, dpop: bool = False) -> dict[str, Any]:
    with httpx.Client(timeout=10) as http:
        # 1. Register. The private key comes back exactly once: a real agent stores it now.
        registered = check(
            http.post(f"{issuer}/api/v1/agents/quickstart", json={"name": name, "agent_type": "assistant"}),
            "quickstart",
        )
        agent_did = registered["agent"]["did"]
        key = KeyPair.from_jwk(registered["private_key_jwk"])

        # --dpop: proofs signed with the agent's own key; no token yet, so the token request gets a proof only.
        auth = DPoPAuth(key) if dpop else None

        # 2. A token for the resource server (RFC 8707 resource: its aud names that server, which refuses tokens
        # meant for any other), narrowed to what this job needs (RFC 6749 client_credentials).
        token = check(
            http.post(
                f"{issuer}/api/v1/auth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_secret": registered["api_key"],
                    "scope": "api.read",
                    "resource": resource,
                },
                auth=auth,
            ),
            "token",
        )

        # 3. Call the API: the token as a bearer or (DPoP) with a proof of this very request, which auth adds.
        if auth is not None:
            auth.token = token["access_token"]
        bearer = {} if auth is not None else {"Authorization": f"Bearer {token['access_token']}"}
        reports = check(http.get(f"{resource}/reports", headers=bearer, auth=auth), "GET /reports")

        # 4. Prove identity to the API: its challenge, our presentation, signed with our own key.
        challenge = check(http.get(f"{resource}/presentations/challenge"), "challenge")
        presentation = create_presentation(
            key,
            [registered["identity_credential"]],
            audience=challenge["audience"],
            nonce=challenge["nonce"],
            now=datetime.now(UTC),
        )
        accepted = check(
            http.post(f"{resource}/presentations", json={"presentation": presentation, "nonce": challenge["nonce"]}),
            "presentation",
        )
    return {
        "agent_did": agent_did,
        "scope": token["scope"],
        "token_type": token["token_type"],
        "reports_seen": len(reports["reports"]),
        "api_saw_agent": reports["agent"],
        "key_thumbprint": key.public.thumbprint(),
        "api_saw_binding": reports["bound_to"],
        "presentation_holder": accepted["holder"],
        "presented": accepted["credentials"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--issuer", default="http://127.0.0.1:8000", help="AgentAuth base URL")
    parser.add_argument("--resource", default="http://127.0.0.1:9000", help="resource server base URL")
    parser.add_argument("--name", default="example-agent")
    parser.add_argument("--dpop", action="store_true", help="DPoP-bound token and proofs (RFC 9449)")
    args = parser.parse_args()
    result = run(args.issuer.rstrip("/"), args.resource.rstrip("/"), args.name, dpop=args.dpop)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
