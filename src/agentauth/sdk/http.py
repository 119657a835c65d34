"""What the online verifier reads from HTTP: where the issuer publishes things, how long a response stays fresh
(RFC 9111 section 4.2), and which URLs it may fetch at all.

Sans-I/O: the sync and async verifiers (``online.py``) do the requests with httpx and ask this module what the
answers mean.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

JWKS_PATH: Final = "/.well-known/jwks.json"
STATUS_LIST_MEDIA_TYPE: Final = "application/vc+jwt"
# A JWKS or status list is a few KB; anything much larger is not what we asked for.
MAX_DOCUMENT_BYTES: Final = 1024 * 1024
DEFAULT_TIMEOUT_SECONDS: Final = 5.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(no-store|no-cache)\s*(?:[,=]|$)", re.IGNORECASE)


class FetchError(LookupError):
    """A document could not be fetched or is not what the issuer should serve there.

    A ``LookupError``: the pure core reads it from a status-list source as "list unavailable".
    """


def jwks_url(issuer_url: str) -> str:
    return issuer_url.rstrip("/") + JWKS_PATH


def freshness_lifetime(headers: Mapping[str, str], default: float) -> float:
    """Seconds a response stays fresh: ``max-age`` minus ``Age`` (RFC 9111 sections 4.2.1 and 4.2.3), 0 for
    ``no-store``/``no-cache`` (section 5.2.2), ``default`` when the server says nothing."""
    control = headers.get("cache-control", "")
    if _NO_CACHE.search(control):
        return 0.0
    match = _MAX_AGE.search(control)
    if match is None:
        return default
    age = headers.get("age", "0").strip()
    return max(0.0, float(int(match.group(1)) - (int(age) if age.isdecimal() else 0)))


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return parts.scheme, parts.hostname.lower(), parts.port or (443 if parts.scheme == "https" else 80)


def check_fetchable(url: str, issuer_url: str) -> None:
    """Refuse any URL outside the issuer's origin and path (no SSRF through a URL named in a token).

    The verifier only fetches what the issuer publishes - ``{issuer}/...`` - so a token cannot make a resource
    server request its own internal network or a third party.
    """
    try:
        same_origin = _origin(url) == _origin(issuer_url)
    except ValueError as exc:
        raise FetchError(str(exc)) from None
    parts = urlsplit(url)
    base_path = urlsplit(issuer_url).path.rstrip("/") + "/"
    if not same_origin or not parts.path.startswith(base_path) or parts.username or parts.password:
        raise FetchError(f"{url} is outside the issuer {issuer_url}; refusing to fetch it")
    if ".." in parts.path.split("/"):
        raise FetchError(f"{url} has a '..' path segment; refusing to fetch it")


def parse_jwks(status: int, body: bytes) -> dict[str, Any]:
    """The JWK Set in a JWKS response, or ``FetchError``."""
    if status != 200:
        raise FetchError(f"JWKS answered HTTP {status}")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise FetchError("JWKS is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise FetchError("JWKS has no 'keys' array (RFC 7517 section 5)")
    return document


def parse_status_list(status: int, body: bytes) -> str:
    """The compact JWT in a status-list response, or ``FetchError``."""
    if status != 200:
        raise FetchError(f"status list answered HTTP {status}")
    try:
        text = body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise FetchError("status list is not a compact JWT") from None
    if text.count(".") != 2:
        raise FetchError("status list is not a compact JWT")
    return text
