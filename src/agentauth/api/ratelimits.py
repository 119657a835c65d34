"""REST's abuse limits: the shared implementation in ``issuer/abuse.py`` with this process's limiter."""

from __future__ import annotations

from typing import Any

from agentauth.bootstrap import Services
from agentauth.issuer import abuse
from agentauth.issuer.context import RequestContext


async def limit_token_request(services: Services, params: dict[str, Any], ctx: RequestContext) -> None:
    await abuse.limit_token_request(services.rate_limiter, services.settings, params, ctx)


async def limit_quickstart(services: Services, ctx: RequestContext) -> None:
    await abuse.limit_quickstart(services.rate_limiter, services.settings, ctx)


async def limit_client_registration(services: Services, ctx: RequestContext) -> None:
    await abuse.limit_client_registration(services.rate_limiter, services.settings, ctx)
