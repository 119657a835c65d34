"""A third-party API that accepts AgentAuth access tokens and presentations, protected by the verifier SDK.

It has no account with the issuer and never calls it per request: tokens are verified locally against the
issuer's published keys (JWKS, cached) and revocation status lists (cached for their ttl).

Register it with AgentAuth once (a tenant root's token; RFC 8707 resource identifier = its URL), then run it
(next to `agentauth serve` on port 8000):

    curl -X POST http://127.0.0.1:8000/api/v1/resource-servers -H "Authorization: Bearer $ROOT_TOKEN" \
      -H 'content-type: application/json' -d '{"identifier": "http://127.0.0.1:9000", "name": "reports",
      "access": "any_agent", "scopes": [{"name": "api.read"}, {"name": "api.write"}]}'
    AGENTAUTH_ISSUER_URL=http://127.0.0.1:8000 python examples/resource_server.py --port 9000

Agents ask for tokens with ``resource=http://127.0.0.1:9000``; a token for any other server is refused. Bearer
tokens and DPoP-bound ones (RFC 9449: ``Authorization: DPoP`` with a proof of the request, ``examples/agent.py
--dpop``) are both accepted; ``DPoPSettings(require_dpop=True)`` would refuse bearer tokens. Behind a proxy, give
``DPoPSettings(public_url=...)`` the URL agents use: their proofs name it.

Routes: GET / (public), GET /reports (scope api.read), POST /reports (scope api.write),
GET /whoami (any valid token), GET /presentations/challenge and POST /presentations (an agent proves who it
is with a Verifiable Presentation of its identity credential, signed with its own did:key).
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

from agentauth.sdk import AsyncOnlineVerifier, DPoPSettings
from agentauth.sdk.fastapi import install, require_scopes
from agentauth.vc import VerificationError, VerifiedToken

ISSUER_URL = os.environ.get("AGENTAUTH_ISSUER_URL", "http://127.0.0.1:8000")
# Who this server is: its RFC 8707 resource identifier, the aud of the tokens it accepts and of the
# presentations agents make for it.
RESOURCE_URL = os.environ.get("RESOURCE_SERVER_URL", "http://127.0.0.1:9000")
CHALLENGE_SECONDS = 300

verifier = AsyncOnlineVerifier(ISSUER_URL, resource=RESOURCE_URL)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await verifier.aclose()


app = FastAPI(title="Reports API (example AgentAuth resource server)", lifespan=lifespan)
install(app, verifier, dpop=DPoPSettings())

Reader = Annotated[VerifiedToken, Depends(require_scopes("api.read"))]
Writer = Annotated[VerifiedToken, Depends(require_scopes("api.write"))]
AnyAgent = Annotated[VerifiedToken, Depends(require_scopes())]

REPORTS: list[dict[str, Any]] = [{"id": 1, "title": "Quarterly numbers", "author": "did:example:analyst"}]
_challenges: dict[str, float] = {}  # nonce -> expiry; one process, so memory will do


@app.get("/")
async def index() -> dict[str, str]:
    return {"service": "reports", "issuer": ISSUER_URL}


@app.get("/reports")
async def list_reports(token: Reader) -> dict[str, Any]:
    # A DPoP-bound token got here only with a valid proof by the key its cnf.jkt names (RFC 9449 section 7.1).
    cnf = token.claims.get("cnf")
    bound_to = cnf.get("jkt") if isinstance(cnf, dict) else None
    return {"reports": REPORTS, "agent": token.subject, "client_id": token.claims["client_id"], "bound_to": bound_to}


class NewReport(BaseModel):
    title: str


@app.post("/reports", status_code=201)
async def create_report(body: NewReport, token: Writer) -> dict[str, Any]:
    report = {"id": len(REPORTS) + 1, "title": body.title, "author": token.subject}
    REPORTS.append(report)
    return report


@app.get("/whoami")
async def whoami(token: AnyAgent) -> dict[str, Any]:
    chain = [link.delegate for link in token.chain]
    return {"sub": token.subject, "scopes": sorted(token.scopes), "acting_through": chain}


@app.get("/presentations/challenge")
async def challenge() -> dict[str, str]:
    now = time.monotonic()
    for nonce, expiry in list(_challenges.items()):
        if expiry < now:
            del _challenges[nonce]
    nonce = secrets.token_urlsafe(24)
    _challenges[nonce] = now + CHALLENGE_SECONDS
    return {"nonce": nonce, "audience": RESOURCE_URL}


class Presentation(BaseModel):
    presentation: str
    nonce: str


@app.post("/presentations")
async def accept_presentation(body: Presentation) -> dict[str, Any]:
    # The nonce must be one we handed out and not yet used: that is what makes the presentation fresh.
    if _challenges.pop(body.nonce, 0.0) < time.monotonic():
        raise HTTPException(400, "unknown or expired challenge")
    try:
        verified = await verifier.verify_presentation(body.presentation, audience=RESOURCE_URL, nonce=body.nonce)
    except VerificationError as exc:
        raise HTTPException(401, f"presentation refused ({exc.code})") from None
    identities = [c["vc"]["credentialSubject"] for c in verified.credentials]
    return {"holder": verified.holder, "credentials": identities}


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
