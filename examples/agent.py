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

All of it through the agent client SDK (``agentauth.sdk.AgentClient``): it keeps the token fresh (refresh before
``refresh_before``), attaches it (``agent.auth()``, an ``httpx.Auth``) and signs the presentation.

Run (with `agentauth serve` on 8000 and examples/resource_server.py on 9000):

    python examples/agent.py --issuer http://127.0.0.1:8000 --resource http://127.0.0.1:9000 [--dpop] \
        [--credentials-file ~/.config/agentauth/example-agent.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx

from agentauth.sdk import AgentClient, AgentClientError


def check(response: httpx.Response, step: str) -> dict[str, Any]:
    if response.is_error:
        sys.exit(f"{step} failed: HTTP {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body


def run(
    issuer: str, resource: str, name: str, *, dpop: bool = False, credentials_file: str | None = None
) -> dict[str, Any]:
    # 1. Register. The API key and private key come back exactly once: with --credentials-file they are kept
    # there (0600; rotated refresh tokens too), and AgentClient(path) picks them up on the next run.
    # The client's default token: for the resource server (RFC 8707 resource: its aud names that server, which
    # refuses tokens meant for any other), narrowed to what this job needs; --dpop binds it to the agent's key.
    agent = AgentClient.quickstart(
        issuer, name, "assistant", credentials_file=credentials_file, scope="api.read", resource=resource, dpop=dpop
    )
    with agent, httpx.Client(timeout=10, auth=agent.auth()) as api, httpx.Client(timeout=10) as http:
        # 2. The token (RFC 6749 client_credentials with the API key); renewed by the client when it is due.
        token = agent.token()

        # 3. Call the API: the auth adds the token as a bearer or (DPoP) with a proof of this very request.
        reports = check(api.get(f"{resource}/reports"), "GET /reports")

        # 4. Prove identity to the API: its challenge, our presentation of the identity credential, signed with
        # our own did:key.
        challenge = check(http.get(f"{resource}/presentations/challenge"), "challenge")
        presentation = agent.present(audience=challenge["audience"], nonce=challenge["nonce"])
        accepted = check(
            http.post(f"{resource}/presentations", json={"presentation": presentation, "nonce": challenge["nonce"]}),
            "presentation",
        )
        assert agent.key is not None  # quickstart generated it
        return {
            "agent_did": agent.did,
            "scope": token.scope,
            "token_type": token.token_type,
            "reports_seen": len(reports["reports"]),
            "api_saw_agent": reports["agent"],
            "key_thumbprint": agent.key.public.thumbprint(),
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
    parser.add_argument("--credentials-file", help="keep the agent's credentials there (0600), not only in memory")
    args = parser.parse_args()
    try:
        result = run(
            args.issuer.rstrip("/"), args.resource.rstrip("/"), args.name, dpop=args.dpop,
            credentials_file=args.credentials_file,
        )  # fmt: skip
    except AgentClientError as failed:  # a refused token request: its RFC error code, never a secret
        sys.exit(str(failed))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
