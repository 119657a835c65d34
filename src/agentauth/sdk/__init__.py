"""The verifier SDK: what a third party needs to accept AgentAuth tokens and credentials.

* ``OnlineVerifier`` / ``AsyncOnlineVerifier`` - configured with the issuer URL; fetch and cache the JWKS
  (refetched on an unknown ``kid``, rate-limited) and the status lists (per their ``Cache-Control``/``ttl``,
  from the issuer's origin only).
* ``HttpStatusLists`` - the same status-list fetching as a source for a plain ``agentauth.vc.Verifier``.
* ``offline_verifier`` - fully offline, from a JWKS file and a directory of status-list files.
* Resource servers: ``agentauth.sdk.fastapi`` (``require_scopes``), ``agentauth.sdk.asgi``
  (``BearerAuthMiddleware``) and ``agentauth.sdk.mcp_auth`` (``AgentAuthTokenVerifier`` for MCP servers) -
  imported on demand, so the SDK needs neither FastAPI nor MCP unless you use them.
* ``DPoPSettings`` - how those accept DPoP-bound tokens (RFC 9449 section 7): replay cache, nonces,
  ``require_dpop`` / ``require_agent_key``, the public URL behind a proxy (``agentauth.sdk.dpop``).
* ``protected_resource_metadata`` - the RFC 9728 document such a server serves, DPoP members included.
* ``AgentClient`` / ``AsyncAgentClient`` - the agent's side: quickstart, tokens by API key or did:key, refreshed
  before ``refresh_before``, an ``httpx.Auth`` (and ``requests`` auth) attaching them, resource-bound tokens,
  token exchange under a delegation, presentations (``agentauth.sdk.agent``).
* ``require_authorization_details`` - a resource server's check that a verified token's RFC 9396
  ``authorization_details`` (an owner's approval, CIBA) cover the action asked of it: same type, every field
  approved, ``amount`` at most the approved one; a single-use token is accepted once, remembered in
  ``spent=SpentTokens()`` (``agentauth.sdk.approvals``).
* ``DPoPAuth`` - the agent's side: an ``httpx.Auth`` that signs a DPoP proof for every request with the agent's
  key and retries once on ``use_dpop_nonce`` (``agentauth.sdk.client``).

The checks themselves are the pure core's (``agentauth.vc.Verifier``); failures raise
``agentauth.vc.VerificationError`` with a stable reason ``code``.
"""

from agentauth.sdk.agent import AgentClient, AsyncAgentClient
from agentauth.sdk.agent_auth import AgentAuth
from agentauth.sdk.agent_core import AgentClientError, TokenError, TokenKey, TokenSet
from agentauth.sdk.approvals import SpentTokens, require_authorization_details
from agentauth.sdk.bearer import BearerError, TokenAuthority, authenticate, bearer_token
from agentauth.sdk.cache import JWKS_UNAVAILABLE, UNAVAILABLE_CODES
from agentauth.sdk.client import DPoPAuth
from agentauth.sdk.dpop import DPoPSettings
from agentauth.sdk.http import FetchError, check_fetchable
from agentauth.sdk.metadata import protected_resource_metadata
from agentauth.sdk.offline import JwksFileError, load_jwks, offline_verifier
from agentauth.sdk.online import AsyncOnlineVerifier, OnlineVerifier
from agentauth.sdk.status_source import HttpStatusLists
from agentauth.vc.authorization_details import AuthorizationDetailsError

__all__ = [
    "JWKS_UNAVAILABLE",
    "UNAVAILABLE_CODES",
    "AgentAuth",
    "AgentClient",
    "AgentClientError",
    "AsyncAgentClient",
    "AsyncOnlineVerifier",
    "AuthorizationDetailsError",
    "BearerError",
    "DPoPAuth",
    "DPoPSettings",
    "FetchError",
    "HttpStatusLists",
    "JwksFileError",
    "OnlineVerifier",
    "SpentTokens",
    "TokenAuthority",
    "TokenError",
    "TokenKey",
    "TokenSet",
    "authenticate",
    "bearer_token",
    "check_fetchable",
    "load_jwks",
    "offline_verifier",
    "protected_resource_metadata",
    "require_authorization_details",
]
