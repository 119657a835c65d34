"""Abuse limits on the unauthenticated endpoints (token, quickstart): per client and per IP, answering 429."""

from __future__ import annotations

import logging
import math
from typing import Any

from agentauth.bootstrap import Services
from agentauth.errors import RateLimited, TemporarilyUnavailable
from agentauth.issuer.context import RequestContext
from agentauth.issuer.ratelimit import Limit, RateLimiterUnavailable
from agentauth.issuer.secrets import api_key_lookup_prefix

log = logging.getLogger("agentauth.ratelimit")
MINUTE = 60.0


async def _check(services: Services, key: str, limit: Limit) -> None:
    try:
        wait = await services.rate_limiter.hit(key, limit)
    except RateLimiterUnavailable as exc:
        # Fail closed: without the shared limiter we cannot tell a flood from normal traffic.
        log.warning("rate limiter unavailable: %s", exc)
        raise TemporarilyUnavailable("rate limiting backend unavailable; retry later") from exc
    if wait is not None:
        raise RateLimited(max(1, math.ceil(wait)), "too many requests; retry after the indicated delay")


def _client_key(params: dict[str, Any]) -> str | None:
    secret = params.get("client_secret")
    if isinstance(secret, str) and secret:
        return "key:" + api_key_lookup_prefix(secret)
    client_id = params.get("client_id")
    if isinstance(client_id, str) and client_id:
        return "client:" + client_id[:100]
    return None


async def limit_token_request(services: Services, params: dict[str, Any], ctx: RequestContext) -> None:
    settings = services.settings
    if ctx.ip:
        await _check(services, f"token:ip:{ctx.ip}", Limit(settings.token_rate_per_ip, MINUTE))
    client = _client_key(params)
    if client:
        await _check(services, f"token:{client}", Limit(settings.token_rate_per_client, MINUTE))


async def limit_quickstart(services: Services, ctx: RequestContext) -> None:
    if ctx.ip:
        await _check(services, f"quickstart:ip:{ctx.ip}", Limit(services.settings.quickstart_rate_per_ip, MINUTE))
