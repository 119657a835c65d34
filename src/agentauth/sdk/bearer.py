"""Bearer-token authentication for resource servers (RFC 6750), framework-free.

The FastAPI dependency, the ASGI middleware and the MCP token verifier all come through ``authenticate``, so
they answer alike:

* no token: 401 and ``WWW-Authenticate: Bearer realm="..."`` - section 3.1: "If the request lacks any
  authentication information ... the resource server SHOULD NOT include an error code";
* a token that does not verify (bad signature, expired, revoked, ...): 401 ``error="invalid_token"``, with one
  opaque description - the precise reason code goes to the log, not to the caller (STYLE.md, Errors);
* a valid token without a required scope: 403 ``error="insufficient_scope"`` and the ``scope`` attribute
  naming what is needed (section 3.1);
* the issuer's keys or status list cannot be fetched: 503 ``temporarily_unavailable`` with ``Retry-After`` -
  the token may well be valid, so this is not the caller's fault.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import orjson

from agentauth.sdk.cache import UNAVAILABLE_CODES
from agentauth.sdk.online import OnlineVerifier
from agentauth.vc import VerificationError, VerifiedToken
from agentauth.vc.errors import AUDIENCE_NOT_CONFIGURED

log = logging.getLogger("agentauth.sdk")

DEFAULT_REALM = "agentauth"
RETRY_AFTER_SECONDS = 5
INVALID_TOKEN_DESCRIPTION = "the access token is invalid, expired or revoked"


@runtime_checkable
class TokenAuthority(Protocol):
    """Anything that verifies an access token: ``Verifier`` (offline), ``OnlineVerifier``, ``AsyncOnlineVerifier``
    (whose method is a coroutine)."""

    def verify_access_token(self, token: str, *, audience: str | None = None) -> Any: ...


async def verify_token(authority: TokenAuthority, token: str, audience: str | None = None) -> VerifiedToken:
    """Verify with any authority without blocking the event loop on network I/O."""
    if isinstance(authority, OnlineVerifier):
        # Its fetches are blocking: keep them off the event loop.
        return await asyncio.to_thread(authority.verify_access_token, token, audience=audience)
    result = authority.verify_access_token(token, audience=audience)
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, VerifiedToken):
        raise TypeError(f"{type(authority).__name__}.verify_access_token returned {type(result).__name__}")
    return result


def require_audience_configured(authority: TokenAuthority, audience: str | None) -> None:
    """Fail where a resource server is set up, not on its first request: a verifier that knows no resource
    identifier and no ``audience`` given cannot check ``aud`` (RFC 9068 section 4), and would refuse every
    token (``audience_not_configured``)."""
    if audience is None and getattr(authority, "resource", "") is None and getattr(authority, "require_audience", True):
        raise ValueError(
            "configure the verifier with resource=<this server's resource identifier> (or pass audience=...): "
            "tokens are accepted only when their aud names this server"
        )


def _quote(value: str) -> str:
    # RFC 6750 section 3: attribute values are quoted-strings; keep them free of quotes and backslashes.
    return value.replace("\\", "").replace('"', "'")


class BearerError(Exception):
    """A refusal to answer with: HTTP status, RFC 6749/6750 ``error`` code, description, and for 403 the scopes."""

    def __init__(self, status: int, error: str | None, description: str, scopes: tuple[str, ...] = ()) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.scopes = scopes

    def __str__(self) -> str:
        return f"{self.status} {self.error or 'unauthorized'}: {self.description}"

    def www_authenticate(self, realm: str = DEFAULT_REALM, resource_metadata: str | None = None) -> str | None:
        """The ``WWW-Authenticate`` value (RFC 6750 section 3; RFC 9728 section 5.1 ``resource_metadata``)."""
        if self.status not in (401, 403):
            return None
        parts = [f'realm="{_quote(realm)}"']
        if self.error is not None:
            parts += [f'error="{self.error}"', f'error_description="{_quote(self.description)}"']
        if self.scopes:
            parts.append(f'scope="{" ".join(self.scopes)}"')
        if resource_metadata:
            parts.append(f'resource_metadata="{_quote(resource_metadata)}"')
        return "Bearer " + ", ".join(parts)

    def headers(self, realm: str = DEFAULT_REALM, resource_metadata: str | None = None) -> dict[str, str]:
        headers = {"Cache-Control": "no-store"}
        challenge = self.www_authenticate(realm, resource_metadata)
        if challenge is not None:
            headers["WWW-Authenticate"] = challenge
        if self.status == 503:
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return headers

    def body(self) -> dict[str, str]:
        """RFC 6749 section 5.2 shape: ``error`` and ``error_description`` at the top level."""
        return {"error": self.error or "invalid_token", "error_description": self.description}

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def missing_token() -> BearerError:
    return BearerError(401, None, "a bearer access token is required")


def check_scopes(verified: VerifiedToken, required: Iterable[str]) -> None:
    """403 ``insufficient_scope`` unless the token holds every required scope."""
    needed = tuple(required)
    missing = [s for s in needed if s not in verified.scopes]
    if missing:
        raise BearerError(403, "insufficient_scope", f"this request needs the scope {' '.join(needed)}", needed)


async def authenticate(
    authority: TokenAuthority,
    authorization: str | None,
    required_scopes: Iterable[str] = (),
    *,
    audience: str | None = None,
) -> VerifiedToken:
    """The verified token of an ``Authorization`` header value, or ``BearerError`` saying how to refuse."""
    token = bearer_token(authorization)
    if token is None:
        raise missing_token()
    try:
        verified = await verify_token(authority, token, audience)
    except VerificationError as exc:
        log.info("bearer token refused: %s (%s)", exc.code, exc.detail)
        if exc.code == AUDIENCE_NOT_CONFIGURED:
            raise BearerError(500, "server_error", "the resource server is misconfigured (no resource)") from None
        if exc.code in UNAVAILABLE_CODES:
            raise BearerError(503, "temporarily_unavailable", "cannot check the token right now; retry") from None
        raise BearerError(401, "invalid_token", INVALID_TOKEN_DESCRIPTION) from None
    check_scopes(verified, required_scopes)
    return verified
