"""The online verifier against an issuer served through httpx.MockTransport: what it fetches, when, and what not."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sdk_support import ISSUER_URL, LIST_URL, RESOURCE, FakeIssuer

from agentauth.sdk import JWKS_UNAVAILABLE, AsyncOnlineVerifier, HttpStatusLists, OnlineVerifier
from agentauth.sdk.http import check_fetchable, freshness_lifetime
from agentauth.vc import VerificationError, Verifier
from agentauth.vc import errors as e

JWKS_URL = f"{ISSUER_URL}/.well-known/jwks.json"


def online(issuer: FakeIssuer, **options: Any) -> OnlineVerifier:
    return OnlineVerifier(
        ISSUER_URL,
        resource=RESOURCE,
        http=issuer.client(),
        clock=issuer.time.now,
        monotonic=issuer.time.monotonic,
        **options,
    )


def async_online(issuer: FakeIssuer, **options: Any) -> AsyncOnlineVerifier:
    return AsyncOnlineVerifier(
        ISSUER_URL,
        resource=RESOURCE,
        http=issuer.async_client(),
        clock=issuer.time.now,
        monotonic=issuer.time.monotonic,
        **options,
    )


def test_first_verification_fetches_jwks_and_list_once_then_runs_from_cache() -> None:
    issuer = FakeIssuer()
    verifier = online(issuer)
    for _ in range(3):
        token, claims = issuer.token()
        assert verifier.verify_access_token(token).subject == claims["sub"]
    assert issuer.requests == {JWKS_URL: 1, LIST_URL: 1}


def test_unknown_kid_triggers_one_refetch() -> None:
    issuer = FakeIssuer()
    verifier = online(issuer, min_refresh_interval=30)
    verifier.verify_access_token(issuer.token()[0])
    issuer.rotate()
    issuer.rotate()  # the active key is now one the cached JWKS never held
    issuer.time.advance(31)  # past the refetch rate limit
    token, _ = issuer.token()
    assert verifier.verify_access_token(token).kid == issuer.ring.active.kid
    assert issuer.requests[JWKS_URL] == 2


def test_unknown_kid_flood_costs_one_jwks_request_per_interval() -> None:
    issuer = FakeIssuer()
    verifier = online(issuer, min_refresh_interval=30)
    other = FakeIssuer(time=issuer.time)  # same URL, different keys: its tokens name kids our issuer never had
    verifier.verify_access_token(issuer.token()[0])
    issuer.time.advance(31)
    for _ in range(10):
        with pytest.raises(VerificationError) as caught:
            verifier.verify_access_token(other.token()[0])
        assert caught.value.code == e.UNKNOWN_KID
    assert issuer.requests[JWKS_URL] == 2
    issuer.time.advance(31)
    with pytest.raises(VerificationError):
        verifier.verify_access_token(other.token()[0])
    assert issuer.requests[JWKS_URL] == 3


def test_status_list_is_cached_for_its_ttl_then_revocation_shows() -> None:
    issuer = FakeIssuer(ttl=60)
    verifier = online(issuer)
    token, claims = issuer.token()
    verifier.verify_access_token(token)
    issuer.revoke(claims)
    issuer.time.advance(30)
    verifier.verify_access_token(token)  # still within the ttl: the cached list says "not revoked"
    assert issuer.requests[LIST_URL] == 1
    issuer.time.advance(31)
    with pytest.raises(VerificationError) as caught:
        verifier.verify_access_token(token)
    assert caught.value.code == e.REVOKED
    assert issuer.requests[LIST_URL] == 2


def test_unchanged_list_is_revalidated_with_if_none_match() -> None:
    issuer = FakeIssuer(ttl=60)
    seen: list[str | None] = []
    inner = issuer.handler

    def spy(request: httpx.Request) -> httpx.Response:
        if str(request.url) == LIST_URL:
            seen.append(request.headers.get("if-none-match"))
        return inner(request)

    verifier = OnlineVerifier(
        ISSUER_URL,
        resource=RESOURCE,
        http=httpx.Client(transport=httpx.MockTransport(spy)),
        clock=issuer.time.now,
        monotonic=issuer.time.monotonic,
    )
    token, _ = issuer.token()
    verifier.verify_access_token(token)
    issuer.time.advance(61)
    verifier.verify_access_token(token)
    assert seen[0] is None and seen[1] is not None and seen[1].startswith('"')


def test_a_token_naming_a_foreign_status_list_makes_no_request_there() -> None:
    """No SSRF: even a correctly signed token cannot send the verifier to another origin."""
    issuer = FakeIssuer()
    verifier = online(issuer)
    for url in (
        "http://169.254.169.254/latest/meta-data",
        "https://issuer.test.evil.example/list",
        "file:///etc/passwd",
    ):
        token, _ = issuer.token(list_url=url)
        with pytest.raises(VerificationError) as caught:
            verifier.verify_access_token(token)
        assert caught.value.code == e.STATUS_UNAVAILABLE
    assert set(issuer.requests) == {JWKS_URL}


def test_a_forged_token_never_causes_a_status_fetch() -> None:
    issuer = FakeIssuer()
    verifier = online(issuer)
    verifier.refresh_keys()
    token, _ = issuer.token()
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload[:-2]}AA.{signature}"
    with pytest.raises(VerificationError) as caught:
        verifier.verify_access_token(tampered)
    assert caught.value.code in (e.INVALID_SIGNATURE, e.MALFORMED)
    assert LIST_URL not in issuer.requests


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://issuer.test/api/v1/status-lists/1", True),
        ("https://ISSUER.test:443/api/v1/status-lists/2", True),
        ("http://issuer.test/api/v1/status-lists/1", False),
        ("https://issuer.test:8443/api/v1/status-lists/1", False),
        ("https://user@issuer.test/api/v1/status-lists/1", False),
        ("https://issuer.test/../x", False),
        ("ftp://issuer.test/x", False),
    ],
)
def test_only_the_issuers_origin_is_fetchable(url: str, ok: bool) -> None:
    if ok:
        check_fetchable(url, ISSUER_URL)
    else:
        with pytest.raises(LookupError):
            check_fetchable(url, ISSUER_URL)


def test_issuer_with_a_path_confines_fetches_below_it() -> None:
    check_fetchable("https://host.test/auth/api/v1/status-lists/1", "https://host.test/auth")
    with pytest.raises(LookupError):
        check_fetchable("https://host.test/other/list", "https://host.test/auth")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"cache-control": "public, max-age=10"}, 10.0),
        ({"cache-control": "max-age=10, public", "age": "4"}, 6.0),
        ({"cache-control": "no-store"}, 0.0),
        ({"cache-control": "public, no-cache"}, 0.0),
        ({}, 99.0),
    ],
)
def test_cache_control_freshness(headers: dict[str, str], expected: float) -> None:
    assert freshness_lifetime(headers, 99.0) == expected


def test_issuer_down_is_unavailable_not_invalid() -> None:
    issuer = FakeIssuer()
    issuer.down = True
    verifier = online(issuer)
    with pytest.raises(VerificationError) as caught:
        verifier.verify_access_token(issuer.token()[0])
    assert caught.value.code == JWKS_UNAVAILABLE

    issuer.down = False
    issuer.time.advance(31)
    token, _ = issuer.token()
    verifier.verify_access_token(token)
    issuer.down = True
    issuer.time.advance(issuer.ttl + 1)
    with pytest.raises(VerificationError) as caught:
        verifier.verify_access_token(token)
    assert caught.value.code == e.STATUS_UNAVAILABLE  # fail closed: no stale "not revoked"


def test_delegated_token_chain_verifies_online() -> None:
    issuer = FakeIssuer()
    verifier = online(issuer)
    token, _ = issuer.chained_token(depth=3)
    verified = verifier.verify_access_token(token)
    assert len(verified.chain) == 3
    assert issuer.requests == {JWKS_URL: 1, LIST_URL: 1}


def test_jwks_is_refreshed_when_its_max_age_runs_out() -> None:
    issuer = FakeIssuer(jwks_max_age=120)
    verifier = online(issuer)
    verifier.verify_access_token(issuer.token()[0])
    issuer.time.advance(60)
    verifier.verify_access_token(issuer.token()[0])
    assert issuer.requests[JWKS_URL] == 1
    issuer.time.advance(61)
    verifier.verify_access_token(issuer.token()[0])
    assert issuer.requests[JWKS_URL] == 2


@pytest.mark.anyio
async def test_async_verifier_shares_one_fetch_between_concurrent_misses() -> None:
    issuer = FakeIssuer()
    verifier = async_online(issuer)
    tokens = [issuer.token()[0] for _ in range(20)]
    results = await asyncio.gather(*(verifier.verify_access_token(t) for t in tokens))
    assert len(results) == 20
    assert issuer.requests == {JWKS_URL: 1, LIST_URL: 1}

    issuer.rotate()
    issuer.rotate()
    issuer.time.advance(31)
    fresh = [issuer.token()[0] for _ in range(10)]
    await asyncio.gather(*(verifier.verify_access_token(t) for t in fresh))
    assert issuer.requests[JWKS_URL] == 2
    await verifier.aclose()


@pytest.mark.anyio
async def test_async_verifier_revocation_after_ttl() -> None:
    issuer = FakeIssuer(ttl=30)
    verifier = async_online(issuer)
    token, claims = issuer.token()
    await verifier.verify_access_token(token)
    issuer.revoke(claims)
    issuer.time.advance(31)
    with pytest.raises(VerificationError) as caught:
        await verifier.verify_access_token(token)
    assert caught.value.code == e.REVOKED


def test_status_source_override_reads_no_lists_over_http() -> None:
    from agentauth.vc import StaticStatusLists

    issuer = FakeIssuer()
    verifier = online(issuer, status_source=StaticStatusLists({LIST_URL: issuer.list_jwt}))
    verifier.verify_access_token(issuer.token()[0])
    assert issuer.requests == {JWKS_URL: 1}


def test_expired_token_is_expired_not_fetched_again() -> None:
    issuer = FakeIssuer()
    verifier = online(issuer)
    token, _ = issuer.token(lifetime=timedelta(minutes=1))
    verifier.verify_access_token(token)
    issuer.time.advance(120)
    with pytest.raises(VerificationError) as caught:
        verifier.verify_access_token(token)
    assert caught.value.code == e.EXPIRED


def test_http_status_lists_as_a_source_for_the_plain_core_verifier() -> None:
    issuer = FakeIssuer(ttl=60)
    source = HttpStatusLists(ISSUER_URL, http=issuer.client(), monotonic=issuer.time.monotonic)
    verifier = Verifier(issuer_url=ISSUER_URL, jwks=issuer.ring.jwks(), status_source=source, clock=issuer.time.now)
    token, claims = issuer.token()
    verifier.verify_access_token(token)
    verifier.verify_access_token(issuer.token()[0])
    assert issuer.requests == {LIST_URL: 1}
    issuer.revoke(claims)
    issuer.time.advance(61)
    with pytest.raises(VerificationError) as caught:
        verifier.verify_access_token(token)
    assert caught.value.code == e.REVOKED
    assert issuer.requests == {LIST_URL: 2}

    # The core re-asks the moment its copy's ttl runs out: a copy that is itself about to go stale is refetched
    # rather than handed over for another full ttl.
    issuer.time.advance(59.5)
    source.fetch(LIST_URL)
    assert issuer.requests == {LIST_URL: 3}

    foreign, _ = issuer.token(list_url="http://10.0.0.1/list")
    with pytest.raises(VerificationError) as caught:
        verifier.verify_access_token(foreign)
    assert caught.value.code == e.STATUS_UNAVAILABLE
    assert issuer.requests == {LIST_URL: 3}
