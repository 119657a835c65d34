"""Client ID Metadata Documents as an attack surface (draft-ietf-oauth-client-id-metadata-document, sections
"Server Side Request Forgery (SSRF) Attacks" and "Client Metadata"): a ``client_id`` URL is chosen by anyone
and fetched by the server.

Every attempt goes through the service's directory (``services.clients.resolve``) on a real database, and
each asserts the specific refusal (``InvalidClientMetadataDocument``, ``invalid_client``, its reason), that the
refusal is negative-cached (a second resolve refuses again without a second fetch), that nothing was stored,
and where the request went: the fetcher's HTTP transport is a recording wrapper around httpx's own (it
counts every request handed to the network), its resolver a recording wrapper around the system resolver
(with a few test names answering private addresses - the one DNS seam of ``issuer/cimd.py``), and documents
are served by real hosts on 127.0.0.1 and ::1 that count their hits. With the dev setting off, no SSRF attempt
makes a single request; with it on (the literal 127.0.0.1 admitted, for tests), only that host is ever asked,
redirects are not followed, a document too large is cut at the limit and a slow one at the timeout.
``test_catalogue_size`` counts them: 90 attempts, 0 accepted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from security_support import assert_unchanged, snapshot

from agentauth.bootstrap import Services, build_services
from agentauth.errors import InvalidClientMetadataDocument
from agentauth.issuer.cimd import CimdFetcher, system_resolver
from cimd_support import DocumentHost, document_host
from support import reset_postgres

pytestmark = pytest.mark.anyio

# Test names whose "DNS" answers are private (the resolver seam); every other name goes to the system resolver.
FAKE_DNS = {
    "metadata.attacker.test": ["169.254.169.254"],
    "intranet.attacker.test": ["10.0.0.7"],
    "mixed.attacker.test": ["93.184.216.34", "192.168.1.1"],  # one public answer does not launder a private one
    "mapped.attacker.test": ["::ffff:127.0.0.1"],
    "nat64.attacker.test": ["64:ff9b::a9fe:a9fe"],  # 169.254.169.254 through NAT64
    "sixtofour.attacker.test": ["2002:a00:1::1"],  # 10.0.0.1 inside 6to4
    "ula.attacker.test": ["fd00::1"],
    "shared.attacker.test": ["100.64.0.1"],  # RFC 6598 carrier-grade NAT
    "empty.attacker.test": [],
}
NOT_PUBLIC = "is not a public address"
TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Attempt:
    id: str
    url: str  # {p}: the port of the 127.0.0.1 host, {p6}: of the ::1 host
    reason: str
    reaches: int = 0  # requests that may reach the 127.0.0.1 host (dev setting on: the one allowed fetch)


# The dev setting off (the default): every URL below is refused before any request is made.
SSRF = [
    Attempt("loopback", "https://127.0.0.1:{p}/good.json", NOT_PUBLIC),
    Attempt("loopback-default-port", "https://127.0.0.1/good.json", NOT_PUBLIC),
    Attempt("loopback-other", "https://127.0.0.2/good.json", NOT_PUBLIC),
    Attempt("loopback-http", "http://127.0.0.1:{p}/good.json", "client_id URL must use https"),
    Attempt("localhost", "https://localhost:{p}/good.json", NOT_PUBLIC),
    Attempt("hosts-file-name", "https://vm:{p}/good.json", NOT_PUBLIC),  # /etc/hosts: 127.0.0.1 vm
    Attempt("ipv6-loopback", "https://[::1]:{p6}/good.json", NOT_PUBLIC),
    Attempt("ipv6-unspecified", "https://[::]:{p6}/good.json", NOT_PUBLIC),
    Attempt("ipv4-mapped-loopback", "https://[::ffff:127.0.0.1]:{p}/good.json", NOT_PUBLIC),
    Attempt("ipv4-mapped-hex", "https://[::ffff:7f00:1]:{p}/good.json", NOT_PUBLIC),
    Attempt("ipv6-link-local", "https://[fe80::1]/good.json", NOT_PUBLIC),
    Attempt("cloud-metadata", "https://169.254.169.254/latest/meta-data/", NOT_PUBLIC),
    Attempt("cloud-metadata-ipv6", "https://[fd00:ec2::254]/latest/meta-data/", NOT_PUBLIC),
    Attempt("private-10", "https://10.0.0.1/client.json", NOT_PUBLIC),
    Attempt("private-172", "https://172.16.0.1/client.json", NOT_PUBLIC),
    Attempt("private-192", "https://192.168.1.1/client.json", NOT_PUBLIC),
    Attempt("unspecified", "https://0.0.0.0:{p}/good.json", NOT_PUBLIC),
    Attempt("shared-address", "https://100.64.0.1/client.json", NOT_PUBLIC),
    Attempt("multicast", "https://224.0.0.1/client.json", NOT_PUBLIC),
    Attempt("broadcast", "https://255.255.255.255/client.json", NOT_PUBLIC),
    Attempt("decimal-loopback", "https://2130706433:{p}/good.json", NOT_PUBLIC),
    Attempt("hex-loopback", "https://0x7f000001:{p}/good.json", NOT_PUBLIC),
    Attempt("short-loopback", "https://127.1:{p}/good.json", NOT_PUBLIC),
    Attempt("octal-loopback", "https://0177.0.0.1:{p}/good.json", NOT_PUBLIC),
    Attempt("dns-to-metadata", "https://metadata.attacker.test/client.json", NOT_PUBLIC),
    Attempt("dns-to-private", "https://intranet.attacker.test/client.json", NOT_PUBLIC),
    Attempt("dns-mixed-answers", "https://mixed.attacker.test/client.json", NOT_PUBLIC),
    Attempt("dns-ipv4-mapped", "https://mapped.attacker.test/client.json", NOT_PUBLIC),
    Attempt("dns-nat64", "https://nat64.attacker.test/client.json", NOT_PUBLIC),
    Attempt("dns-6to4", "https://sixtofour.attacker.test/client.json", NOT_PUBLIC),
    Attempt("dns-unique-local", "https://ula.attacker.test/client.json", NOT_PUBLIC),
    Attempt("dns-shared", "https://shared.attacker.test/client.json", NOT_PUBLIC),
    Attempt("dns-no-address", "https://empty.attacker.test/client.json", "has no address"),
    Attempt("http-public", "http://app.example/client.json", "client_id URL must use https"),
    Attempt("userinfo", "https://user:pass@app.example/client.json", "no user information"),
    Attempt("userinfo-confusion", "https://app.example@127.0.0.1:{p}/good.json", "no user information"),
    Attempt("backslash-confusion", "https://app.example\\@127.0.0.1:{p}/good.json", "no user information"),
    Attempt("fragment", "https://app.example/client.json#x", "must not contain a fragment"),
    Attempt("fragment-confusion", "https://127.0.0.1:{p}#@app.example/good.json", "must not contain a fragment"),
    Attempt("query", "https://app.example/client.json?x=1", "must not contain a query"),
    Attempt("no-path", "https://app.example", "must contain a path component"),
    Attempt("root-path", "https://app.example/", "must contain a path component"),
    Attempt("dot-segments", "https://app.example/a/../client.json", "must not contain dot segments"),
    Attempt("port-zero", "https://app.example:0/client.json", "has port 0"),
    Attempt("bad-port", "https://app.example:99999/client.json", "is not a valid URL"),
    Attempt("control-character", "https://app.example/client\r\n.json", "not printable ASCII"),
    Attempt("non-ascii", "https://app.\u0435xample/client.json", "not printable ASCII"),
    Attempt("too-long", "https://app.example/" + "a" * 2000, "too long"),
    Attempt("far-too-long", "https://app.example/" + "a" * 60_000, "too long"),
]

# The dev setting on (127.0.0.1 admitted): still nothing but that host is asked, and its answers are judged.
DEV = [
    Attempt("dev-localhost", "http://localhost:{p}/good.json", "client_id URL must use https"),
    Attempt("dev-localhost-https", "https://localhost:{p}/good.json", NOT_PUBLIC),
    Attempt("dev-other-loopback", "http://127.0.0.2:{p}/good.json", "client_id URL must use https"),
    Attempt("dev-ipv6-loopback", "https://[::1]:{p6}/good.json", NOT_PUBLIC),
    Attempt("dev-unspecified", "https://0.0.0.0:{p}/good.json", NOT_PUBLIC),
    Attempt("dev-private", "https://10.0.0.1/client.json", NOT_PUBLIC),
    Attempt("dev-metadata", "https://169.254.169.254/latest/meta-data/", NOT_PUBLIC),
    *(
        Attempt(f"redirect-{code}", f"http://127.0.0.1:{{p}}/redirect-{code}.json", f"HTTP {code}, not 200", 1)
        for code in (301, 302, 303, 307, 308)
    ),
    Attempt("redirect-to-10", "http://127.0.0.1:{p}/redirect-private.json", "HTTP 302, not 200", 1),
    Attempt("redirect-to-self", "http://127.0.0.1:{p}/redirect-self.json", "HTTP 302, not 200", 1),
    Attempt("not-found", "http://127.0.0.1:{p}/missing.json", "HTTP 404, not 200", 1),
    Attempt("declared-too-large", "http://127.0.0.1:{p}/big.json", "larger than 5120 bytes (Content-Length", 1),
    Attempt("chunked-too-large", "http://127.0.0.1:{p}/big-chunked.json", "larger than 5120 bytes", 1),
    Attempt("endless", "http://127.0.0.1:{p}/endless.json", "larger than 5120 bytes", 1),
    Attempt("slow", "http://127.0.0.1:{p}/slow.json", "no complete answer within 1 s", 1),
    Attempt("slowloris", "http://127.0.0.1:{p}/drip.json", "no complete answer within 1 s", 1),
    Attempt("compressed", "http://127.0.0.1:{p}/gzip.json", "content-encoded", 1),
    Attempt("html", "http://127.0.0.1:{p}/html.json", "'text/html' is not application/json", 1),
    Attempt("not-json", "http://127.0.0.1:{p}/broken.json", "not valid JSON", 1),
    Attempt("not-an-object", "http://127.0.0.1:{p}/array.json", "not a JSON object", 1),
    Attempt("client-id-mismatch", "http://127.0.0.1:{p}/mismatch.json", "does not equal the URL", 1),
    Attempt("client-id-case", "http://127.0.0.1:{p}/case-mismatch.json", "does not equal the URL", 1),
    Attempt("client-id-slash", "http://127.0.0.1:{p}/slash-mismatch.json", "does not equal the URL", 1),
    Attempt("client-id-missing", "http://127.0.0.1:{p}/no-client-id.json", "does not equal the URL", 1),
    Attempt("client-secret", "http://127.0.0.1:{p}/secret.json", "carries a client_secret", 1),
    Attempt("client-secret-expiry", "http://127.0.0.1:{p}/secret-expiry.json", "carries a client_secret", 1),
    Attempt("secret-basic", "http://127.0.0.1:{p}/shared-secret.json", "client_secret_basic needs a shared secret", 1),
    Attempt("secret-post", "http://127.0.0.1:{p}/post-secret.json", "client_secret_post needs a shared secret", 1),
    Attempt("secret-jwt", "http://127.0.0.1:{p}/jwt-secret.json", "client_secret_jwt needs a shared secret", 1),
    Attempt("auth-method-not-a-string", "http://127.0.0.1:{p}/method-array.json", "is not a string", 1),
    Attempt("malformed-logo-uri", "http://127.0.0.1:{p}/bad-logo.json", "logo_uri must be an https URL", 1),
    Attempt("no-redirect-uris", "http://127.0.0.1:{p}/no-redirects.json", "redirect_uris is required", 1),
    Attempt("empty-redirect-uris", "http://127.0.0.1:{p}/empty-redirects.json", "redirect_uris is required", 1),
    Attempt("javascript-redirect", "http://127.0.0.1:{p}/js-redirect.json", "'javascript' is not allowed", 1),
    Attempt(
        "http-redirect", "http://127.0.0.1:{p}/http-redirect.json", "http redirect URIs are allowed only on loopback", 1
    ),
    Attempt("private-scheme", "http://127.0.0.1:{p}/private-scheme.json", "scheme 'com.example.app' is not", 1),
    Attempt("fragment-redirect", "http://127.0.0.1:{p}/fragment-redirect.json", "must not contain a fragment", 1),
]


class RecordingTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, counting every request handed to the network (nothing is faked)."""

    def __init__(self) -> None:
        super().__init__(retries=0)
        self.requests: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.url} Host={request.headers.get('host')}")
        return await super().handle_async_request(request)


class RecordingResolver:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host in FAKE_DNS:
            return FAKE_DNS[host]
        return await system_resolver(host, port)


@dataclass
class Rig:
    services: Services
    transport: RecordingTransport
    resolver: RecordingResolver
    host: DocumentHost
    host6: DocumentHost

    def url(self, attempt: Attempt) -> str:
        return attempt.url.format(p=self.host.port, p6=self.host6.port)


@pytest.fixture
async def hosts() -> AsyncIterator[tuple[DocumentHost, DocumentHost]]:
    async with document_host() as host, document_host("::1") as host6:
        yield host, host6


async def rig(settings_factory: Any, backend: str, hosts: tuple[DocumentHost, DocumentHost], *, dev: bool) -> Rig:
    if backend == "postgres":
        await reset_postgres()
    services = await build_services(
        settings_factory(cimd_allow_loopback=dev, cimd_fetch_timeout_seconds=TIMEOUT_SECONDS)
    )
    transport, resolver = RecordingTransport(), RecordingResolver()
    configured = services.clients.cimd
    services.clients.cimd = CimdFetcher(configured.limits, resolver=resolver, transport=transport)
    await configured.close()
    return Rig(services, transport, resolver, *hosts)


async def assert_refused(rig: Rig, attempt: Attempt) -> None:
    url = rig.url(attempt)
    before = await snapshot(rig.services)
    for round_ in ("fetched", "cached"):
        with pytest.raises(InvalidClientMetadataDocument) as refused:
            await rig.services.clients.resolve(url)
        error = refused.value
        assert error.error == "invalid_client" and error.client_id == url
        assert attempt.reason in error.reason, f"{attempt.id} ({round_}): refused for {error.reason!r}"
        assert error.description == f"The client_id's metadata document cannot be used: {error.reason}."
        # Only the one allowed host, only once (the refusal is cached), and never a redirect's target.
        expected = [f"http://127.0.0.1:{rig.host.port}/"] * attempt.reaches
        assert [r.split(" ")[0].rsplit("/", 1)[0] + "/" for r in rig.transport.requests] == expected, (
            f"{attempt.id} ({round_}): requests made {rig.transport.requests}"
        )
        assert sum(rig.host.hits.values()) == attempt.reaches and sum(rig.host6.hits.values()) == 0
    for address in ("10.", "169.254.", "192.168.", "172.16."):
        assert not any(address in r for r in rig.transport.requests)
    assert await rig.services.clients.registered(url) is None
    await assert_unchanged(rig.services, before, attempt.id)


@pytest.mark.parametrize("attempt", SSRF, ids=[a.id for a in SSRF])
async def test_ssrf_attempts_make_no_request_with_the_dev_setting_off(
    settings_factory: Any, backend: str, hosts: tuple[DocumentHost, DocumentHost], attempt: Attempt
) -> None:
    setup = await rig(settings_factory, backend, hosts, dev=False)
    try:
        await assert_refused(setup, attempt)
        assert not setup.transport.requests
        if attempt.id.startswith("dns-"):
            assert setup.resolver.asked == [attempt.url.split("/")[2]], "the name was resolved once, by the seam"
    finally:
        await setup.services.close()


@pytest.mark.parametrize("attempt", DEV, ids=[a.id for a in DEV])
async def test_with_the_dev_setting_only_127_0_0_1_is_asked_and_its_answer_judged(
    settings_factory: Any, backend: str, hosts: tuple[DocumentHost, DocumentHost], attempt: Attempt
) -> None:
    setup = await rig(settings_factory, backend, hosts, dev=True)
    try:
        await assert_refused(setup, attempt)
        if attempt.id == "endless":
            await asyncio.sleep(0.2)  # let the host notice the closed connection
            # Cut at the limit: an endless body was not read until the timeout (the reason says so), and the host
            # wrote no more than the socket buffers took before the reader hung up.
            assert setup.host.sent["/endless.json"] < 16 * 1024 * 1024
        if attempt.id == "slowloris":
            assert setup.host.sent["/drip.json"] < 10, "each byte came within a read timeout; the total one held"
    finally:
        await setup.services.close()


async def test_the_same_host_serves_a_good_document_so_the_refusals_are_not_an_accident(
    settings_factory: Any, backend: str, hosts: tuple[DocumentHost, DocumentHost]
) -> None:
    """The control: with the dev setting on, the rig does fetch and accept a valid document from 127.0.0.1 -
    so each refusal above is the check it names, not a broken host or transport."""
    setup = await rig(settings_factory, backend, hosts, dev=True)
    try:
        url = f"http://127.0.0.1:{setup.host.port}/good.json"
        client = await setup.services.clients.resolve(url)
        assert client is not None and client.client_id == url and client.source == "cimd" and client.is_public
        assert len(setup.transport.requests) == 1
    finally:
        await setup.services.close()


def test_catalogue_size() -> None:
    attempts = [*SSRF, *DEV]
    assert len({a.id for a in attempts}) == len(attempts) == 90, f"{len(attempts)} attempts, 0 accepted"
