"""Webhook delivery, one attempt at a time: the target checks, the Standard Webhooks signature and the POST.

Standard Webhooks (https://www.standardwebhooks.com/, "Signature scheme"): each message carries ``webhook-id``
(stable per event, so a receiver dedupes retries), ``webhook-timestamp`` (seconds) and ``webhook-signature``
(``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body`` under the ``whsec_`` secret), made by the spec's own
library. A target is an https URL whose host resolves only to public addresses - the SSRF guards of the client
metadata document fetch (issuer/cimd.py ``is_public_address``), checked when the subscription is made *and* at
every delivery, and the request goes to the address that was checked (no DNS rebinding gap); redirects are not
followed (a 3xx is a failed attempt). ``allow_loopback`` (a development setting) admits ``http://127.0.0.1``.

Retries (``retry_delay``): exponential backoff from 5 s doubling to at most 1 h, with full jitter on the upper
half, up to ``MAX_ATTEMPTS`` attempts; a 2xx answer is success, anything else (or no answer in time) a failure.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import SplitResult, urlsplit

import httpx
from standardwebhooks import Webhook

from agentauth.issuer.cimd import DEV_LOOPBACK, MAX_URL_CHARS, Resolver, is_public_address, system_resolver
from agentauth.keys import KeyEncryptionKey

SECRET_PREFIX = "whsec_"
MAX_ATTEMPTS = 8
FIRST_DELAY_SECONDS = 5.0
MAX_DELAY_SECONDS = 3600.0
TIMEOUT_SECONDS = 10.0


class TargetRefused(Exception):
    """Why a webhook URL may not be used; the message is safe to show (no resolved address)."""


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _bound_to(subscription_id: str) -> bytes:
    return f"webhook-secret:{subscription_id}".encode()


def seal_secret(kek: KeyEncryptionKey, subscription_id: str, secret: str) -> str:
    """The signing secret sealed under the KEK (the worker must read it back to sign), bound to its subscription
    so a sealed secret copied onto another subscription's row does not open."""
    return kek.seal(secret.encode("ascii"), _bound_to(subscription_id))


def open_secret(kek: KeyEncryptionKey, subscription_id: str, sealed: str) -> str:
    return kek.open(sealed, _bound_to(subscription_id)).decode("ascii")


def check_target_url(url: str, *, allow_loopback: bool, noun: str = "webhook") -> SplitResult:
    """The parts of an acceptable webhook URL (https, a host, no user information, no fragment), else refuse.
    ``noun`` names the URL in the refusal (CIBA pings go through the same checks)."""
    if len(url) > MAX_URL_CHARS or not url.isascii() or not url.isprintable() or " " in url:
        raise TargetRefused(f"{noun} URL is too long or not printable ASCII")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused(f"{noun} URL is not a valid URL") from None
    dev = allow_loopback and parts.hostname == DEV_LOOPBACK
    if parts.scheme != "https" and not (dev and parts.scheme == "http"):
        raise TargetRefused(f"{noun} URL must use https")
    if not parts.hostname or "@" in parts.netloc:
        raise TargetRefused(f"{noun} URL needs a host and no user information")
    if parts.fragment or "#" in url:
        raise TargetRefused(f"{noun} URL must not contain a fragment")
    if port == 0:
        raise TargetRefused(f"{noun} URL has port 0")
    return parts


async def checked_address(
    parts: SplitResult, *, allow_loopback: bool, resolver: Resolver = system_resolver, noun: str = "webhook"
) -> str:
    """The address to connect to for ``parts``: every address the host resolves to must be public."""
    host = str(parts.hostname)
    literal = host.strip("[]")
    if allow_loopback and literal == DEV_LOOPBACK:
        return DEV_LOOPBACK
    try:
        ipaddress.ip_address(literal)
        addresses = [literal]
    except ValueError:
        try:
            addresses = await resolver(host, parts.port or 443)
        except OSError:
            raise TargetRefused(f"{noun} host {host} does not resolve") from None
    if not addresses or any(not is_public_address(a) for a in addresses):
        raise TargetRefused(f"{noun} host {host} is not a public address (private, loopback, link-local or reserved)")
    return addresses[0]


@dataclass(frozen=True)
class Attempt:
    """The outcome of one delivery attempt, as the delivery log records it."""

    ok: bool
    status_code: int | None
    duration_ms: int
    error: str | None


def signed_headers(secret: str, message_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed by the spec's library."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
        "content-type": "application/json",
    }


async def deliver(
    http: httpx.AsyncClient,
    url: str,
    secret: str,
    message_id: str,
    body: bytes,
    *,
    allow_loopback: bool,
    resolver: Resolver = system_resolver,
    now: datetime | None = None,
) -> Attempt:
    """POST one signed message to ``url`` (re-checked now: DNS may have changed since the subscription)."""
    headers = signed_headers(secret, message_id, body, now or datetime.now(UTC))
    return await post_checked(http, url, headers, body, allow_loopback=allow_loopback, resolver=resolver)


async def post_checked(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    allow_loopback: bool,
    resolver: Resolver = system_resolver,
    noun: str = "webhook",
) -> Attempt:
    """POST ``body`` to ``url`` after the target checks, to the address that was checked; a 2xx is success."""
    started = time.perf_counter()

    def took() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        parts = check_target_url(url, allow_loopback=allow_loopback, noun=noun)
        address = await checked_address(parts, allow_loopback=allow_loopback, resolver=resolver, noun=noun)
    except TargetRefused as exc:
        return Attempt(False, None, took(), str(exc))
    target = f"[{address}]" if ":" in address else address
    port = parts.port or (443 if parts.scheme == "https" else 80)
    pinned = f"{parts.scheme}://{target}:{port}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
    headers = {**headers, "host": parts.netloc}
    extensions = {"sni_hostname": str(parts.hostname)} if parts.scheme == "https" else {}
    try:
        response = await http.post(pinned, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        return Attempt(False, None, took(), f"no answer ({type(exc).__name__})")
    ok = 200 <= response.status_code < 300
    error = (
        None
        if ok
        else f"HTTP {response.status_code}"
        + (" (redirects are not followed)" if 300 <= response.status_code < 400 else "")
    )
    return Attempt(ok, response.status_code, took(), error)


def delivery_client(*, verify: str | bool = True) -> httpx.AsyncClient:
    """The client deliveries go through: no redirects, no proxy from the environment, a short timeout."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=TIMEOUT_SECONDS, verify=verify)


def retry_delay(
    attempt: int, rand: Callable[[], float] = random.random, *, first: float = FIRST_DELAY_SECONDS
) -> float | None:
    """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next; None: give up.
    ``first``: the ceiling of the first wait (a setting, so tests need not wait seconds)."""
    if attempt >= MAX_ATTEMPTS:
        return None
    ceiling: float = min(MAX_DELAY_SECONDS, first * 2.0 ** (attempt - 1))
    return ceiling / 2 + float(rand()) * ceiling / 2
