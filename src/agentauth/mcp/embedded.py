"""The in-process backend: the tools call the issuer's use cases directly, with the models REST uses.

Authentication, route authorization (policy engine) and the abuse limits on the unauthenticated grants are the
same as REST's (``api/deps.py``, ``api/ratelimits.py``) and share their state (the rate-limit buckets are keyed
alike), so MCP is neither a way around a deny policy nor around a rate limit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from agentauth.bootstrap import Services
from agentauth.errors import NotFound, RateLimited, TemporarilyUnavailable
from agentauth.issuer import discovery
from agentauth.issuer.context import RequestContext
from agentauth.issuer.ratelimit import Limit, RateLimiterUnavailable
from agentauth.issuer.schemas import QuickstartRequest, QuickstartResponse, TokenResponse
from agentauth.issuer.secrets import api_key_lookup_prefix
from agentauth.mcp.backend import Operation, R, VerificationMaterial

log = logging.getLogger("agentauth.mcp")
MINUTE = 60.0
STATUS_LIST_PATH = "/api/v1/status-lists/"


class EmbeddedBackend:
    """``services`` returns the running services (the HTTP app builds them in its lifespan, after mounting)."""

    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services

    async def call(self, operation: Operation[R], access_token: str, ctx: RequestContext) -> R:
        services = self._services()
        principal = await services.tokens.authenticate_bearer(access_token)
        await services.policies.authorize_route(principal, operation.method, operation.path, ctx.ip)
        return await operation.run(services, principal, ctx)

    async def discover(self) -> dict[str, Any]:
        services = self._services()
        return discovery.agent_configuration(services.settings, services.issuer_did)

    async def quickstart(self, request: QuickstartRequest, ctx: RequestContext) -> QuickstartResponse:
        services = self._services()
        if ctx.ip:
            limit = Limit(services.settings.quickstart_rate_per_ip, MINUTE)
            await _check(services, f"quickstart:ip:{ctx.ip}", limit)
        return await services.agents.quickstart(request, ctx)

    async def token(self, params: dict[str, str], ctx: RequestContext) -> TokenResponse:
        services = self._services()
        settings = services.settings
        if ctx.ip:
            await _check(services, f"token:ip:{ctx.ip}", Limit(settings.token_rate_per_ip, MINUTE))
        secret = params.get("client_secret")
        if secret:
            per_client = Limit(settings.token_rate_per_client, MINUTE)
            await _check(services, "token:key:" + api_key_lookup_prefix(secret), per_client)
        return await services.tokens.token(params, ctx)

    async def introspect(self, caller: str, token: str, ctx: RequestContext) -> dict[str, Any]:
        services = self._services()
        principal = await services.tokens.authenticate_bearer(caller)
        return await services.lifecycle.introspect(principal, token)

    async def revoke(self, caller: str, token: str, ctx: RequestContext) -> None:
        services = self._services()
        principal = await services.tokens.authenticate_bearer(caller)
        await services.lifecycle.revoke(principal, token, None, ctx)

    async def verification_material(self) -> VerificationMaterial:
        services = self._services()
        return VerificationMaterial(services.settings.issuer_url, services.issuer_did, dict(services.jwks()))

    async def status_list(self, url: str) -> str | None:
        services = self._services()
        prefix = services.settings.issuer_url + STATUS_LIST_PATH
        list_id = url[len(prefix) :] if url.startswith(prefix) else ""
        if not list_id.isdigit() or len(list_id) > 10:
            return None
        try:
            return (await services.status.published(int(list_id))).jwt
        except NotFound:
            return None


async def _check(services: Services, key: str, limit: Limit) -> None:
    try:
        wait = await services.rate_limiter.hit(key, limit)
    except RateLimiterUnavailable as exc:
        # Fail closed, as REST does: without the shared limiter a flood cannot be told from normal traffic.
        log.warning("rate limiter unavailable: %s", exc)
        raise TemporarilyUnavailable("rate limiting backend unavailable; retry later") from exc
    if wait is not None:
        raise RateLimited(max(1, math.ceil(wait)), "too many requests; retry after the indicated delay")
