"""Verifiable Presentations signed by an agent's own did:key (VCDM 1.1 section 6.3.1, JWT ``vp`` claim).

The holder wraps credentials issued to it for one verifier: ``aud`` names the verifier, ``nonce`` is the
verifier's challenge, and the JWS is signed by the did:key that the credentials name as subject (holder
binding). The header ``kid`` is the holder's verification method, ``did:key:z6Mk...#z6Mk...``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta

from agentauth.did import DidKeyError, decode_did_key, encode_did_key
from agentauth.keys import KeyPair, PublicKey
from agentauth.keys.jwk import JwkError
from agentauth.keys.weak import WEAK_KEY
from agentauth.vc import errors as e
from agentauth.vc.credentials import TYP_JWT, VC_CONTEXT_V1, VERIFIABLE_PRESENTATION, new_credential_id
from agentauth.vc.errors import VerificationError
from agentauth.vc.jws import encode_header, sign_compact

DEFAULT_PRESENTATION_LIFETIME = timedelta(minutes=5)


def holder_kid(did: str) -> str:
    """The did:key verification method id used as ``kid``."""
    return f"{did}#{did[len('did:key:') :]}"


def holder_public_key(did: str, role: str) -> PublicKey:
    """The public key of a signer named by its did:key (a presentation's holder, an assertion's issuer).

    Raises ``VerificationError``: ``weak_key`` for a small-order or non-canonical key, else ``invalid_did``.
    """
    try:
        return _did_key(did)
    except (DidKeyError, JwkError) as exc:
        code = e.WEAK_KEY if exc.code == WEAK_KEY else e.INVALID_DID
        raise VerificationError(code, f"{role} {did!r} is not a usable Ed25519 did:key: {exc}") from exc


@functools.lru_cache(maxsize=4096)
def _did_key(did: str) -> PublicKey:
    """Decoded once per signer: base58 and the weak-key checks cost more than an Ed25519 verification (failures
    are not cached: they raise)."""
    return PublicKey.from_bytes(decode_did_key(did))


def create_presentation(
    holder: KeyPair,
    credentials: Sequence[str],
    *,
    audience: str,
    nonce: str,
    now: datetime,
    lifetime: timedelta = DEFAULT_PRESENTATION_LIFETIME,
) -> str:
    """A VP JWT over ``credentials`` (compact JWTs) for ``audience`` answering challenge ``nonce``."""
    if not audience or not nonce:
        raise ValueError("a presentation needs the verifier's audience and nonce")
    did = encode_did_key(holder.public.raw)
    iat = int(now.timestamp())
    payload = {
        "iss": did,
        "aud": audience,
        "nonce": nonce,
        "jti": new_credential_id(),
        "iat": iat,
        "nbf": iat,
        "exp": iat + int(lifetime.total_seconds()),
        "vp": {
            "@context": [VC_CONTEXT_V1],
            "type": [VERIFIABLE_PRESENTATION],
            "holder": did,
            "verifiableCredential": list(credentials),
        },
    }
    return sign_compact(encode_header(typ=TYP_JWT, kid=holder_kid(did)), payload, holder)
