"""DPoP at the token endpoint (RFC 9449 section 5): a token request may carry a ``DPoP`` proof; its key is what
the issued tokens are bound to.

``TokenEndpointProofs.check`` runs the checks of section 4.3 (``vc.dpop.check_proof``) for ``POST`` at the
token endpoint's URL and returns a ``DPoPBinding``: the key's thumbprint (``cnf.jkt`` of the access token, and
the refresh family's key) and the proof's single use. That use is recorded twice:

* at once, in this process (``vc.nonces.NonceRegistry``): a replay to the same replica is refused before any
  work;
* durably, in the grant's own write transaction, as a row of ``used_assertions`` (issuer ``dpop:<jkt>``, the
  SHA-256 of the target URI and ``jti``), whose primary key refuses a second use on any replica - "within a
  reasonable consideration of accuracy and resource utilization, a proof with the same jti value ... MUST be
  rejected" (section 11.1). A proof of a refused request is used up all the same; the client makes a new one.

With ``dpop_nonce_required`` the proof must carry a nonce from ``DPoP-Nonce`` (section 8): rotating values
every replica derives from the same key (``vc.dpop_nonces.DPoPNonces``), so no shared state is needed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentauth.errors import InvalidDPoPProof, UseDPoPNonce
from agentauth.keys import b64url_encode
from agentauth.storage.ports import AssertionUse
from agentauth.storage.records import Agent, DPoPRequirement
from agentauth.vc import NonceRegistry, VerificationError, check_proof
from agentauth.vc.dpop import USE_DPOP_NONCE, did_key_thumbprint
from agentauth.vc.dpop_nonces import DPoPNonces

DPOP_ISSUER_PREFIX = "dpop:"


@dataclass(frozen=True, slots=True)
class DPoPBinding:
    """A token request's checked DPoP proof: the key's thumbprint the tokens are bound to, and the proof's use
    to record with them (``replay_key`` until ``expires_at``)."""

    jkt: str
    replay_key: str
    expires_at: datetime

    @property
    def issuer(self) -> str:
        return DPOP_ISSUER_PREFIX + self.jkt

    def row(self) -> dict[str, Any]:
        """The ``used_assertions`` row that records the proof's use."""
        return {"issuer": self.issuer, "jti": self.replay_key, "expires_at": self.expires_at}

    def use(self, agent: Agent, seen: datetime | None) -> AssertionUse:
        """The proof's use for a batched issuing round (``storage.ports.AssertionUse``): recorded while ``agent``
        is active and, with ``seen``, unchanged since then (the round judges a changed agent's request again, and
        its proof must still be usable then)."""
        return AssertionUse(agent.id, seen, self.issuer, self.replay_key, self.expires_at)


def require_binding(agent: Agent, binding: DPoPBinding | None) -> None:
    """What ``agent``'s DPoP requirement (``records.DPoPRequirement``, set on it or an ancestor) asks of a token
    request issuing to it: nothing; a proof (``require_dpop``: no bearer tokens); a proof signed by the agent's
    own did:key (``bind_to_agent_key``: ``cnf.jkt`` is then the thumbprint of the subject's key, and a verifier
    holding only the token checks identity and possession with that one key)."""
    requirement = agent.dpop_requirement
    if requirement == DPoPRequirement.NONE:
        return
    if binding is None:
        raise InvalidDPoPProof(
            "this agent's tokens must be DPoP-bound: send a DPoP proof header (RFC 9449)",
            debug=f"agent {agent.id} requires DPoP; bearer token request",
        )
    if requirement == DPoPRequirement.AGENT_KEY and not hmac.compare_digest(
        binding.jkt.encode(), (did_key_thumbprint(agent.did) or "").encode()
    ):
        raise InvalidDPoPProof(
            "this agent's tokens must be bound to its own did:key: sign the DPoP proof with the agent's key",
            debug=f"agent {agent.id} requires its did:key; proof key {binding.jkt}",
        )


class _Deferred:
    """The replay cache ``check_proof`` consumes last: the process-local registry now; the key kept for the
    durable record in the grant's transaction."""

    def __init__(self, local: NonceRegistry) -> None:
        self.local = local
        self.key = ""
        self.until = 0.0

    def consume(self, nonce: str, *, until: float, now: float) -> bool:
        if not self.local.consume(nonce, until=until, now=now):
            return False
        self.key, self.until = nonce, until
        return True


class TokenEndpointProofs:
    def __init__(self, token_endpoint: str, nonces: DPoPNonces | None) -> None:
        self.token_endpoint = token_endpoint
        self.nonces = nonces  # None: no nonce required
        self._local = NonceRegistry()

    def current_nonce(self, now: datetime) -> str | None:
        """The ``DPoP-Nonce`` to send with the token endpoint's answers, when nonces are required."""
        return self.nonces.current(now.timestamp()) if self.nonces is not None else None

    def check(self, proofs: Sequence[str], now: datetime) -> DPoPBinding | None:
        """The request's ``DPoP`` header values: none -> None (a bearer token request); one that passes -> its
        binding; anything else -> ``InvalidDPoPProof`` / ``UseDPoPNonce``."""
        if not proofs:
            return None
        if len(proofs) > 1:
            # Section 4.3 point 1: "There is not more than one DPoP HTTP request header field."
            raise InvalidDPoPProof("send exactly one DPoP header", debug=f"{len(proofs)} DPoP headers")
        at = now.timestamp()
        deferred = _Deferred(self._local)
        try:
            proof = check_proof(
                proofs[0], method="POST", uri=self.token_endpoint, replay=deferred, nonces=self.nonces, now=at
            )
        except VerificationError as exc:
            if exc.code == USE_DPOP_NONCE and self.nonces is not None:
                raise UseDPoPNonce(self.nonces.current(at), debug=exc.detail) from None
            raise InvalidDPoPProof(f"the DPoP proof is invalid: {exc.detail}", debug=exc.detail) from None
        digest = b64url_encode(hashlib.sha256(deferred.key.encode("utf-8")).digest())
        return DPoPBinding(proof.jkt, digest, datetime.fromtimestamp(deferred.until, tz=UTC))
