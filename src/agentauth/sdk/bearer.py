"""Access-token authentication for resource servers (RFC 6750 Bearer, RFC 9449 DPoP), framework-free.

The FastAPI dependency, the ASGI middleware and the MCP middleware all come through ``authenticate``, so
they answer alike:

* no token: 401 and ``WWW-Authenticate: Bearer realm="..."`` - RFC 6750 section 3.1: "If the request lacks any
  authentication information ... the resource server SHOULD NOT include an error code"; a server that accepts
  DPoP adds a ``DPoP realm="...", algs="..."`` challenge (RFC 9449 section 7.1; only that one with
  ``require_dpop``);
* a token that does not verify (bad signature, expired, revoked, bound to another key, a DPoP-bound token sent
  as ``Bearer``, ...): 401 ``error="invalid_token"``, with one opaque description - the precise reason code goes
  to the log, not to the caller (STYLE.md, Errors);
* ``Authorization: DPoP`` with no proof, more than one ``DPoP`` header, or a proof that fails its checks (RFC 9449
  section 4.3: signature, ``htm``, ``htu``, ``iat``, ``ath``, replayed ``jti``): 401 ``DPoP error=
  "invalid_dpop_proof"``; a proof without the server's current nonce: 401 ``DPoP error="use_dpop_nonce"`` with a
  ``DPoP-Nonce`` header (section 8);
* a valid token without a required scope: 403 ``error="insufficient_scope"`` and the ``scope`` attribute
  naming what is needed (section 3.1), in the challenge of the scheme the token came with;
* the issuer's keys or status list cannot be fetched: 503 ``temporarily_unavailable`` with ``Retry-After`` -
  the token may well be valid, so this is not the caller's fault.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import orjson

from agentauth.sdk.cache import UNAVAILABLE_CODES
from agentauth.sdk.dpop import ALGS, DPoPSettings
from agentauth.sdk.online import OnlineVerifier
from agentauth.vc import VerificationError, VerifiedToken
from agentauth.vc.dpop import INVALID_DPOP_PROOF, USE_DPOP_NONCE, DPoPRequest
from agentauth.vc.errors import AUDIENCE_NOT_CONFIGURED

log = logging.getLogger("agentauth.sdk")

DEFAULT_REALM = "agentauth"
RETRY_AFTER_SECONDS = 5
INVALID_TOKEN_DESCRIPTION = "the access token is invalid, expired or revoked"
INVALID_PROOF_DESCRIPTION = "the request needs exactly one valid DPoP proof for this request and token"
USE_NONCE_DESCRIPTION = "the DPoP proof must carry the nonce of the DPoP-Nonce header"
DPOP_ONLY_DESCRIPTION = "this resource accepts DPoP-bound access tokens only"
AGENT_KEY_DESCRIPTION = "this resource accepts only access tokens bound to the agent's own did:key"


@runtime_checkable
class TokenAuthority(Protocol):
    """Anything that verifies an access token: ``Verifier`` (offline), ``OnlineVerifier``, ``AsyncOnlineVerifier``
    (whose method is a coroutine). DPoP-bound tokens need one that takes ``dpop=`` too (all three do)."""

    def verify_access_token(self, token: str, *, audience: str | None = None) -> Any: ...


async def verify_token(
    authority: TokenAuthority, token: str, audience: str | None = None, dpop: DPoPRequest | None = None
) -> VerifiedToken:
    """Verify with any authority without blocking the event loop on network I/O. ``dpop`` (the request's proof)
    is passed only when there is one, so an authority that knows nothing of DPoP still verifies bearer tokens."""
    extra: dict[str, Any] = {} if dpop is None else {"dpop": dpop}
    if isinstance(authority, OnlineVerifier):
        # Its fetches are blocking: keep them off the event loop.
        return await asyncio.to_thread(authority.verify_access_token, token, audience=audience, **extra)
    result = authority.verify_access_token(token, audience=audience, **extra)
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


BEARER: Final = "Bearer"
DPOP: Final = "DPoP"


@dataclass(frozen=True, slots=True)
class Challenges:
    """The ``WWW-Authenticate`` challenges a server offers (``offered``, in order) and the scheme a refusal is
    about (``about``: it carries the ``error``). A refused Bearer request also gets a bare challenge of each other
    scheme (DPoP, with its ``algs``); a refused DPoP request only the DPoP one."""

    offered: tuple[str, ...] = (BEARER,)
    about: str = BEARER

    @classmethod
    def of(cls, settings: DPoPSettings | None, about: str | None = None) -> Challenges:
        offered = (BEARER,) if settings is None else (DPOP,) if settings.dpop_only else (BEARER, DPOP)
        return cls(offered, about if about is not None and about in offered else offered[0])


BEARER_ONLY: Final = Challenges()


class BearerError(Exception):
    """A refusal to answer with: HTTP status, RFC 6749/6750/9449 ``error`` code, description, for 403 the scopes,
    the challenges to offer and, for ``use_dpop_nonce``, the nonce to send in ``DPoP-Nonce``."""

    def __init__(
        self,
        status: int,
        error: str | None,
        description: str,
        scopes: tuple[str, ...] = (),
        *,
        challenges: Challenges = BEARER_ONLY,
        nonce: str | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.scopes = scopes
        self.challenges = challenges
        self.nonce = nonce

    def __str__(self) -> str:
        return f"{self.status} {self.error or 'unauthorized'}: {self.description}"

    def www_authenticate(self, realm: str = DEFAULT_REALM, resource_metadata: str | None = None) -> str | None:
        """The ``WWW-Authenticate`` value (RFC 6750 section 3; RFC 9449 section 7.1 ``algs``; RFC 9728 section 5.1
        ``resource_metadata``). Several challenges are comma-separated in one value (RFC 9110 section 11.6.1)."""
        if self.status not in (401, 403):
            return None
        challenges = []
        offered = self.challenges.offered
        if self.challenges.about == DPOP and self.error is not None:
            offered = (DPOP,)  # a refused DPoP request: its client holds a bound token, Bearer is of no use to it
        for scheme in offered:
            parts = [f'realm="{_quote(realm)}"']
            if scheme == self.challenges.about and self.error is not None:
                parts += [f'error="{self.error}"', f'error_description="{_quote(self.description)}"']
                if self.scopes:
                    parts.append(f'scope="{" ".join(self.scopes)}"')
            if scheme == DPOP:
                parts.append(f'algs="{ALGS}"')
            if resource_metadata:
                parts.append(f'resource_metadata="{_quote(resource_metadata)}"')
            challenges.append(f"{scheme} " + ", ".join(parts))
        return ", ".join(challenges)

    def headers(self, realm: str = DEFAULT_REALM, resource_metadata: str | None = None) -> dict[str, str]:
        headers = {"Cache-Control": "no-store"}
        challenge = self.www_authenticate(realm, resource_metadata)
        if challenge is not None:
            headers["WWW-Authenticate"] = challenge
        if self.nonce is not None:
            headers["DPoP-Nonce"] = self.nonce
        if self.status == 503:
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return headers

    def body(self) -> dict[str, str]:
        """RFC 6749 section 5.2 shape: ``error`` and ``error_description`` at the top level."""
        return {"error": self.error or "invalid_token", "error_description": self.description}

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body())


def credentials(authorization: str | None) -> tuple[str, str] | None:
    """(scheme, token) of an ``Authorization: <scheme> <token>`` header, the scheme as ``Bearer`` or ``DPoP``
    (matched case-insensitively, RFC 9110 section 11.1), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    named = {"bearer": BEARER, "dpop": DPOP}.get(scheme.lower())
    if named is None or not token or " " in token:
        return None
    return named, token


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    found = credentials(authorization)
    return found[1] if found is not None and found[0] == BEARER else None


def missing_token(challenges: Challenges = BEARER_ONLY) -> BearerError:
    return BearerError(401, None, "an access token is required", challenges=challenges)


def check_scopes(verified: VerifiedToken, required: Iterable[str], challenges: Challenges = BEARER_ONLY) -> None:
    """403 ``insufficient_scope`` unless the token holds every required scope."""
    needed = tuple(required)
    missing = [s for s in needed if s not in verified.scopes]
    if missing:
        raise BearerError(
            403, "insufficient_scope", f"this request needs the scope {' '.join(needed)}", needed, challenges=challenges
        )


async def authenticate(
    authority: TokenAuthority,
    authorization: str | None,
    required_scopes: Iterable[str] = (),
    *,
    audience: str | None = None,
    dpop: DPoPSettings | None = None,
    dpop_proofs: Sequence[str] = (),
    method: str | None = None,
    uri: str | None = None,
) -> VerifiedToken:
    """The verified token of an ``Authorization`` header value, or ``BearerError`` saying how to refuse.

    With ``dpop`` (the server's settings) the server also accepts ``Authorization: DPoP <token>``: then
    ``dpop_proofs`` are the values of the request's ``DPoP`` headers (every one: section 4.3 refuses more than
    one), ``method`` and ``uri`` the request's method and URI as its client addressed it (``DPoPSettings.
    request_uri``). Without ``dpop`` only bearer tokens are accepted, and a DPoP-bound one never is."""
    found = credentials(authorization)
    accepted = Challenges.of(dpop)
    if found is None or found[0] not in accepted.offered:
        if found is not None:
            log.info("access token refused: the %s scheme is not accepted here", found[0])
        if found is not None and found[0] == BEARER:
            raise BearerError(401, "invalid_token", DPOP_ONLY_DESCRIPTION, challenges=accepted)
        raise missing_token(accepted)
    scheme, token = found
    challenges = Challenges.of(dpop, scheme)
    request = None
    if scheme == DPOP:
        assert dpop is not None  # DPoP is offered only with settings
        if len(dpop_proofs) != 1 or method is None or uri is None:
            # RFC 9449 section 4.3 point 1: "There is not more than one DPoP HTTP request header field"; a DPoP
            # scheme without its proof is no proof of possession either.
            log.info("DPoP token refused: %d DPoP headers (exactly one needed)", len(dpop_proofs))
            raise BearerError(401, INVALID_DPOP_PROOF, INVALID_PROOF_DESCRIPTION, challenges=challenges)
        request = DPoPRequest(dpop_proofs[0], method, uri, dpop.replay, dpop.nonces)
    try:
        verified = await verify_token(authority, token, audience, request)
    except VerificationError as exc:
        log.info("%s token refused: %s (%s)", scheme, exc.code, exc.detail)
        if exc.code == AUDIENCE_NOT_CONFIGURED:
            raise BearerError(500, "server_error", "the resource server is misconfigured (no resource)") from None
        if exc.code in UNAVAILABLE_CODES:
            raise BearerError(503, "temporarily_unavailable", "cannot check the token right now; retry") from None
        if exc.code == USE_DPOP_NONCE and dpop is not None:
            # Section 8: "the resource server ... responds with ... a DPoP-Nonce HTTP header with the nonce value".
            nonce = dpop.current_nonce()
            raise BearerError(401, USE_DPOP_NONCE, USE_NONCE_DESCRIPTION, challenges=challenges, nonce=nonce) from None
        if exc.code == INVALID_DPOP_PROOF:
            raise BearerError(401, INVALID_DPOP_PROOF, INVALID_PROOF_DESCRIPTION, challenges=challenges) from None
        raise BearerError(401, "invalid_token", INVALID_TOKEN_DESCRIPTION, challenges=challenges) from None
    if dpop is not None and dpop.require_agent_key and not verified.bound_to_holder_key:
        log.info("DPoP token refused: not bound to its holder's did:key (%s)", verified.holder[:80])
        raise BearerError(401, "invalid_token", AGENT_KEY_DESCRIPTION, challenges=challenges)
    check_scopes(verified, required_scopes, challenges)
    return verified
