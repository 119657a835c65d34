"""The one exception the verifier raises, with a machine-readable reason code.

Callers answering a remote party should say only "invalid token"; the ``code`` and ``detail`` are for logs
and for local tooling (the CLI prints them).
"""

from __future__ import annotations

from typing import Final

# Reason codes. Stable strings: third parties branch on them.
MALFORMED: Final = "malformed"
UNSUPPORTED_ALG: Final = "unsupported_alg"
INVALID_TYP: Final = "invalid_typ"
UNKNOWN_KID: Final = "unknown_kid"
UNTRUSTED_KEY: Final = "untrusted_key"
INVALID_SIGNATURE: Final = "invalid_signature"
INVALID_ISSUER: Final = "invalid_issuer"
INVALID_AUDIENCE: Final = "invalid_audience"
# A verifier asked to check an access token without knowing which resource it guards (RFC 8707 / RFC 9068
# section 4: the resource server MUST check that aud names it).
AUDIENCE_NOT_CONFIGURED: Final = "audience_not_configured"
EXPIRED: Final = "expired"
NOT_YET_VALID: Final = "not_yet_valid"
MISSING_CLAIM: Final = "missing_claim"
WRONG_CREDENTIAL_TYPE: Final = "wrong_credential_type"
REVOKED: Final = "revoked"
# Its bit is set in a list of purpose ``suspension`` (Bitstring Status List v1.0 section 2.1): temporarily invalid,
# the issuer may clear it again.
SUSPENDED: Final = "suspended"
STATUS_UNAVAILABLE: Final = "status_unavailable"
STATUS_STALE: Final = "status_stale"  # the only list at hand is older than its ttl plus the allowed staleness
HOLDER_MISMATCH: Final = "holder_mismatch"
NONCE_MISMATCH: Final = "nonce_mismatch"
NONCE_REPLAYED: Final = "nonce_replayed"
INVALID_DID: Final = "invalid_did"
WEAK_KEY: Final = "weak_key"  # a did:key of small order or non-canonical encoding (keys/weak.py)
# RFC 9449: a DPoP-bound token (``cnf.jkt``) shown without a proof, i.e. as a bearer token (section 7.1); a proof
# by another key than the token's; a DPoP proof with a token that is not bound. Proof failures themselves are
# ``vc.dpop``'s ``invalid_dpop_proof`` / ``use_dpop_nonce``.
DPOP_REQUIRED: Final = "dpop_required"
DPOP_KEY_MISMATCH: Final = "dpop_key_mismatch"
NOT_DPOP_BOUND: Final = "not_dpop_bound"
CHAIN_BROKEN: Final = "chain_broken"
CHAIN_SCOPE_WIDENED: Final = "chain_scope_widened"
CHAIN_DEPTH_EXCEEDED: Final = "chain_depth_exceeded"
CHAIN_EXPIRY_EXCEEDS_PARENT: Final = "chain_expiry_exceeds_parent"
CHAIN_DIGEST_MISMATCH: Final = "chain_digest_mismatch"
CHAIN_DELEGATOR_MISMATCH: Final = "chain_delegator_mismatch"


class VerificationError(Exception):
    """A token, credential, presentation or chain failed verification.

    ``code`` is one of the constants above; ``detail`` says precisely what failed (log it, do not send it).
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
