"""Status-list sources and the verifier's status cache (Bitstring Status List v1.0 section 3.2, Validate).

A *source* hands the verifier a status list credential (compact JWT) for a URL: from memory, from files
(air-gapped verifiers), or over HTTP (the SDK's online mode, which lives outside the pure core). The cache
keeps each verified, decoded list until its ``ttl`` runs out, so a verifier checks thousands of tokens
against one signature verification and one decompression.

Staleness. ``ttl`` (section 2.2, milliseconds) says how long a list may be relied on before it is refreshed; the
list's ``iat`` says when the issuer vouched for it. A copy older than ``iat + ttl + max_staleness`` is refused
(``status_stale``), whoever hands it over - a file copied to an air-gapped machine, a cache, a replaying proxy -
although its ``exp`` (a day) has not passed: otherwise a revocation could stay hidden for the whole day.
``max_staleness`` (default ``DEFAULT_MAX_STATUS_STALENESS_SECONDS``) absorbs clock skew and the copy's transit;
offline verifiers that receive lists less often than every ``ttl`` must raise it, knowingly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import quote

from agentauth.vc.status_list import StatusList

# The issuer's default ttl (settings.status_list_ttl_seconds); used for a list that states none.
DEFAULT_STATUS_TTL_SECONDS: Final = 300
# How far past ``iat + ttl`` a status list is still accepted: clock skew and transit, no more.
DEFAULT_MAX_STATUS_STALENESS_SECONDS: Final = 60.0


def status_entries(vc: object) -> list[Mapping[str, Any]]:
    """The ``credentialStatus`` entries of a ``vc`` claim - one object or a list of them (VCDM) - as a list,
    unverified and unvalidated beyond being objects: what to fetch, what to show."""
    status = vc.get("credentialStatus") if isinstance(vc, Mapping) else None
    if isinstance(status, Mapping):
        return [status]
    if isinstance(status, list):
        return [entry for entry in status if isinstance(entry, Mapping)]
    return []


def status_ttl_seconds(subject: Mapping[str, Any]) -> float:
    """The list's ``ttl`` in seconds (Bitstring Status List v1.0 section 2.2 gives it in milliseconds)."""
    ttl = subject.get("ttl")
    if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0:
        return ttl / 1000
    return DEFAULT_STATUS_TTL_SECONDS


def status_list_usable_until(claims: Mapping[str, Any], max_staleness: float) -> float | None:
    """The instant (POSIX seconds) after which a status list credential is stale: ``iat + ttl + max_staleness``;
    None when it carries no usable ``iat`` (its age is unknown, so it is stale at once)."""
    issued = claims.get("iat", claims.get("nbf"))
    vc = claims.get("vc")
    subject = vc.get("credentialSubject") if isinstance(vc, Mapping) else None
    if isinstance(issued, bool) or not isinstance(issued, int | float) or not isinstance(subject, Mapping):
        return None
    return float(issued) + status_ttl_seconds(subject) + max_staleness


class StatusListSource(Protocol):
    """Returns the status list credential (compact JWT) published at ``url``, or raises ``LookupError``."""

    def fetch(self, url: str) -> str: ...


class StaticStatusLists:
    """Status list credentials held in memory, keyed by URL."""

    def __init__(self, lists: Mapping[str, str] | None = None) -> None:
        self._lists = dict(lists or {})

    def put(self, url: str, credential_jwt: str) -> None:
        self._lists[url] = credential_jwt

    def fetch(self, url: str) -> str:
        try:
            return self._lists[url]
        except KeyError:
            raise LookupError(f"no status list for {url}") from None


def status_list_filename(url: str) -> str:
    """The file name under which a list is stored for offline use (the URL, percent-encoded)."""
    return quote(url, safe="") + ".jwt"


class DirectoryStatusLists:
    """Status list credentials saved as files in one directory (see ``status_list_filename``).

    Reading a local file is the one I/O the pure core allows itself: it is what "fully offline" means.
    """

    def __init__(self, directory: str | Path) -> None:
        self._dir = Path(directory)

    def fetch(self, url: str) -> str:
        path = self._dir / status_list_filename(url)
        try:
            return path.read_text(encoding="ascii").strip()
        except OSError as exc:
            raise LookupError(f"no status list file for {url}") from exc


@dataclass(frozen=True, slots=True)
class CachedList:
    bits: StatusList
    purpose: str
    expires_at: float


class StatusCache:
    """Verified lists by URL until their ttl expires."""

    def __init__(self) -> None:
        self.lists: dict[str, CachedList] = {}  # by URL; read directly by the verifier's hot path, as get does

    def get(self, url: str, now: float) -> CachedList | None:
        """The list at ``url`` while it is still fresh at ``now`` (POSIX seconds)."""
        cached = self.lists.get(url)
        if cached is None or cached.expires_at <= now:
            return None
        return cached

    def put(self, url: str, entry: CachedList) -> None:
        self.lists[url] = entry

    def clear(self) -> None:
        self.lists.clear()
