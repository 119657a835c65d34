"""OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP authorization 2025-11-25,
"Client ID Metadata Documents"): a ``client_id`` that is an https URL names the JSON document describing it.

The fetch is the dangerous part - a URL chosen by anyone, fetched by the server (draft section "Server Side
Request Forgery (SSRF) Attacks"). So:

* the URL: ``https``, a path other than ``/``, no fragment, no user information, no dot segments, no query;
* the address: the host is resolved once and *every* address must be public - not private, loopback, link-local
  (169.254.0.0/16, the cloud metadata address), unique-local, multicast, unspecified, reserved or shared, also
  when wrapped as IPv4-mapped, 6to4 or Teredo IPv6 - and the request goes to that checked address (the URL's
  host carried in ``Host`` and TLS SNI, certificate checked against the name), so DNS cannot answer differently
  the second time (no rebinding gap). No proxy from the environment. ``AGENTAUTH_CIMD_ALLOW_LOOPBACK=1`` (tests
  and local development only) admits the literal host ``127.0.0.1``, over http too;
* the answer: 200 only (redirects are not followed), ``application/json`` (or ``+json``), at most
  ``cimd_max_bytes`` (the draft's recommendation: 5 KB), all within ``cimd_fetch_timeout_seconds`` (<= 5 s);
* the document: a JSON object whose ``client_id`` equals the URL exactly ("MUST validate"), redirect URIs from
  it alone, no shared secret (``token_endpoint_auth_method`` ``none``; ``client_secret`` MUST NOT appear);
* caching per ``Cache-Control: max-age`` clamped to a floor and a ceiling, failures cached briefly.

Every refusal - of the URL, the address, the answer or the document - is one error,
``InvalidClientMetadataDocument`` (``invalid_client``), whose description says why in words safe to show the
user (no resolved address, no transport error text: those go to the log and ``debug``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import certifi
import httpx
import orjson

from agentauth.errors import AgentAuthError, InvalidClientMetadataDocument, printable
from agentauth.issuer.client_metadata import SECRET_METHODS, parse_client_metadata
from agentauth.issuer.clients import OAuthClient

log = logging.getLogger("agentauth.cimd")
DEV_LOOPBACK = "127.0.0.1"
MAX_URL_CHARS = 2000
CACHE_ENTRIES = 1000
DEFAULT_TTL_SECONDS = 300
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class CimdLimits:
    timeout_seconds: float = 5.0
    max_bytes: int = 5120
    cache_min_seconds: int = 60
    cache_max_seconds: int = 86_400
    negative_cache_seconds: int = 30
    allow_loopback: bool = False
    # Extra certificate authorities (a PEM file) trusted for https documents, besides the public ones: a private
    # PKI, or a test's own CA. None: the public roots only.
    ca_bundle: str | None = None


class CimdRefused(Exception):
    """Why a document was not accepted: ``reason`` for the user, ``detail`` (default: the reason) for the log."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail if detail is not None else reason


def looks_like_cimd(client_id: str) -> bool:
    """Whether ``client_id`` is URL-formatted, so it names a metadata document (never a stored client)."""
    return client_id.startswith(("https://", "http://"))


def check_client_id_url(client_id: str, *, allow_loopback: bool) -> SplitResult:
    """The parts of a valid client identifier URL (draft section "Client Identifier URL"), else ``CimdRefused``."""
    if len(client_id) > MAX_URL_CHARS or not client_id.isascii() or not client_id.isprintable() or " " in client_id:
        raise CimdRefused("client_id URL is too long or not printable ASCII")
    try:
        parts = urlsplit(client_id)
        port = parts.port
    except ValueError:
        raise CimdRefused("client_id is not a valid URL") from None
    dev = allow_loopback and parts.hostname == DEV_LOOPBACK
    if parts.scheme != "https" and not (dev and parts.scheme == "http"):
        raise CimdRefused("client_id URL must use https")
    if not parts.hostname or "@" in parts.netloc:
        raise CimdRefused("client_id URL needs a host and no user information")
    if parts.fragment or "#" in client_id:
        raise CimdRefused("client_id URL must not contain a fragment")
    if parts.query or "?" in client_id:
        raise CimdRefused("client_id URL must not contain a query")
    if parts.path in ("", "/"):
        raise CimdRefused("client_id URL must contain a path component")
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise CimdRefused("client_id URL must not contain dot segments")
    if port == 0:
        raise CimdRefused("client_id URL has port 0")
    return parts


def _embedded(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64 (RFC 6052)
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


def is_public_address(text: str) -> bool:
    """A globally routable unicast address (and so is any IPv4 address it embeds)."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    candidates = [ip, *_embedded(ip)]
    return all(a.is_global and not a.is_multicast and not a.is_unspecified for a in candidates) and not (
        isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped is not None or ip.is_site_local)
    )


def ttl_of(cache_control: str | None, limits: CimdLimits) -> float:
    """Seconds to keep a document: ``max-age`` (``no-store``/``no-cache``: the floor), clamped to the limits."""
    value = DEFAULT_TTL_SECONDS
    if cache_control:
        lowered = cache_control.lower()
        if "no-store" in lowered or "no-cache" in lowered:
            value = 0
        elif match := _MAX_AGE.search(cache_control):
            value = int(match.group(1))
    return float(min(max(value, limits.cache_min_seconds), limits.cache_max_seconds))


def _json_type(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class CimdFetcher:
    """Resolves URL client ids to clients, under ``limits``; one fetch at a time per URL, results cached."""

    def __init__(
        self,
        limits: CimdLimits,
        *,
        resolver: Resolver = system_resolver,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``resolver`` and ``transport`` are seams for tests (a recording resolver, a transport that counts the
        connections made); the defaults are the system resolver and httpx's own transport."""
        self.limits = limits
        self._resolver = resolver
        self._clock = clock
        # A client, or the refusal (reason, detail) of its document.
        self._cache: OrderedDict[str, tuple[float, OAuthClient | tuple[str, str]]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[OAuthClient | tuple[str, str]]] = {}
        verify: ssl.SSLContext | bool = True
        if limits.ca_bundle is not None:
            verify = ssl.create_default_context(cafile=certifi.where())
            verify.load_verify_locations(cafile=limits.ca_bundle)
        self._http = httpx.AsyncClient(
            verify=verify,
            follow_redirects=False,
            trust_env=False,  # a proxy would connect on our behalf, to an address we never checked
            timeout=httpx.Timeout(limits.timeout_seconds),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=0),
            transport=transport,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def resolve(self, client_id: str) -> OAuthClient:
        """The client ``client_id`` (a URL) describes, else ``InvalidClientMetadataDocument`` saying why; both
        cached (a refusal for ``negative_cache_seconds``)."""
        now = self._clock()
        cached = self._cache.get(client_id)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(client_id)
            return _outcome(client_id, cached[1])
        pending = self._inflight.get(client_id)
        if pending is not None:
            return _outcome(client_id, await asyncio.shield(pending))
        future: asyncio.Future[OAuthClient | tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._inflight[client_id] = future
        try:
            result: OAuthClient | tuple[str, str]
            try:
                result, ttl = await self.fetch(client_id)
            except CimdRefused as exc:
                result, ttl = (exc.reason, exc.detail), float(self.limits.negative_cache_seconds)
            except AgentAuthError as exc:  # parse_client_metadata: InvalidRedirectUri, InvalidClientMetadata
                reason = f"{exc.description.rstrip('.')} ({exc.error})"
                result, ttl = (reason, f"{reason}; {exc.debug or ''}"), float(self.limits.negative_cache_seconds)
            if not isinstance(result, OAuthClient):
                log.info("client metadata document %s refused: %s", printable(client_id, 300), printable(result[1]))
            self._remember(client_id, result, ttl)
            future.set_result(result)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._inflight[client_id]
        return _outcome(client_id, result)

    def _remember(self, client_id: str, client: OAuthClient | tuple[str, str], ttl: float) -> None:
        self._cache[client_id] = (self._clock() + ttl, client)
        self._cache.move_to_end(client_id)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)

    async def _address(self, host: str, port: int) -> str:
        """The checked address to connect to, for ``host`` (a name or an IP literal)."""
        literal = host.strip("[]")
        if self.limits.allow_loopback and literal == DEV_LOOPBACK:
            return DEV_LOOPBACK
        try:
            ipaddress.ip_address(literal)
            addresses = [literal]
        except ValueError:
            try:
                addresses = await self._resolver(host, port)
            except OSError as exc:
                raise CimdRefused(f"its host {host} does not resolve", f"host {host} does not resolve: {exc}") from None
        if not addresses:
            raise CimdRefused(f"its host {host} has no address")
        refused = [a for a in addresses if not is_public_address(a)]
        if refused:
            # The address itself stays in the log: the user must not learn how internal names resolve.
            raise CimdRefused(
                f"its host {host} is not a public address (private, loopback, link-local or reserved)",
                f"host {host} resolves to a non-public address {refused[0]}",
            )
        return addresses[0]

    async def fetch(self, client_id: str) -> tuple[OAuthClient, float]:
        """Fetch and validate the document of ``client_id`` (no cache); (client, seconds to keep it)."""
        parts = check_client_id_url(client_id, allow_loopback=self.limits.allow_loopback)
        host = str(parts.hostname)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            async with asyncio.timeout(self.limits.timeout_seconds):
                address = await self._address(host, port)
                body, cache_control = await self._get(parts, host, port, address)
        except TimeoutError:
            raise CimdRefused(f"no complete answer within {self.limits.timeout_seconds:g} s") from None
        except httpx.HTTPError as exc:
            raise CimdRefused(
                f"it could not be fetched ({type(exc).__name__})", f"fetch failed: {type(exc).__name__}: {exc}"
            ) from None
        return self._client(client_id, body), ttl_of(cache_control, self.limits)

    async def _get(self, parts: SplitResult, host: str, port: int, address: str) -> tuple[bytes, str | None]:
        target = f"[{address}]" if ":" in address else address
        url = f"{parts.scheme}://{target}:{port}{parts.path}"
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        headers = {"Host": parts.netloc, "Accept": "application/json", "Accept-Encoding": "identity"}
        async with self._http.stream("GET", url, headers=headers, extensions=extensions) as response:
            if response.status_code != 200:
                raise CimdRefused(f"its URL answered HTTP {response.status_code}, not 200 (redirects are not followed)")
            if not _json_type(response.headers.get("content-type")):
                raise CimdRefused(f"its content type {response.headers.get('content-type')!r} is not application/json")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.limits.max_bytes:
                raise CimdRefused(f"it is larger than {self.limits.max_bytes} bytes (Content-Length {declared})")
            if response.headers.get("content-encoding", "identity").lower() != "identity":
                raise CimdRefused("content-encoded (compressed) documents are not accepted")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > self.limits.max_bytes:
                    raise CimdRefused(f"it is larger than {self.limits.max_bytes} bytes")
            return bytes(body), response.headers.get("cache-control")

    @staticmethod
    def _client(client_id: str, body: bytes) -> OAuthClient:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise CimdRefused("it is not valid JSON") from None
        if not isinstance(document, dict):
            raise CimdRefused("it is not a JSON object")
        if document.get("client_id") != client_id:
            raise CimdRefused("its client_id does not equal the URL it was fetched from")
        if "client_secret" in document or "client_secret_expires_at" in document:
            raise CimdRefused("it carries a client_secret, which a metadata document must not")
        method = document.get("token_endpoint_auth_method", "none")
        if not isinstance(method, str):
            raise CimdRefused("its token_endpoint_auth_method is not a string")
        if method in SECRET_METHODS or method == "client_secret_jwt":
            raise CimdRefused(
                f"token_endpoint_auth_method {method} needs a shared secret, which a metadata document client "
                "cannot have (use none)"
            )
        if method != "none":
            raise CimdRefused(
                f"token_endpoint_auth_method {printable(method, 50)!r} is not supported for a metadata "
                "document client (use none)"
            )
        metadata = parse_client_metadata({"token_endpoint_auth_method": "none", **document}, auth_methods=("none",))
        for uri in metadata.redirect_uris:
            if urlsplit(uri).scheme not in ("https", "http"):  # http: loopback only, per check_redirect_uri
                raise CimdRefused(
                    f"redirect URI scheme {urlsplit(uri).scheme!r} is not allowed: a metadata document client "
                    "redirects to https, or http on loopback (RFC 8252 section 7.3)"
                )
        return OAuthClient(
            client_id=client_id,
            client_name=metadata.client_name,
            logo_uri=metadata.logo_uri,
            redirect_uris=metadata.redirect_uris,
            token_endpoint_auth_method=metadata.token_endpoint_auth_method,
            grant_types=metadata.grant_types,
            scope=metadata.scope,
            source="cimd",
            dpop_bound_access_tokens=metadata.dpop_bound_access_tokens,
        )


def _outcome(client_id: str, result: OAuthClient | tuple[str, str]) -> OAuthClient:
    if isinstance(result, OAuthClient):
        return result
    reason, detail = result
    raise InvalidClientMetadataDocument(client_id, reason, debug=f"{printable(client_id, 300)}: {detail}")
