"""OAuth clients of interactive apps, as the authorization and token endpoints see them (issue 14 item 3).

A client is one of: registered through RFC 7591 dynamic client registration (``source="dcr"``), an https URL
naming its own Client ID Metadata Document (``"cimd"``; draft-ietf-oauth-client-id-metadata-document, MCP
authorization 2025-11-25), or an agent authenticating as a confidential client with its API key or did:key
(``"agent"``). ``ClientDirectory.resolve`` gives the one record for each; ``redirect_uri_matches`` is the one
redirect-URI comparison (RFC 9700 section 4.1.3: exact matching; RFC 8252 section 7.3: any port on a loopback IP).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from agentauth.storage.records import RegisteredClient

# RFC 8252 section 7.3: loopback *IP literals* get port flexibility; section 8.3: "localhost" is NOT RECOMMENDED
# and, being a name that may resolve elsewhere, is matched exactly like any other redirect URI.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]"})


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    client_name: str | None
    logo_uri: str | None
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str  # "none" | "client_secret_basic" | "client_secret_post" | "private_key_jwt"
    grant_types: tuple[str, ...]
    scope: str | None
    source: str  # "dcr" | "cimd" | "agent"
    # RFC 9449 section 5.2 client metadata: every token request of this client must carry a DPoP proof.
    dpop_bound_access_tokens: bool = False

    @property
    def is_public(self) -> bool:
        """A client without credentials (``none``): PKCE is its only proof of possession (OAuth 2.1 7.5.1)."""
        return self.token_endpoint_auth_method == "none"


class ClientDirectory(Protocol):
    async def resolve(self, client_id: str) -> OAuthClient | None:
        """The client ``client_id`` names, or None when it names none. A URL ``client_id`` whose metadata
        document could not be fetched or is invalid raises ``errors.InvalidClientMetadataDocument`` (its
        ``description`` says why, for the user; the details go to the log)."""
        ...

    async def authenticate_secret(self, client_id: str, secret: str) -> OAuthClient | None:
        """The registered confidential client ``client_id`` if ``secret`` is its secret, else None."""
        ...

    def names_registered(self, client_id: str) -> bool:
        """Whether ``client_id`` can only name an RFC 7591 registration (stored, never changed once made): then a
        use case may read the registration in its own statement and pass it to ``registered_client``."""
        ...

    def registered_client(self, record: RegisteredClient | None, secret: str | None) -> OAuthClient | None:
        """The client of a registration read by the caller: as ``resolve`` gives it without ``secret``, as
        ``authenticate_secret`` does with one (None when it is not the registration's secret, or ``record`` is
        None - the same work either way)."""
        ...


def _loopback_parts(uri: str) -> tuple[str, str, str, str] | None:
    """(scheme, host, path, query) of an ``http`` redirect URI on a loopback IP literal, else None."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme != "http" or parts.fragment or "@" in parts.netloc:
        return None
    host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
    if host not in LOOPBACK_HOSTS:
        return None
    return parts.scheme, host, parts.path, parts.query


def redirect_uri_matches(registered: tuple[str, ...], requested: str) -> bool:
    """Whether ``requested`` is one of the ``registered`` redirect URIs: exact string comparison (no case folding,
    no trailing-slash or percent-encoding normalisation); for an ``http`` URI on a loopback IP (127.0.0.1, [::1])
    the port may differ (RFC 8252 section 7.3: "MUST allow any port to be specified at the time of the request
    for loopback IP redirect URIs"). A URI with a fragment never matches (RFC 6749 section 3.1.2)."""
    if not isinstance(requested, str) or not requested or "#" in requested:
        return False
    # No URI holds a space or a control character (RFC 3986 section 2); urlsplit would silently strip leading
    # ones and every tab/CR/LF, turning " http://127.0.0.1:1/cb" or "http://127.0.0.1:1/c\nb" into a loopback match.
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in requested):
        return False
    if requested in registered:
        return True
    wanted = _loopback_parts(requested)
    if wanted is None:
        return False
    return any(_loopback_parts(uri) == wanted for uri in registered)
