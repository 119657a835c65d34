"""The in-process backend: the tools call the issuer's use cases directly, with the models REST uses.

Authentication and the abuse limits on the unauthenticated grants are the same as REST's (``api/deps.py``,
``issuer/abuse.py``) and share their state (the rate-limit buckets are keyed alike); authorization is the use
case's own (``issuer/authorization.py``), whoever calls it. So MCP is neither a way around a deny policy nor
around a rate limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agentauth.bootstrap import TOKEN_ISSUED, Services
from agentauth.errors import AgentAuthError, NotFound
from agentauth.issuer import abuse
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.schemas import QuickstartRequest, QuickstartResponse, TokenResponse
from agentauth.mcp.backend import Operation, R, VerificationMaterial
from agentauth.paths import SUSPENSION_SUFFIX

log = logging.getLogger("agentauth.mcp")


class EmbeddedBackend:
    """``services`` returns the running services (the HTTP app builds them in its lifespan, after mounting)."""

    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services

    async def call(self, name: str, operation: Operation[R], access_token: str, ctx: RequestContext) -> R:
        # ``name`` is the REST route's key; in process the use case ``operation.run`` calls names (and authorizes)
        # its own operation - tests/api/test_operations.py shows the two agree for every tool.
        services = self._services()
        principal = await services.tokens.authenticate_bearer(access_token, proven_jkt=ctx.holder_jkt)
        return await operation.run(services, principal, ctx)

    async def discover(self) -> dict[str, Any]:
        services = self._services()
        return services.agent_configuration()

    async def quickstart(self, request: QuickstartRequest, ctx: RequestContext) -> QuickstartResponse:
        services = self._services()
        await abuse.limit_quickstart(services.rate_limiter, services.settings, ctx)
        return await services.agents.quickstart(request, ctx)

    async def backchannel(self, params: dict[str, str], ctx: RequestContext) -> dict[str, Any]:
        services = self._services()
        await abuse.limit_token_request(services.rate_limiter, services.settings, params, ctx)
        return await services.approvals.request(dict(params), ctx)

    async def token(self, params: dict[str, str], ctx: RequestContext) -> TokenResponse:
        services = self._services()
        observe = services.token_requests
        try:
            await abuse.limit_token_request(services.rate_limiter, services.settings, params, ctx)
            result = await services.tokens.token(params, ctx)
        except AgentAuthError as exc:
            if observe is not None:
                observe(params.get("grant_type"), exc.error)
            raise
        if observe is not None:
            observe(params.get("grant_type"), TOKEN_ISSUED)
        return result

    async def _caller(self, services: Services, caller: str | None, ctx: RequestContext) -> Principal | None:
        if caller is not None:
            return await services.tokens.authenticate_bearer(caller, proven_jkt=ctx.holder_jkt)
        # No credential: the token endpoint's per-IP bucket, as REST's /introspect and /revoke draw on.
        await abuse.limit_token_request(services.rate_limiter, services.settings, {}, ctx)
        return None

    async def introspect(self, caller: str | None, token: str, ctx: RequestContext) -> dict[str, Any]:
        services = self._services()
        principal = await self._caller(services, caller, ctx)
        return await services.lifecycle.introspect(principal, token)

    async def revoke(self, caller: str | None, token: str, ctx: RequestContext) -> None:
        services = self._services()
        principal = await self._caller(services, caller, ctx)
        await services.lifecycle.revoke(principal, token, None, ctx)

    async def verification_material(self) -> VerificationMaterial:
        services = self._services()
        return VerificationMaterial(services.settings.issuer_url, services.issuer_did, dict(services.jwks()))

    async def status_list(self, url: str) -> str | None:
        services = self._services()
        rest, purpose = url, "revocation"
        if url.endswith(SUSPENSION_SUFFIX):
            rest, purpose = url.removesuffix(SUSPENSION_SUFFIX), "suspension"
        list_id = rest.rpartition("/")[2]
        # Only a URL this issuer publishes a list at: a token cannot make us look anything else up.
        if not list_id.isdigit() or len(list_id) > 10 or services.status.list_url(int(list_id), purpose) != url:
            return None
        try:
            return (await services.status.published(int(list_id), purpose)).jwt
        except NotFound:
            return None
