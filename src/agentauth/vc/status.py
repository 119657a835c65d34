"""Status-list sources and the verifier's status cache (Bitstring Status List v1.0 section 3.2, Validate).

A *source* hands the verifier a status list credential (compact JWT) for a URL: from memory, from files
(air-gapped verifiers), or over HTTP (the SDK's online mode, which lives outside the pure core). The cache
keeps each verified, decoded list until its ``ttl`` runs out, so a verifier checks thousands of tokens
against one signature verification and one decompression.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from agentauth.vc.status_list import StatusList


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
        self._lists: dict[str, CachedList] = {}

    def get(self, url: str, now: datetime) -> CachedList | None:
        cached = self._lists.get(url)
        if cached is None or cached.expires_at <= now.timestamp():
            return None
        return cached

    def put(self, url: str, entry: CachedList) -> None:
        self._lists[url] = entry

    def clear(self) -> None:
        self._lists.clear()
