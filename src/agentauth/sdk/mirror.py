"""Mirror an issuer's status lists into a directory, for verifiers without network access.

Each list is fetched from the issuer's origin only, verified against the issuer's keys (signature, issuer,
type, and that it is the list published at that URL - Bitstring Status List v1.0 section 3.2), and saved under
``agentauth.vc.status_list_filename`` so ``DirectoryStatusLists`` (``agentauth verify --status-dir``) finds it.
Copy the directory to the air-gapped machine as often as the lists' ``ttl`` asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agentauth.sdk.http import FetchError, check_fetchable, parse_status_list
from agentauth.sdk.online import OnlineVerifier
from agentauth.vc import (
    STATUS_LIST_CREDENTIAL,
    StatusList,
    StatusListError,
    VerificationError,
    status_entries,
    status_list_filename,
)
from agentauth.vc.jws import parse_compact

STATUS_LISTS_PATH = "/api/v1/status-lists/"
# A list's twin of purpose ``suspension`` (the same indexes): the list's URL followed by this.
SUSPENSION_SUFFIX = "/suspension"
MAX_LISTS = 10_000


@dataclass(frozen=True, slots=True)
class SavedList:
    url: str
    file: Path
    size: int
    set_bits: int


def list_url(issuer_url: str, list_id: int) -> str:
    return f"{issuer_url.rstrip('/')}{STATUS_LISTS_PATH}{list_id}"


def status_list_urls(compact: str) -> list[str]:
    """Every status-list URL a token, credential or presentation refers to - its own and those of the credentials
    it embeds (delegation chain, presented credentials). Unverified: it only says what to fetch."""
    payload = parse_compact(compact).payload
    found: list[str] = []
    vc = payload.get("vc")
    for entry in status_entries(vc):
        if isinstance(entry.get("statusListCredential"), str):
            found.append(entry["statusListCredential"])
    vp = payload.get("vp")
    inner = list(payload.get("delegation_chain") or [])
    inner += list(vp.get("verifiableCredential") or []) if isinstance(vp, dict) else []
    for item in inner:
        if isinstance(item, str):
            found += status_list_urls(item)
    return list(dict.fromkeys(found))


def save_status_list(verifier: OnlineVerifier, url: str, directory: Path) -> SavedList | None:
    """Fetch, verify and save one list; None when the issuer has no list at ``url`` (404).

    Raises ``FetchError`` (unreachable, not the issuer's, not a JWT) or ``VerificationError`` (does not verify).
    """
    check_fetchable(url, verifier.issuer_url)
    response = verifier.http.get(url, headers={"accept": "application/vc+jwt"})
    if response.status_code == 404:
        return None
    jwt = parse_status_list(response.status_code, response.content)
    claims = verifier.verify_credential(jwt, expected_type=STATUS_LIST_CREDENTIAL, now=datetime.now(UTC))
    if claims["vc"].get("id", claims.get("jti")) != url:
        raise FetchError(f"{url} serves the list {claims['vc'].get('id')!r}, not its own")
    try:
        bits = StatusList.decode(claims["vc"]["credentialSubject"].get("encodedList", ""))
    except StatusListError as exc:
        raise VerificationError("malformed", f"status list {url}: {exc}") from None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / status_list_filename(url)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(jwt + "\n", encoding="ascii")
    temporary.replace(path)  # a verifier reading the directory never sees half a file
    return SavedList(url, path, bits.size, len(bits.set_indexes()))


def mirror_status_lists(verifier: OnlineVerifier, directory: Path, urls: Iterable[str] = ()) -> Iterator[SavedList]:
    """Save the lists at ``urls`` (each must exist), or - given none - every list the issuer has published:
    ids 1, 2, ... until the first 404, each with its suspension twin (when the issuer publishes one)."""
    wanted = list(dict.fromkeys(urls))
    if wanted:
        for url in wanted:
            saved = save_status_list(verifier, url, directory)
            if saved is None:
                raise FetchError(f"{url}: no such status list (HTTP 404)")
            yield saved
        return
    for list_id in range(1, MAX_LISTS + 1):
        url = list_url(verifier.issuer_url, list_id)
        saved = save_status_list(verifier, url, directory)
        if saved is None:
            return
        yield saved
        twin = save_status_list(verifier, url + SUSPENSION_SUFFIX, directory)
        if twin is not None:
            yield twin
