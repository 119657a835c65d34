"""JWT bearer assertions signed by an agent's own did:key (RFC 7523 section 3, RFC 7521 section 5.2).

The agent proves possession of its key to the token endpoint: ``iss`` = ``sub`` = its did:key, ``aud`` = the
token endpoint (or issuer), ``exp`` a few minutes away at most, ``jti`` unique (the server refuses a ``jti`` it
has seen, until the assertion's expiry).
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from agentauth.did import encode_did_key
from agentauth.keys import KeyPair
from agentauth.vc import errors as e
from agentauth.vc.credentials import new_credential_id
from agentauth.vc.errors import VerificationError
from agentauth.vc.jws import encode_header, parse_compact, sign_compact
from agentauth.vc.presentation import holder_kid, holder_public_key

MAX_ASSERTION_LIFETIME_SECONDS = 300
# Clock skew allowed on exp/nbf/iat; a used jti is remembered until exp plus this (storage.assertions).
ASSERTION_LEEWAY_SECONDS = 30


def create_agent_assertion(
    agent: KeyPair,
    *,
    audience: str,
    now: datetime,
    lifetime: timedelta = timedelta(seconds=60),
    client_id: str | None = None,
) -> str:
    """A jwt-bearer assertion for ``audience`` (the token endpoint URL), valid for ``lifetime``; with
    ``client_id`` (the agent id), a ``private_key_jwt`` client assertion (RFC 7523 section 2.2) naming it."""
    did = encode_did_key(agent.public.raw)
    iat = int(now.timestamp())
    claims = {
        "iss": client_id or did,
        "sub": client_id or did,
        "aud": audience,
        "jti": new_credential_id(),
        "iat": iat,
        "exp": iat + int(lifetime.total_seconds()),
    }
    return sign_compact(encode_header(typ="JWT", kid=holder_kid(did)), claims, agent)


@functools.lru_cache(maxsize=256)
def unverified_issuer(assertion: str) -> str | None:
    """The ``iss`` of an assertion before it is verified - only to find whose key verifies it (asked by the
    abuse limiter and then the grant, of the same request: remembered for the last few assertions)."""
    iss = parse_compact(assertion).payload.get("iss")
    return iss if isinstance(iss, str) and 0 < len(iss) <= 200 else None


def verify_agent_assertion(
    assertion: str,
    *,
    audiences: Collection[str],
    now: datetime,
    leeway_seconds: int = ASSERTION_LEEWAY_SECONDS,
    max_lifetime_seconds: int = MAX_ASSERTION_LIFETIME_SECONDS,
    signer_did: str | None = None,
) -> dict[str, Any]:
    """Check an assertion's signature against the did:key in its ``iss`` and its RFC 7523 claims.

    ``signer_did``: a client assertion (RFC 7523 section 2.2, ``private_key_jwt``) names its client in ``iss`` =
    ``sub`` (the agent id; the caller looked the agent up by it) and is signed by that agent's did:key."""
    jws = parse_compact(assertion)
    claims = jws.payload
    iss, sub = claims.get("iss"), claims.get("sub")
    # RFC 7523 section 3: the JWT "MUST contain an iss", "MUST contain a sub", "MUST contain an aud", "MUST
    # contain an exp". For a self-issued agent assertion, issuer and subject are the same did:key.
    if not isinstance(iss, str) or iss != sub:
        raise VerificationError(e.INVALID_ISSUER, "iss and sub must both be the agent's did:key (or client_id)")
    did = signer_did if signer_did is not None else iss
    kid = jws.header.get("kid")
    if kid is not None and (not isinstance(kid, str) or kid.split("#", 1)[0] not in (did, iss)):
        raise VerificationError(e.HOLDER_MISMATCH, "kid is not a verification method of the signer")
    key = holder_public_key(did, "iss")
    if not jws.verify_with(key):
        raise VerificationError(e.INVALID_SIGNATURE, "assertion signature does not verify")
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if not any(a in audiences for a in auds):
        raise VerificationError(e.INVALID_AUDIENCE, f"aud {aud!r} does not name this token endpoint")
    exp, iat = claims.get("exp"), claims.get("iat", claims.get("nbf"))
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise VerificationError(e.MISSING_CLAIM, "exp is required")
    ts = now.timestamp()
    if ts - leeway_seconds >= exp:
        raise VerificationError(e.EXPIRED, "assertion expired")
    if exp - ts > max_lifetime_seconds + leeway_seconds:
        raise VerificationError(e.EXPIRED, f"assertion lifetime exceeds {max_lifetime_seconds}s")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and not isinstance(nbf, bool) and ts + leeway_seconds < nbf:
        raise VerificationError(e.NOT_YET_VALID, "assertion not yet valid")
    if isinstance(iat, int | float) and not isinstance(iat, bool) and ts + leeway_seconds < iat:
        raise VerificationError(e.NOT_YET_VALID, "assertion issued in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 1 <= len(jti) <= 200:
        raise VerificationError(e.MISSING_CLAIM, "jti (1-200 characters) is required for replay protection")
    return claims
