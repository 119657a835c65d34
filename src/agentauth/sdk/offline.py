"""Fully offline verification: a JWKS file and a directory of status-list files, no network at all.

For air-gapped verifiers: ``agentauth jwks export`` writes the JWKS file (with the issuer URL in an ``issuer``
member - RFC 7517 section 5 lets a JWK Set carry members its readers ignore) and ``agentauth status-list fetch``
fills the directory, using ``agentauth.vc.status_list_filename`` names. Only the pure core runs here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from agentauth.did import did_web_to_url, url_to_did_web
from agentauth.did.web import DidWebError
from agentauth.vc import (
    DEFAULT_MAX_STATUS_STALENESS_SECONDS,
    DirectoryStatusLists,
    NonceRegistry,
    StatusListSource,
    VerificationError,
    Verifier,
)
from agentauth.vc.jws import parse_compact


class JwksFileError(ValueError):
    """A JWKS file is missing, unreadable or not a JWK Set."""


def load_jwks(path: str | Path) -> dict[str, Any]:
    """Read and minimally check a JWK Set file (RFC 7517 section 5: an object with a ``keys`` array)."""
    try:
        document = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise JwksFileError(f"cannot read JWKS file {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError:
        raise JwksFileError(f"JWKS file {path} is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksFileError(f"JWKS file {path} has no 'keys' array")
    return document


def jwks_issuer_did(jwks: Mapping[str, Any]) -> str | None:
    """The issuer DID the keys belong to (every AgentAuth ``kid`` is ``<issuer-did>#<thumbprint>``), or None
    when the set names no DID or several."""
    dids = {
        key["kid"].split("#", 1)[0]
        for key in jwks.get("keys", [])
        if isinstance(key, Mapping) and isinstance(key.get("kid"), str) and "#" in key["kid"]
    }
    return dids.pop() if len(dids) == 1 else None


def check_issuer_matches_keys(issuer_url: str, jwks: Mapping[str, Any]) -> None:
    """The issuer URL must be the one whose did:web the keys are bound to - a guard against pairing one
    issuer's JWKS with another issuer's URL."""
    did = jwks_issuer_did(jwks)
    try:
        expected = url_to_did_web(issuer_url)
    except DidWebError as exc:
        raise JwksFileError(str(exc)) from None
    if did is not None and did != expected:
        raise JwksFileError(f"the JWKS keys belong to {did}, not to {issuer_url} ({expected})")


def issuer_url_for(jwks: Mapping[str, Any], token: str) -> str:
    """The issuer URL to verify ``token`` against with ``jwks``: the JWK Set's ``issuer`` member, else the URL
    whose did:web the keys are bound to.

    A plain JWKS names no URL, but its kids do name a did:web. An access token's ``iss`` (a URL) is used when it
    maps to that very DID - the file, not the token, stays the trust anchor; otherwise the URL is derived from the
    DID (an access token claiming another issuer then fails with ``invalid_issuer``).
    """
    declared = jwks.get("issuer")
    if isinstance(declared, str) and declared:
        return declared
    did = jwks_issuer_did(jwks)
    if did is None or not did.startswith("did:web:"):
        raise JwksFileError("the JWKS names no issuer, and its kids name no did:web issuer: pass the issuer URL")
    try:
        iss = parse_compact(token).payload.get("iss")
        if isinstance(iss, str) and iss.startswith(("http://", "https://")) and url_to_did_web(iss) == did:
            return iss
    except (VerificationError, DidWebError):
        pass
    try:
        return did_web_to_url(did).removesuffix("/did.json").removesuffix("/.well-known")
    except DidWebError as exc:
        raise JwksFileError(str(exc)) from None


def offline_verifier(
    jwks: str | Path | Mapping[str, Any],
    *,
    resource: str | None = None,
    any_audience: bool = False,
    issuer_url: str | None = None,
    status_dir: str | Path | None = None,
    status_source: StatusListSource | None = None,
    check_status: bool = True,
    leeway_seconds: int = 30,
    nonces: NonceRegistry | None = None,
    max_status_staleness: float | None = DEFAULT_MAX_STATUS_STALENESS_SECONDS,
) -> Verifier:
    """A ``Verifier`` trusting the keys in ``jwks`` (a JWK Set or the path of one) and reading status lists
    from ``status_dir`` (or ``status_source``). ``issuer_url`` defaults to the JWK Set's ``issuer`` member.

    Without a status directory, credentials carrying a status entry fail with ``status_unavailable`` unless
    ``check_status=False`` is chosen explicitly. A saved list is accepted only until ``iat + ttl +
    max_status_staleness`` (default 60 s; ``status_stale`` after that): refresh the directory at least once per
    ``ttl`` (``agentauth mirror``), or raise ``max_status_staleness`` knowingly - revocations older than the copy
    stay unseen for that long.

    ``resource``: your server's resource identifier (RFC 8707), which every access token's ``aud`` must name
    (``invalid_audience``; ``audience_not_configured`` when unset and a call passes no ``audience``);
    ``any_audience=True`` skips the check, for inspection tools only.
    """
    document = load_jwks(jwks) if isinstance(jwks, str | Path) else dict(jwks)
    url = issuer_url or document.get("issuer")
    if not isinstance(url, str) or not url:
        raise JwksFileError("the JWKS does not name its issuer (no 'issuer' member): pass issuer_url")
    check_issuer_matches_keys(url, document)
    if status_dir is not None and status_source is not None:
        raise ValueError("give status_dir or status_source, not both")
    source = DirectoryStatusLists(status_dir) if status_dir is not None else status_source
    return Verifier(
        issuer_url=url,
        jwks=document,
        status_source=source,
        check_status=check_status,
        leeway_seconds=leeway_seconds,
        nonces=nonces,
        max_status_staleness=max_status_staleness,
        resource=resource,
        require_audience=not any_audience,
    )
