"""A status list is relied on for its ``ttl`` from its ``iat``, plus ``max_status_staleness`` (issue 12 item 15).

Before: an offline verifier took a list file for its whole ``exp`` (a day) although its ``ttl`` says 300 s, and
the online SDK kept whatever copy a cache's ``Cache-Control`` allowed - in both cases a revocation stayed unseen
for up to a day. Now a copy older than ``iat + ttl + max_status_staleness`` (default 60 s) is refetched where
the SDK can fetch, and otherwise refused with ``status_stale``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sdk_support import ISSUER_URL, LIST_URL, RESOURCE, FakeIssuer

from agentauth.sdk import UNAVAILABLE_CODES, OnlineVerifier, offline_verifier
from agentauth.vc import StaticStatusLists, VerificationError, Verifier
from agentauth.vc import errors as e
from agentauth.vc.status import status_list_filename

TTL = 300
GRACE = 60  # agentauth.vc.DEFAULT_MAX_STATUS_STALENESS_SECONDS (literals here, so the file runs against main too)
STATUS_STALE = "status_stale"


def saved(issuer: FakeIssuer, tmp_path: Path) -> tuple[Path, Path]:
    """The JWKS and the status list as saved for an air-gapped verifier at the issuer's current time."""
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps({"issuer": ISSUER_URL} | issuer.ring.jwks()))
    lists = tmp_path / "lists"
    lists.mkdir(exist_ok=True)
    (lists / status_list_filename(LIST_URL)).write_text(issuer.list_jwt + "\n")
    return jwks, lists


def code_of(verifier: Verifier | OnlineVerifier, token: str) -> str | None:
    try:
        verifier.verify_access_token(token)
    except VerificationError as exc:
        return exc.code
    return None


def test_default_staleness_is_small_and_the_code_is_stable() -> None:
    from agentauth.vc import DEFAULT_MAX_STATUS_STALENESS_SECONDS

    assert DEFAULT_MAX_STATUS_STALENESS_SECONDS == GRACE
    assert e.STATUS_STALE == STATUS_STALE


def test_offline_verifier_refuses_a_saved_list_older_than_its_ttl_plus_the_grace(tmp_path: Path) -> None:
    """On main: accepted until the list's exp, a day later."""
    issuer = FakeIssuer(ttl=TTL)
    token, _ = issuer.token(lifetime=timedelta(hours=1))
    jwks, lists = saved(issuer, tmp_path)
    signed = issuer.time.now()

    still_fresh = offline_verifier(jwks, resource=RESOURCE, status_dir=lists)
    assert still_fresh.verify_access_token(token, now=signed + timedelta(seconds=TTL + GRACE - 1))

    with pytest.raises(VerificationError) as stale:
        offline_verifier(jwks, resource=RESOURCE, status_dir=lists).verify_access_token(
            token, now=signed + timedelta(seconds=1800)
        )
    assert stale.value.code == STATUS_STALE
    assert "ttl is 300s" in stale.value.detail and "60s more staleness" in stale.value.detail
    # A verifier that already cached the list stops using it at the same instant: the cache is bounded too.
    with pytest.raises(VerificationError) as cached:
        still_fresh.verify_access_token(token, now=signed + timedelta(seconds=TTL + GRACE + 1))
    assert cached.value.code == STATUS_STALE


def test_max_status_staleness_is_configurable(tmp_path: Path) -> None:
    issuer = FakeIssuer(ttl=TTL)
    token, _ = issuer.token(lifetime=timedelta(hours=2))
    jwks, lists = saved(issuer, tmp_path)
    later = issuer.time.now() + timedelta(hours=1)
    assert offline_verifier(jwks, resource=RESOURCE, status_dir=lists, max_status_staleness=3600).verify_access_token(
        token, now=later
    )
    with pytest.raises(VerificationError) as stale:
        offline_verifier(jwks, resource=RESOURCE, status_dir=lists, max_status_staleness=3000).verify_access_token(
            token, now=later
        )
    assert stale.value.code == STATUS_STALE
    # None switches the rule off (the exp of the list still bounds it).
    assert offline_verifier(jwks, resource=RESOURCE, status_dir=lists, max_status_staleness=None).verify_access_token(
        token, now=later
    )
    with pytest.raises(ValueError, match="max_status_staleness"):
        offline_verifier(jwks, resource=RESOURCE, status_dir=lists, max_status_staleness=-1)


def test_a_stale_list_hides_no_revocation_from_a_core_verifier() -> None:
    """The attack: replay yesterday's list (signed, unexpired) to hide a revocation made since."""
    issuer = FakeIssuer(ttl=TTL)
    token, claims = issuer.token(lifetime=timedelta(hours=1))
    old_list = issuer.list_jwt
    issuer.time.advance(TTL + GRACE + 1)
    issuer.revoke(claims)
    replayed = Verifier(
        issuer_url=ISSUER_URL,
        jwks=issuer.ring.jwks(),
        status_source=StaticStatusLists({LIST_URL: old_list}),
        clock=issuer.time.now,
    )
    assert code_of(replayed, token) == STATUS_STALE


def test_online_sdk_refetches_a_list_whose_cache_control_outlives_its_ttl() -> None:
    """A CDN in front of the issuer says max-age=86400. On main the SDK kept the copy for a day and a revoked
    token stayed accepted; now it refetches once the copy is older than ttl + grace and sees the revocation."""
    issuer = FakeIssuer(ttl=TTL, list_max_age=86_400)
    verifier = OnlineVerifier(
        ISSUER_URL, resource=RESOURCE, http=issuer.client(), clock=issuer.time.now, monotonic=issuer.time.monotonic
    )
    token, claims = issuer.token(lifetime=timedelta(hours=1))
    assert code_of(verifier, token) is None
    issuer.revoke(claims)
    issuer.time.advance(TTL + GRACE + 1)
    assert code_of(verifier, token) == e.REVOKED
    assert issuer.requests[LIST_URL] == 2


def test_online_sdk_answers_status_stale_when_only_an_old_list_is_served() -> None:
    """An issuer (or a cache before it) that keeps serving one old signed copy: refused, as unavailable (503)."""
    issuer = FakeIssuer(ttl=TTL, resign=False)
    verifier = OnlineVerifier(
        ISSUER_URL, resource=RESOURCE, http=issuer.client(), clock=issuer.time.now, monotonic=issuer.time.monotonic
    )
    token, _ = issuer.token(lifetime=timedelta(hours=1))
    assert code_of(verifier, token) is None
    issuer.time.advance(TTL + GRACE + 1)
    assert code_of(verifier, token) == STATUS_STALE
    assert STATUS_STALE in UNAVAILABLE_CODES
    fetches = issuer.requests[LIST_URL]
    for _ in range(20):
        assert code_of(verifier, token) == STATUS_STALE
    assert issuer.requests[LIST_URL] <= fetches + 1  # no refetch storm: the clock has not moved


def test_online_sdk_keeps_verifying_against_an_issuer_that_re_signs_every_half_ttl() -> None:
    issuer = FakeIssuer(ttl=TTL)
    verifier = OnlineVerifier(
        ISSUER_URL, resource=RESOURCE, http=issuer.client(), clock=issuer.time.now, monotonic=issuer.time.monotonic
    )
    token, _ = issuer.token(lifetime=timedelta(hours=2))
    for _ in range(40):  # an hour and a half in steps of 137 s
        assert code_of(verifier, token) is None
        issuer.time.advance(137)
