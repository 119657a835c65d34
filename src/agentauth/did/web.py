"""did:web <-> URL mapping (W3C CCG "did:web Method Specification", sections 3.2 Create and 3.3 Read).

The host's port colon is percent-encoded (``localhost:8000`` -> ``localhost%3A8000``); path segments become
``:``-separated; a bare host resolves to ``/.well-known/did.json``, a path to ``<path>/did.json``.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit


class DidWebError(ValueError):
    """Not a valid did:web identifier or not a URL that maps to one."""


def url_to_did_web(url: str) -> str:
    """The did:web identifier for a base URL: ``http://localhost:8000`` -> ``did:web:localhost%3A8000``."""
    try:
        parts = urlsplit(url)
        port = parts.port  # urlsplit raises ValueError on a bad IPv6 literal or a non-numeric/out-of-range port
    except ValueError as exc:
        raise DidWebError(f"not a valid URL: {url!r}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DidWebError(f"not an http(s) URL with a host: {url!r}")
    host = parts.hostname.lower()
    # An IPv6 literal's colons would read as path separators: the DID would not resolve back to this host.
    if ":" in host:
        raise DidWebError(f"an IPv6 literal host has no did:web form: {url!r}")
    if port is not None:
        host = f"{host}%3A{port}"
    segments = [quote(unquote(s), safe="") for s in parts.path.split("/") if s]
    if segments and segments[-1] == "did.json":
        segments.pop()
    if segments == [".well-known"]:
        segments = []
    return ":".join(["did:web", host, *segments])


def did_web_to_url(did: str, scheme: str = "https") -> str:
    """The URL of a did:web's DID document. The spec mandates https; ``scheme`` allows http for local use."""
    if not did.startswith("did:web:"):
        raise DidWebError("not a did:web identifier")
    parts = did[len("did:web:") :].split("#", 1)[0].split(":")
    if not parts[0]:
        raise DidWebError("did:web without a host")
    host = unquote(parts[0])
    # A decoded '/', '@', '?', '#' or '\\' would move the URL's authority or push the document path into a
    # query or fragment ("did:web:example.com%3Fq" -> "https://example.com?q/.well-known/did.json").
    if any(c in "/@?#\\" or c.isspace() for c in host):
        raise DidWebError("did:web host contains a forbidden character")
    path = "/".join(unquote(p) for p in parts[1:])
    return f"{scheme}://{host}/{path}/did.json" if path else f"{scheme}://{host}/.well-known/did.json"
