"""Client metadata (RFC 7591 section 2) checked once, for registrations and for Client ID Metadata Documents.

What a client may say about itself: redirect URIs (https; http only on loopback, RFC 8252 sections 7.3 and 8.3;
private-use schemes of native apps, section 7.1; never a fragment, RFC 6749 section 3.1.2), the token endpoint
authentication method, grant and response types that agree with each other (RFC 7591 section 2.1), and display
metadata. Unknown members are ignored, as section 2 requires ("MUST ignore any client metadata ... that it does
not understand"). A failure is ``InvalidRedirectUri`` or ``InvalidClientMetadata`` (section 3.2.2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agentauth.errors import InvalidClientMetadata, InvalidRedirectUri

MAX_REDIRECT_URIS = 10
MAX_URI_CHARS = 2000
MAX_TEXT_CHARS = 200
MAX_SCOPE_CHARS = 1000
MAX_CONTACTS = 5

AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})
GRANT_TYPES = ("authorization_code", "refresh_token")
RESPONSE_TYPES = ("code",)
APPLICATION_TYPES = ("web", "native")
URI_MEMBERS = ("client_uri", "logo_uri", "tos_uri", "policy_uri")
TEXT_MEMBERS = ("client_name", "software_id", "software_version")
# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 3986 section 3.1 scheme; RFC 8252 section 7.1: a private-use scheme is a reverse domain name (has a '.').
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_LOOPBACK = frozenset({"127.0.0.1", "[::1]", "localhost"})


@dataclass(frozen=True)
class ClientMetadata:
    """Validated metadata: the fields the service uses, and ``document`` - every recognised member, normalised,
    as the registration response echoes it (RFC 7591 section 3.2.1)."""

    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    client_name: str | None
    logo_uri: str | None
    scope: str | None
    document: dict[str, Any]
    dpop_bound_access_tokens: bool = False


def check_redirect_uri(uri: object) -> str:
    if not isinstance(uri, str) or not uri:
        raise InvalidRedirectUri("each redirect URI must be a non-empty string")
    if len(uri) > MAX_URI_CHARS or not uri.isascii() or not uri.isprintable() or " " in uri:
        raise InvalidRedirectUri(f"redirect URI must be printable ASCII of at most {MAX_URI_CHARS} characters")
    if "#" in uri:
        raise InvalidRedirectUri("redirect URI must not contain a fragment (RFC 6749 section 3.1.2)")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise InvalidRedirectUri("redirect URI is not a valid absolute URI") from None
    scheme = parts.scheme
    if not scheme or not _SCHEME.fullmatch(scheme):
        raise InvalidRedirectUri("redirect URI must be an absolute URI with a scheme")
    if scheme == "https":
        if not parts.hostname or "@" in parts.netloc:
            raise InvalidRedirectUri("https redirect URI needs a host and no user information")
        return uri
    if scheme == "http":
        host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
        if host not in _LOOPBACK or "@" in parts.netloc:
            raise InvalidRedirectUri(
                "http redirect URIs are allowed only on loopback (127.0.0.1, [::1], localhost; RFC 8252 "
                "section 7.3); use https"
            )
        return uri
    if "." not in scheme:
        # javascript:, data:, file:, vbscript: ... - RFC 8252 section 7.1 names private-use schemes by a domain.
        raise InvalidRedirectUri(
            f"scheme {scheme!r} is not allowed: use https, http on loopback, or a private-use scheme in reverse "
            "domain form (RFC 8252 section 7.1, e.g. com.example.app:/callback)"
        )
    return uri


def _string_list(body: Mapping[str, Any], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidClientMetadata(f"{name} must be an array of strings")
    return tuple(dict.fromkeys(value))


def _text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT_CHARS or not value.isprintable():
        raise InvalidClientMetadata(f"{name} must be printable text of 1 to {MAX_TEXT_CHARS} characters")
    return value


def _https_uri(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_URI_CHARS or not value.isascii() or not value.isprintable():
        raise InvalidClientMetadata(f"{name} must be an https URL of at most {MAX_URI_CHARS} characters")
    try:
        parts = urlsplit(value)
    except ValueError:  # "https://[oops": an unclosed IPv6 bracket
        raise InvalidClientMetadata(f"{name} must be an https URL") from None
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc or " " in value:
        raise InvalidClientMetadata(f"{name} must be an https URL")
    return value


def _scope(body: Mapping[str, Any]) -> str | None:
    value = body.get("scope")
    if value is None or value == "":  # an empty scope names none: as if absent (clients derive it from a resource's
        return None  # RFC 9728 scopes_supported, which may be empty)
    if not isinstance(value, str) or len(value) > MAX_SCOPE_CHARS:
        raise InvalidClientMetadata(f"scope must be a space-separated string of at most {MAX_SCOPE_CHARS} chars")
    tokens = value.split(" ")
    if not all(_SCOPE_TOKEN.fullmatch(t) for t in tokens):
        raise InvalidClientMetadata("scope must be scope tokens separated by single spaces (RFC 6749 section 3.3)")
    return " ".join(dict.fromkeys(tokens))


def parse_client_metadata(body: Mapping[str, Any], *, auth_methods: tuple[str, ...] = AUTH_METHODS) -> ClientMetadata:
    """Validate the metadata ``body`` (a JSON object) for a client authenticating with one of ``auth_methods``."""
    method = body.get("token_endpoint_auth_method", "client_secret_basic")  # RFC 7591 section 2: the default
    if method not in auth_methods:
        raise InvalidClientMetadata(
            f"token_endpoint_auth_method must be one of {', '.join(auth_methods)}", debug=f"got {method!r}"
        )
    grant_types = _string_list(body, "grant_types", ("authorization_code",))
    response_types = _string_list(body, "response_types", ("code",))
    unknown = [g for g in grant_types if g not in GRANT_TYPES] + [r for r in response_types if r not in RESPONSE_TYPES]
    if unknown:
        raise InvalidClientMetadata(
            f"unsupported grant or response types {unknown}: supported are grant_types {list(GRANT_TYPES)} and "
            f"response_types {list(RESPONSE_TYPES)}"
        )
    # RFC 7591 section 2.1: authorization_code <-> code; refresh_token alone grants nothing here.
    if ("authorization_code" in grant_types) != ("code" in response_types) or not grant_types or not response_types:
        raise InvalidClientMetadata("grant_types authorization_code and response_types code go together")
    if "authorization_code" not in grant_types:
        raise InvalidClientMetadata("grant_types must include authorization_code")
    raw_uris = body.get("redirect_uris")
    if not isinstance(raw_uris, list) or not raw_uris:
        raise InvalidRedirectUri("redirect_uris is required for the authorization_code grant: a non-empty array")
    if len(raw_uris) > MAX_REDIRECT_URIS:
        raise InvalidRedirectUri(f"at most {MAX_REDIRECT_URIS} redirect_uris")
    redirect_uris = tuple(dict.fromkeys(check_redirect_uri(u) for u in raw_uris))
    application_type = body.get("application_type")
    if application_type is not None and application_type not in APPLICATION_TYPES:
        raise InvalidClientMetadata("application_type must be web or native")
    contacts = body.get("contacts")
    if contacts is not None and (
        not isinstance(contacts, list)
        or len(contacts) > MAX_CONTACTS
        or not all(isinstance(c, str) and 0 < len(c) <= MAX_TEXT_CHARS and c.isprintable() for c in contacts)
    ):
        raise InvalidClientMetadata(f"contacts must be an array of at most {MAX_CONTACTS} short strings")
    document: dict[str, Any] = {
        "redirect_uris": list(redirect_uris),
        "token_endpoint_auth_method": method,
        "grant_types": list(grant_types),
        "response_types": list(response_types),
    }
    for name in TEXT_MEMBERS:
        if (text := _text(body, name)) is not None:
            document[name] = text
    for name in URI_MEMBERS:
        if (uri := _https_uri(body, name)) is not None:
            document[name] = uri
    scope = _scope(body)
    if scope is not None:
        document["scope"] = scope
    if contacts:
        document["contacts"] = list(contacts)
    if application_type is not None:
        document["application_type"] = application_type
    # RFC 9449 section 5.2: "If true, the authorization server MUST reject token requests from this client that do
    # not contain the DPoP header."
    dpop_bound = body.get("dpop_bound_access_tokens", False)
    if not isinstance(dpop_bound, bool):
        raise InvalidClientMetadata("dpop_bound_access_tokens must be a boolean")
    if dpop_bound:
        document["dpop_bound_access_tokens"] = True
    return ClientMetadata(
        redirect_uris=redirect_uris,
        token_endpoint_auth_method=str(method),
        grant_types=grant_types,
        response_types=response_types,
        client_name=document.get("client_name"),
        logo_uri=document.get("logo_uri"),
        scope=scope,
        document=document,
        dpop_bound_access_tokens=dpop_bound,
    )
