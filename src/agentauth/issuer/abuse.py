"""Abuse limits on the unauthenticated operations (token grants, quickstart, RFC 7591 client registration):
per client and per IP.

One implementation for both adapters, with one key scheme, so REST and MCP calls draw on the same buckets and
neither is a way around the other's limit. Fails closed: without the shared limiter a flood cannot be told
from normal traffic, so the answer is 503, not an unlimited door.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from agentauth.errors import RateLimited, TemporarilyUnavailable
from agentauth.issuer.context import RequestContext
from agentauth.issuer.ratelimit import Limit, RateLimiter, RateLimiterUnavailable
from agentauth.issuer.secrets import api_key_lookup_prefix
from agentauth.settings import Settings
from agentauth.vc import VerificationError, unverified_issuer

log = logging.getLogger("agentauth.ratelimit")
MINUTE = 60.0


async def _check(limiter: RateLimiter, key: str, limit: Limit) -> None:
    try:
        wait = await limiter.hit(key, limit)
    except RateLimiterUnavailable as exc:
        log.warning("rate limiter unavailable: %s", exc)
        raise TemporarilyUnavailable("rate limiting backend unavailable; retry later") from exc
    if wait is not None:
        raise RateLimited(max(1, math.ceil(wait)), "too many requests; retry after the indicated delay")


def _client_key(params: Mapping[str, Any]) -> str | None:
    secret = params.get("client_secret")
    if isinstance(secret, str) and secret:
        return "key:" + api_key_lookup_prefix(secret)
    client_id = params.get("client_id")
    if isinstance(client_id, str) and client_id:
        return "client:" + client_id[:100]
    # private_key_jwt without a client_id parameter: the client its assertion names (unverified, like a client_id
    # parameter), so leaving client_id out is no way around the per-client limit.
    assertion = params.get("client_assertion")
    if isinstance(assertion, str) and assertion:
        try:
            named = unverified_issuer(assertion)
        except VerificationError:
            return None
        return "client:" + named[:100] if named else None
    return None


async def limit_token_request(
    limiter: RateLimiter, settings: Settings, params: Mapping[str, Any], ctx: RequestContext
) -> None:
    if ctx.ip:
        await _check(limiter, f"token:ip:{ctx.ip}", Limit(settings.token_rate_per_ip, MINUTE))
    client = _client_key(params)
    if client:
        await _check(limiter, f"token:{client}", Limit(settings.token_rate_per_client, MINUTE))


async def limit_quickstart(limiter: RateLimiter, settings: Settings, ctx: RequestContext) -> None:
    if ctx.ip:
        await _check(limiter, f"quickstart:ip:{ctx.ip}", Limit(settings.quickstart_rate_per_ip, MINUTE))


async def limit_client_registration(limiter: RateLimiter, settings: Settings, ctx: RequestContext) -> None:
    if ctx.ip:
        await _check(limiter, f"register:ip:{ctx.ip}", Limit(settings.client_registration_rate_per_ip, MINUTE))
