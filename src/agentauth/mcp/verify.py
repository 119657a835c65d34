"""``verify_token``: full offline verification of a token or credential, as a third-party verifier does it.

The issuer's JWKS and the status lists the token points at are fetched first (the only I/O); then
``agentauth.vc.Verifier`` checks signature, ``alg``/``typ``, issuer, time claims, credential type, the status
bit of the token and of every delegation link, and the delegation chain rules - no database involved.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from agentauth.mcp.backend import Backend
from agentauth.vc import (
    DELEGATION_CREDENTIAL,
    IDENTITY_CREDENTIAL,
    StaticStatusLists,
    VerificationError,
    Verifier,
    status_entries,
)
from agentauth.vc import errors as codes
from agentauth.vc.jws import parse_compact

log = logging.getLogger("agentauth.mcp")
MAX_STATUS_LISTS = 16

# What each reason code means, for the model reading the answer.
REASONS: dict[str, str] = {
    codes.MALFORMED: "not a well-formed AgentAuth token or credential",
    codes.UNSUPPORTED_ALG: "signed with an algorithm that is not accepted (only EdDSA/Ed25519)",
    codes.INVALID_TYP: "the JOSE typ header does not match the credential type",
    codes.UNKNOWN_KID: "signed with a key this issuer does not publish",
    codes.UNTRUSTED_KEY: "the header tries to supply its own key, which is never trusted",
    codes.INVALID_SIGNATURE: "the signature does not verify: the token was altered or forged",
    codes.INVALID_ISSUER: "issued by someone other than this AgentAuth",
    codes.INVALID_AUDIENCE: "not meant for the audience you gave",
    codes.EXPIRED: "expired: get a new one (refresh_token or authenticate)",
    codes.NOT_YET_VALID: "not valid yet",
    codes.MISSING_CLAIM: "a required claim is missing",
    codes.WRONG_CREDENTIAL_TYPE: "not an access token, identity credential or delegation credential",
    codes.REVOKED: "revoked: its bit (or a delegation link's) is set in the status list",
    codes.STATUS_UNAVAILABLE: "its revocation status could not be checked",
    codes.CHAIN_BROKEN: "its delegation chain is missing or broken",
    codes.CHAIN_SCOPE_WIDENED: "a delegation link grants more scopes than its parent",
    codes.CHAIN_DEPTH_EXCEEDED: "the delegation chain is deeper than allowed",
    codes.CHAIN_EXPIRY_EXCEEDS_PARENT: "a delegation link outlives its parent",
    codes.CHAIN_DIGEST_MISMATCH: "a delegation link does not match its parent's digest",
    codes.CHAIN_DELEGATOR_MISMATCH: "a delegation link's delegator is not the previous link's delegate",
}


class VerifyResult(BaseModel):
    valid: bool
    credential_type: str | None = Field(
        None, description="access_token, AgentIdentityCredential or AgentDelegationCredential"
    )
    reason: str | None = Field(None, description="Why verification failed: a stable reason code.")
    message: str | None = Field(None, description="The reason in words.")
    claims: dict[str, Any] | None = Field(None, description="The verified claims (only when valid).")
    delegation_chain: list[dict[str, Any]] | None = Field(
        None, description="For a delegated access token: the verified delegation links, root first."
    )


def _status_urls(token: str) -> list[str]:
    """Status list URLs the token and its delegation links name (read before verification, only to fetch)."""
    try:
        payloads = [parse_compact(token).payload]
        chain = payloads[0].get("delegation_chain")
        if isinstance(chain, list):
            payloads += [parse_compact(link).payload for link in chain[:MAX_STATUS_LISTS] if isinstance(link, str)]
    except VerificationError:
        return []  # the verifier reports what is wrong with it
    urls: list[str] = []
    for payload in payloads:
        for entry in status_entries(payload.get("vc")):
            url = entry.get("statusListCredential")
            if isinstance(url, str) and url not in urls:
                urls.append(url)
    return urls[:MAX_STATUS_LISTS]


async def verify_token(backend: Backend, token: str, audience: str | None, now: datetime) -> VerifyResult:
    material = await backend.verification_material()
    lists = StaticStatusLists()
    for url in _status_urls(token):
        published = await backend.status_list(url)
        if published is not None:
            lists.put(url, published)
    verifier = Verifier(
        issuer_url=material.issuer_url, jwks=material.jwks, issuer_did=material.issuer_did, status_source=lists
    )
    kind: str | None = None
    try:
        header = parse_compact(token).header
        if header.get("typ") == "at+jwt":
            kind = "access_token"
            verified = verifier.verify_access_token(token, audience=audience, now=now)
            chain = [
                {
                    "id": link.id,
                    "delegator": link.delegator,
                    "delegate": link.delegate,
                    "scopes": sorted(link.scopes),
                    "remaining_depth": link.remaining_depth,
                    "exp": int(link.exp),
                }
                for link in verified.chain
            ]
            return VerifyResult(
                valid=True, credential_type=kind, claims=verified.claims, delegation_chain=chain or None
            )
        vc = parse_compact(token).payload.get("vc")
        types = vc.get("type") if isinstance(vc, dict) else None
        types = types if isinstance(types, list) else []
        kind = IDENTITY_CREDENTIAL if IDENTITY_CREDENTIAL in types else DELEGATION_CREDENTIAL
        claims = verifier.verify_credential(token, expected_type=kind, now=now)
        return VerifyResult(valid=True, credential_type=kind, claims=claims)
    except VerificationError as exc:
        # Precise in the log, a stable code to the caller; never the token itself.
        log.info("verify_token: %s: %s", exc.code, exc.detail)
        return VerifyResult(valid=False, credential_type=kind, reason=exc.code, message=REASONS.get(exc.code))
