"""The SDK refuses a presentation whose holder did:key is a weak Ed25519 key (issue 12 item 2), before any fetch."""

from __future__ import annotations

import pytest
from sdk_support import ISSUER_URL, RESOURCE, FakeIssuer

from agentauth.sdk import OnlineVerifier
from agentauth.vc import VerificationError
from agentauth.vc import errors as e
from weak_keys import WEAK_ENCODINGS, forged_presentation


@pytest.mark.parametrize(("label", "raw"), WEAK_ENCODINGS, ids=[label for label, _ in WEAK_ENCODINGS])
def test_online_verifier_refuses_a_forged_presentation_by_a_weak_holder_key(label: str, raw: bytes) -> None:
    issuer = FakeIssuer()
    verifier = OnlineVerifier(
        ISSUER_URL, resource=RESOURCE, http=issuer.client(), clock=issuer.time.now, monotonic=issuer.time.monotonic
    )
    vp = forged_presentation(raw, "https://rs.example", "n-1", issuer.time.now())
    with pytest.raises(VerificationError) as info:
        verifier.verify_presentation(vp, audience="https://rs.example", nonce="n-1")
    assert info.value.code == e.WEAK_KEY, label
