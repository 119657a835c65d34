"""One exception hierarchy for AgentAuth.

Every class carries an error code spelled as the governing RFC spells it (RFC 6749 section 5.2, RFC 6750
section 3.1, RFC 7009, RFC 7662), a public description safe to show a caller, and an optional private
``debug`` text that goes to the log only. Adapters (REST, MCP) map these in one place each.
"""

from __future__ import annotations


def printable(text: str, limit: int = 500) -> str:
    """Text safe for one log line or audit field: control characters (CR, LF, ANSI escapes...) escaped, so a
    value an attacker chose (a jti, a kid) cannot forge log lines (CWE-117)."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class AgentAuthError(Exception):
    """Base of every error AgentAuth raises on purpose."""

    error: str = "server_error"
    status_code: int = 500
    description: str = "The server could not complete the request."

    def __init__(self, description: str | None = None, *, debug: str | None = None) -> None:
        self.description = description if description is not None else type(self).description
        self.debug = printable(debug) if debug is not None else None
        super().__init__(self.description)


class InvalidRequest(AgentAuthError):
    error = "invalid_request"
    status_code = 400
    description = "The request is missing a parameter or is otherwise malformed."


class InvalidClient(AgentAuthError):
    error = "invalid_client"
    status_code = 401
    description = "Client authentication failed."


class InvalidClientMetadataDocument(InvalidClient):
    """draft-ietf-oauth-client-id-metadata-document section "Client Metadata": the ``client_id`` is a URL whose
    Client ID Metadata Document cannot be used as a client - not fetched (refused URL or address, non-200, not
    JSON, too large, too slow) or invalid (``client_id`` not the URL, no valid ``redirect_uris``, a shared
    secret). The authorization endpoint shows ``description`` and does not redirect (RFC 6749 section 4.1.2.1:
    the client and its redirect URIs are unknown); the token endpoint answers ``invalid_client``."""

    description = "The client_id's metadata document cannot be used."

    def __init__(self, client_id: str, reason: str, *, debug: str | None = None) -> None:
        self.client_id = client_id
        self.reason = printable(reason, 300)
        super().__init__(f"The client_id's metadata document cannot be used: {self.reason}.", debug=debug)


class InvalidGrant(AgentAuthError):
    error = "invalid_grant"
    status_code = 400
    description = "The grant is invalid, expired, revoked or was issued to another client."


class UnsupportedGrantType(AgentAuthError):
    error = "unsupported_grant_type"
    status_code = 400
    description = "The grant type is not supported by this server."


class InvalidScope(AgentAuthError):
    error = "invalid_scope"
    status_code = 400
    description = "The requested scope is invalid, unknown or exceeds what was granted."


class InvalidTarget(AgentAuthError):
    """RFC 8707 section 2: "The requested resource is invalid, missing, unknown, or malformed"."""

    error = "invalid_target"
    status_code = 400
    description = "The requested resource is invalid, unknown, malformed or not permitted."


class InvalidToken(AgentAuthError):
    error = "invalid_token"
    status_code = 401
    description = "The access token is invalid."


class InvalidDPoPProof(AgentAuthError):
    """RFC 9449 section 5: the token endpoint's answer (400) to a ``DPoP`` proof that fails a check of section 4.3
    (or to more than one ``DPoP`` header); section 7.1 and the error's IANA registration (section 12.2, "resource
    access error response"): a protected resource's answer too, as 401 with a DPoP challenge."""

    error = "invalid_dpop_proof"
    status_code = 400
    description = "The DPoP proof is invalid."

    def __init__(self, description: str | None = None, *, status_code: int = 400, debug: str | None = None) -> None:
        super().__init__(description, debug=debug)
        self.status_code = status_code


class UseDPoPNonce(AgentAuthError):
    """RFC 9449 section 8: the server requires a nonce in DPoP proofs and the proof lacks the current one; the
    answer carries ``nonce`` in the ``DPoP-Nonce`` header, for the client's retry."""

    error = "use_dpop_nonce"
    status_code = 400
    description = "Authorization server requires nonce in DPoP proof."

    def __init__(
        self, nonce: str, description: str | None = None, *, status_code: int = 400, debug: str | None = None
    ) -> None:
        super().__init__(description, debug=debug)
        self.nonce = nonce
        self.status_code = status_code


class InsufficientScope(AgentAuthError):
    error = "insufficient_scope"
    status_code = 403
    description = "The access token lacks the scope this request needs."


class AccessDenied(AgentAuthError):
    error = "access_denied"
    status_code = 403
    description = "The request was denied."


class NotFound(AgentAuthError):
    error = "not_found"
    status_code = 404
    description = "The resource does not exist."


class Conflict(AgentAuthError):
    error = "conflict"
    status_code = 409
    description = "The request conflicts with the current state."


class RateLimited(AgentAuthError):
    error = "rate_limited"
    status_code = 429
    description = "Too many requests; retry later."

    def __init__(self, retry_after: int, description: str | None = None) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class TemporarilyUnavailable(AgentAuthError):
    error = "temporarily_unavailable"
    status_code = 503
    description = "The service is temporarily unavailable; retry later."


class InvalidRedirectUri(AgentAuthError):
    """RFC 7591 section 3.2.2: "The value of one or more redirection URIs is invalid."."""

    error = "invalid_redirect_uri"
    status_code = 400
    description = "The value of one or more redirection URIs is invalid."


class InvalidClientMetadata(AgentAuthError):
    """RFC 7591 section 3.2.2: "The value of one of the client metadata fields is invalid"."""

    error = "invalid_client_metadata"
    status_code = 400
    description = "The value of one of the client metadata fields is invalid."


class InvalidAuthorizationDetails(AgentAuthError):
    """RFC 9396 section 5: an ``authorization_details`` that is malformed, of an unknown type, or asks for more
    than the client may have."""

    error = "invalid_authorization_details"
    status_code = 400
    description = "The authorization_details parameter is invalid."


class UnknownUserId(AgentAuthError):
    """OpenID CIBA Core section 13: "The OpenID Provider is not able to identify which end-user the Client wishes
    to be authenticated by means of the hint provided in the request (login_hint...)"."""

    error = "unknown_user_id"
    status_code = 400
    description = "The login_hint names no owner of this agent's tenant."


class AuthorizationPending(AgentAuthError):
    """CIBA Core section 11: the owner has not decided yet; poll again after the interval."""

    error = "authorization_pending"
    status_code = 400
    description = "The owner has not approved or denied the request yet."


class SlowDown(AgentAuthError):
    """CIBA Core section 11: polled sooner than the interval; the interval grows by 5 seconds."""

    error = "slow_down"
    status_code = 400
    description = "Polled too fast: wait the interval (now 5 seconds longer) between polls."


class ExpiredToken(AgentAuthError):
    """CIBA Core section 11: the ``auth_req_id`` expired before the owner decided."""

    error = "expired_token"
    status_code = 400
    description = "The approval request expired before the owner decided: make a new one."


class ApprovalDenied(AgentAuthError):
    """CIBA Core section 11: the owner denied the request (``access_denied`` at the token endpoint, status 400)."""

    error = "access_denied"
    status_code = 400
    description = "The owner denied the request."


class ApprovalRequired(AgentAuthError):
    """A ``require_approval`` policy gates this action: a person must approve it first (CIBA), and the call be
    made with the token that approval returns."""

    error = "approval_required"
    status_code = 403
    description = "A person must approve this action first."
