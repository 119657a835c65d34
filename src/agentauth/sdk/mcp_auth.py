"""A token verifier for the MCP Python SDK's auth, so a third-party MCP server can require AgentAuth tokens.

Implements ``mcp.server.auth.provider.TokenVerifier`` (``async verify_token(token) -> AccessToken | None``)::

    resource = "https://reports.example.com/mcp"  # registered with AgentAuth as a resource server
    mcp = MCPServer(
        "reports",
        token_verifier=AgentAuthTokenVerifier(AsyncOnlineVerifier("https://auth.example.com", resource=resource)),
        auth=AuthSettings(
            issuer_url="https://auth.example.com", resource_server_url=resource, required_scopes=["reports.read"]
        ),
    )

A token is accepted only when its ``aud`` names this server (the verifier's ``resource``, or ``audience`` given
here): agents obtain one with ``resource=<that identifier>`` (RFC 8707), and a token for another server is
refused (the token replay the MCP authorization spec forbids).

The MCP SDK's bearer middleware then answers 401 ``invalid_token`` when this returns None and 403
``insufficient_scope`` when a required scope is missing, each with ``WWW-Authenticate``.

DPoP-bound tokens (RFC 9449 section 7) cannot pass here: the MCP SDK hands a token verifier the token string
only, and a bound token needs the request's ``DPoP`` proof, method and URI - so this verifier refuses them
(``dpop_required``), as it must. For an MCP server that accepts DPoP, put ``agentauth.sdk.asgi.BearerAuthMiddleware``
in front of the MCP app instead of giving the SDK a token verifier::

    app = BearerAuthMiddleware(
        mcp.streamable_http_app(),  # an MCPServer built without token_verifier/auth
        AsyncOnlineVerifier("https://auth.example.com", resource=resource),
        required_scopes=["reports.read"],
        dpop=DPoPSettings(public_url="https://reports.example.com"),  # + nonces=DPoPNonces(secret), require_dpop=True
        resource_metadata="https://reports.example.com/.well-known/oauth-protected-resource",
    )

It accepts bearer and DPoP tokens alike, answers 401/403 with the DPoP challenges (``use_dpop_nonce`` with
``DPoP-Nonce``), and leaves the verified token in ``request.state.agentauth_token`` for tools
(``ctx.request_context.request``). Serve the protected-resource metadata (RFC 9728) yourself or through
``exclude_paths=["/.well-known/"]``.
"""

from __future__ import annotations

import logging

from mcp.server.auth.provider import AccessToken

from agentauth.sdk.bearer import TokenAuthority, require_audience_configured, verify_token
from agentauth.vc import VerificationError

log = logging.getLogger("agentauth.sdk")


class AgentAuthTokenVerifier:
    """Verifies AgentAuth access tokens for an MCP server: the token's ``aud`` must name ``audience``, by default
    the verifier's ``resource``."""

    def __init__(self, verifier: TokenAuthority, *, audience: str | None = None) -> None:
        require_audience_configured(verifier, audience)
        self.verifier = verifier
        self.audience = audience

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            verified = await verify_token(self.verifier, token, self.audience)
        except VerificationError as exc:
            # The MCP SDK can only say 401 here; the reason is for the operator.
            log.info("MCP bearer token refused: %s (%s)", exc.code, exc.detail)
            return None
        claims = verified.claims
        resource = self.audience if self.audience is not None else getattr(self.verifier, "resource", None)
        return AccessToken(
            token=token,
            client_id=str(claims["client_id"]),
            scopes=sorted(verified.scopes),
            expires_at=int(claims["exp"]),
            resource=resource,
            subject=verified.subject,
            claims=claims,
        )
