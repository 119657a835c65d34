"""Client authentication with an API key (RFC 6749 section 2.3.1: the key is the ``client_secret``): the one rule,
used by the batched ``client_credentials`` issuer (``hotpath``) and by every other API-key authentication
(``ApiKeyService.authenticate``: introspection and revocation callers, the token-exchange actor).

Every refusal is the same ``invalid_client`` to the caller (no probing which part failed); the log and the audit
trail get the reason (``debug``).
"""

from __future__ import annotations

from datetime import datetime

from agentauth.errors import InvalidClient
from agentauth.issuer.secrets import SecretHasher, looks_like_api_key
from agentauth.storage.records import Agent, ApiKey

REFUSED = "client authentication failed"
# RFC 7523 section 2.2 (``private_key_jwt``, OpenID Connect Core section 9).
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Longer than a jwt-bearer grant's 5 minutes: client libraries sign client assertions for up to an hour (Authlib's
# default); its jti is single use all the same, remembered until exp.
CLIENT_ASSERTION_MAX_LIFETIME = 3600


def check_api_key(raw: object, found: tuple[ApiKey, Agent] | None, hasher: SecretHasher, now: datetime) -> None:
    """Raise ``InvalidClient`` unless ``raw`` is the secret of ``found``'s key (the key looked up by its prefix),
    the key is usable at ``now`` (``ApiKey.usable_at``) and its agent is active (``Agent.is_active``)."""
    if not isinstance(raw, str) or not looks_like_api_key(raw):
        raise InvalidClient(REFUSED, debug="malformed API key")
    if found is None or not hasher.matches(raw, found[0].key_hash):
        raise InvalidClient(REFUSED, debug="unknown API key")
    key, agent = found
    if not key.usable_at(now):
        raise InvalidClient(REFUSED, debug=f"API key {key.id} is {key.status}/expired")
    if not agent.is_active:
        raise InvalidClient(REFUSED, debug=f"agent {agent.id} is deactivated")
