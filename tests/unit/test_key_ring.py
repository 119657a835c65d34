"""The issuer key ring (DESIGN.md "Signing keys"): next -> active -> retired -> removed, kid = the DID URL
with the RFC 7638 thumbprint, a JWKS of public members only, and rotation without a window in which a
verifier's cached JWKS lacks the signing key."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from agentauth.keys import KeyEncryptionKey, KeyRing, KeyState, PublicKey, SigningKey, b64url_encode, jwk_thumbprint
from agentauth.keys.sealing import SealingError

ISSUER = "did:web:localhost%3A8000"
NOW = datetime(2025, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(days=30)
RETAIN = timedelta(hours=1)


def _kids(ring: KeyRing) -> list[str]:
    return [jwk["kid"] for jwk in ring.jwks()["keys"]]


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.create(ISSUER, NOW)


@pytest.fixture
def kek() -> KeyEncryptionKey:
    return KeyEncryptionKey(os.urandom(32))


def test_create_has_one_active_and_one_next(ring: KeyRing) -> None:
    assert sorted(key.state for key in ring.keys) == sorted([KeyState.ACTIVE, KeyState.NEXT])
    assert ring.active.state is KeyState.ACTIVE
    assert ring.active.activated_at == NOW
    assert ring.next is not None
    assert ring.next.activated_at is None
    assert ring.next.kid != ring.active.kid
    assert ring.get(ring.active.kid) is ring.active
    assert ring.get(f"{ISSUER}#unknown") is None


def test_jwks_holds_public_members_only(ring: KeyRing) -> None:
    jwks = ring.jwks()["keys"]
    assert len(jwks) == 2
    for jwk in jwks:
        assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
        assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert jwks[0]["kid"] == ring.active.kid  # the signing key first
    published = json.dumps(ring.jwks())
    for key in ring.keys:
        assert b64url_encode(key.pair.seed()) not in published


def test_kid_is_issuer_did_url_with_the_thumbprint(ring: KeyRing) -> None:
    for key in ring.keys:
        assert key.kid == f"{ISSUER}#{key.pair.public.thumbprint()}"
    for jwk in ring.jwks()["keys"]:
        assert jwk["kid"] == f"{ISSUER}#{jwk_thumbprint(jwk)}"


def test_rotate_promotes_the_published_next_key(ring: KeyRing) -> None:
    old_active, old_next = ring.active, ring.next
    assert old_next is not None
    assert old_next.kid in _kids(ring)

    rotated = ring.rotate(LATER, RETAIN)

    assert rotated.active.kid == old_next.kid
    assert rotated.active.activated_at == LATER
    assert rotated.active.pair.seed() == old_next.pair.seed()
    retired = rotated.get(old_active.kid)
    assert retired is not None
    assert retired.state is KeyState.RETIRED
    assert retired.retired_at == LATER
    assert retired.remove_after == LATER + RETAIN
    assert rotated.next is not None
    assert rotated.next.kid not in {old_active.kid, old_next.kid}
    assert set(_kids(rotated)) == {old_active.kid, old_next.kid, rotated.next.kid}
    # The ring is immutable: the old one is untouched.
    assert ring.active.kid == old_active.kid


def test_retired_key_is_kept_until_its_retention_ends(ring: KeyRing) -> None:
    first_active = ring.active.kid
    rotated = ring.rotate(LATER, RETAIN)

    assert rotated.prune(LATER + RETAIN - timedelta(seconds=1)) is rotated
    assert first_active in _kids(rotated.rotate(LATER + RETAIN / 2, RETAIN))

    pruned = rotated.prune(LATER + RETAIN)
    assert first_active not in _kids(pruned)
    assert pruned.active.kid == rotated.active.kid
    assert pruned.next is not None

    again = rotated.rotate(LATER + RETAIN, RETAIN)
    assert again.get(first_active) is None
    assert again.get(rotated.active.kid).state is KeyState.RETIRED  # type: ignore[union-attr]
    assert len(again.keys) == 3


def test_cached_jwks_already_holds_the_key_signing_after_rotation(ring: KeyRing) -> None:
    cached = {jwk["kid"]: jwk for jwk in ring.jwks()["keys"]}
    old_token = ring.active.pair.sign(b"signed before the rotation")

    rotated = ring.rotate(LATER, RETAIN)
    new_token = rotated.active.pair.sign(b"signed after the rotation")

    # A verifier that fetched the JWKS before the rotation verifies the new key's tokens without a refetch.
    assert rotated.active.kid in cached
    assert PublicKey.from_jwk(cached[rotated.active.kid]).verify(new_token, b"signed after the rotation")
    # And one that fetches after it still verifies tokens of the retired key.
    fresh = {jwk["kid"]: jwk for jwk in rotated.jwks()["keys"]}
    assert PublicKey.from_jwk(fresh[ring.active.kid]).verify(old_token, b"signed before the rotation")


def test_rotate_without_a_next_key_creates_one(ring: KeyRing) -> None:
    no_next = KeyRing(ISSUER, [ring.active])
    assert no_next.next is None
    rotated = no_next.rotate(LATER, RETAIN)
    assert rotated.active.kid != ring.active.kid
    assert rotated.next is not None
    assert rotated.get(ring.active.kid).state is KeyState.RETIRED  # type: ignore[union-attr]


def test_ring_needs_exactly_one_active_and_at_most_one_next(ring: KeyRing) -> None:
    assert ring.next is not None
    with pytest.raises(ValueError, match="exactly one active"):
        KeyRing(ISSUER, [ring.next])
    with pytest.raises(ValueError, match="exactly one active"):
        KeyRing(ISSUER, [ring.active, replace(ring.next, state=KeyState.ACTIVE)])
    with pytest.raises(ValueError, match="at most one next"):
        KeyRing(ISSUER, [*ring.keys, SigningKey.create(ISSUER, KeyState.NEXT, NOW)])


def test_record_round_trip(ring: KeyRing, kek: KeyEncryptionKey) -> None:
    for key in ring.rotate(LATER, RETAIN).keys:  # active, next and retired: every optional date set or unset
        record = json.loads(json.dumps(key.to_record(kek)))
        restored = SigningKey.from_record(record, kek)
        assert restored == key
        assert restored.pair.seed() == key.pair.seed()
        assert restored.pair.sign(b"m") == key.pair.sign(b"m")


def test_record_does_not_contain_the_raw_seed(ring: KeyRing, kek: KeyEncryptionKey) -> None:
    record = ring.active.to_record(kek)
    stored = json.dumps(record)
    seed = ring.active.pair.seed()
    assert b64url_encode(seed) not in stored
    assert seed.hex() not in stored
    assert "d" not in record["public_jwk"]
    assert record["sealed_private_key"].startswith("v1.")


def test_record_with_a_changed_kid_fails(ring: KeyRing, kek: KeyEncryptionKey) -> None:
    assert ring.next is not None
    record = ring.active.to_record(kek) | {"kid": ring.next.kid}
    with pytest.raises(SealingError):
        SigningKey.from_record(record, kek)


def test_sealed_key_swapped_onto_another_record_fails(ring: KeyRing, kek: KeyEncryptionKey) -> None:
    assert ring.next is not None
    active, upcoming = ring.active.to_record(kek), ring.next.to_record(kek)
    with pytest.raises(SealingError):
        SigningKey.from_record(upcoming | {"sealed_private_key": active["sealed_private_key"]}, kek)


def test_record_under_another_kek_fails(ring: KeyRing, kek: KeyEncryptionKey) -> None:
    record = ring.active.to_record(kek)
    with pytest.raises(SealingError):
        SigningKey.from_record(record, KeyEncryptionKey(os.urandom(32)))


def test_record_whose_public_jwk_does_not_match_fails(ring: KeyRing, kek: KeyEncryptionKey) -> None:
    assert ring.next is not None
    record = ring.active.to_record(kek) | {"public_jwk": ring.next.pair.public.jwk()}
    with pytest.raises(ValueError, match="does not match its public JWK"):
        SigningKey.from_record(record, kek)
