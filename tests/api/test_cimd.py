"""Client ID Metadata Documents resolved by the service's directory (issue 14 item 3): fetched from a host on
127.0.0.1 with the dev setting on (``AGENTAUTH_CIMD_ALLOW_LOOPBACK``), refused without it; redirect URIs from the
document alone; cached per Cache-Control within the floor and ceiling; failures cached briefly; one fetch for
concurrent resolutions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentauth.bootstrap import build_services
from agentauth.errors import InvalidClientMetadataDocument
from agentauth.issuer.cimd import CimdFetcher, CimdLimits, ttl_of
from agentauth.issuer.clients import redirect_uri_matches
from cimd_support import DocumentHost, document_host
from support import reset_postgres

pytestmark = pytest.mark.anyio


@pytest.fixture
async def host() -> AsyncIterator[DocumentHost]:
    async with document_host() as running:
        yield running


@pytest.mark.parametrize("allow", [True, False], ids=["dev-loopback", "default"])
async def test_directory_resolves_a_document_only_with_the_dev_setting(
    settings_factory: Any, backend: str, host: DocumentHost, allow: bool
) -> None:
    if backend == "postgres":
        await reset_postgres()
    services = await build_services(settings_factory(cimd_allow_loopback=allow))
    try:
        url = host.url("good.json")
        if not allow:
            with pytest.raises(InvalidClientMetadataDocument) as refused:
                await services.clients.resolve(url)
            assert refused.value.error == "invalid_client" and refused.value.reason == "client_id URL must use https"
            assert sum(host.hits.values()) == 0
            return
        client = await services.clients.resolve(url)
        assert client is not None and client.source == "cimd" and client.client_id == url
        assert client.client_name == "Example MCP Client" and client.logo_uri == "https://app.example/logo.png"
        assert client.is_public and client.grant_types == ("authorization_code",)
        assert client.redirect_uris == ("http://127.0.0.1:3000/callback", "http://localhost:3000/callback")
        assert redirect_uri_matches(client.redirect_uris, "http://127.0.0.1:49152/callback")
        assert not redirect_uri_matches(client.redirect_uris, "https://evil.example/callback")
        assert host.hosts == [f"127.0.0.1:{host.port}"]
        assert await services.clients.resolve(url) == client
        assert host.hits["/good.json"] == 1, "the second resolution came from the cache"
    finally:
        await services.close()


async def test_cache_follows_max_age_and_failures_are_cached_briefly(host: DocumentHost) -> None:
    now = [1000.0]
    limits = CimdLimits(timeout_seconds=1.0, allow_loopback=True, cache_min_seconds=60, negative_cache_seconds=30)
    fetcher = CimdFetcher(limits, clock=lambda: now[0])
    try:
        good, broken, nostore = host.url("good.json"), host.url("broken.json"), host.url("nostore.json")
        assert (await fetcher.resolve(good)).client_id == good
        with pytest.raises(InvalidClientMetadataDocument, match="not valid JSON"):
            await fetcher.resolve(broken)
        assert (await fetcher.resolve(nostore)).client_id == nostore
        now[0] += 29
        with pytest.raises(InvalidClientMetadataDocument, match="not valid JSON"):  # the cached refusal
            await fetcher.resolve(broken)
        assert (await fetcher.resolve(good)).client_id == good
        assert host.hits["/broken.json"] == 1 and host.hits["/good.json"] == 1
        now[0] += 2  # 31 s: the failure is forgotten
        with pytest.raises(InvalidClientMetadataDocument):
            await fetcher.resolve(broken)
        assert host.hits["/broken.json"] == 2
        now[0] += 30  # 61 s: no-store was kept for the floor only; max-age=600 still holds
        await fetcher.resolve(nostore)
        await fetcher.resolve(good)
        assert host.hits["/nostore.json"] == 2 and host.hits["/good.json"] == 1
        now[0] += 600
        await fetcher.resolve(good)
        assert host.hits["/good.json"] == 2
    finally:
        await fetcher.close()


async def test_concurrent_resolutions_share_one_fetch(host: DocumentHost) -> None:
    fetcher = CimdFetcher(CimdLimits(timeout_seconds=2.0, allow_loopback=True))
    try:
        results = await asyncio.gather(*(fetcher.resolve(host.url("good-shared.json")) for _ in range(10)))
        assert all(r is not None and r.client_id == host.url("good-shared.json") for r in results)
        assert host.hits["/good-shared.json"] == 1
    finally:
        await fetcher.close()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, 300.0),
        ("max-age=600", 600.0),
        ("public, max-age=10", 60.0),  # floor
        ("max-age=9999999", 86_400.0),  # ceiling
        ("no-store", 60.0),
        ("no-cache, max-age=600", 60.0),
        ("max-age=abc", 300.0),
    ],
)
def test_ttl_is_clamped(header: str | None, expected: float) -> None:
    assert ttl_of(header, CimdLimits()) == expected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("no-redirects.json", "redirect_uris is required"),
        ("shared-secret.json", "token_endpoint_auth_method client_secret_basic needs a shared secret"),
        ("secret.json", "carries a client_secret"),
        ("js-redirect.json", "scheme 'javascript' is not allowed"),
        ("mismatch.json", "its client_id does not equal the URL"),
        ("html.json", "is not application/json"),
        ("missing.json", "answered HTTP 404"),
    ],
)
async def test_an_unusable_document_is_one_clear_refusal(host: DocumentHost, name: str, reason: str) -> None:
    """Whatever is wrong with the document, resolve raises InvalidClientMetadataDocument (never a registration
    error such as InvalidRedirectUri), whose description names the reason; concurrent callers all get it."""
    fetcher = CimdFetcher(CimdLimits(timeout_seconds=2.0, allow_loopback=True))
    try:
        results = await asyncio.gather(*(fetcher.resolve(host.url(name)) for _ in range(3)), return_exceptions=True)
        for result in results:
            assert type(result) is InvalidClientMetadataDocument, result
            assert result.error == "invalid_client" and reason in result.reason
            assert result.description.startswith("The client_id's metadata document cannot be used: ")
            assert result.client_id == host.url(name)
        assert host.hits["/" + name] == 1
    finally:
        await fetcher.close()
