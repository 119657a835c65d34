"""The FastAPI application: built from services made by ``bootstrap``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from agentauth import __version__
from agentauth.api import (
    agents,
    audit,
    auth,
    authorize,
    console,
    credentials,
    delegations,
    docs,
    errors,
    metrics,
    openapi,
    owner_pages,
    policies,
    registration,
    resource_servers,
    status_lists,
    webhooks,
    wellknown,
)
from agentauth.api.direct import DirectRoutes
from agentauth.api.logs import AccessLog
from agentauth.api.middleware import DPoPNonceMiddleware, LimitsMiddleware, TrustedProxiesMiddleware
from agentauth.bootstrap import Services, build_services
from agentauth.issuer.grants import GRANTS
from agentauth.mcp.http import McpMount
from agentauth.settings import Settings

log = logging.getLogger("agentauth.api")
GC_YOUNG_THRESHOLD = 20_000


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """An app that builds its services at startup from ``settings`` (default: the environment), or uses
    ready-made ``services`` (tests, the MCP server sharing them)."""
    config = services.settings if services is not None else (settings or Settings())
    observed = metrics.Metrics(GRANTS.grant_types) if config.metrics_enabled else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or await build_services(config)
        app.state.services = svc
        if observed is not None:
            observed.attach(svc)
        if services is None:
            # Everything built at start-up lives as long as the process: move it out of the collector's reach.
            # Measured: full collections walking those ~200k objects stalled all in-flight requests for
            # 80-240 ms every second or two under load (p99 114 ms -> 40 ms with the freeze).
            gc.collect()
            gc.freeze()
            # A request allocates a few thousand objects, nearly all freed by reference counting: at the default
            # gen0 threshold (700) the collector ran several times per request. Measured in process (bench/ops.py,
            # gc callbacks): 782 young collections over 9,000 requests at 700, 17 at 20,000; CPU in the collector
            # 1.13 s -> 0.37 s. The older generations keep their defaults.
            gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        task = asyncio.create_task(svc.maintain())
        try:
            async with mcp.run():
                yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if observed is not None:
                observed.detach(svc)
            if services is None:
                await svc.close()

    app = FastAPI(
        title="AgentAuth",
        version=__version__,
        description="Identity and authentication for AI agents: did:key identities, Ed25519 JWT-VC tokens.",
        lifespan=lifespan,
        generate_unique_id_function=openapi.operation_id,
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN; docs.install serves them itself
        redoc_url=None,
    )
    errors.install(app)
    openapi.install(app)
    app.state.metrics = observed  # None while off: the token endpoint counts grants only when on
    if observed is not None:
        token = config.metrics_token.get_secret_value() if config.metrics_token is not None else None
        metrics.install(app, observed, token)
        if services is not None:
            observed.attach(services)  # ready-made services: tests run no lifespan
    docs.install(app)
    for module in (
        wellknown, auth, registration, agents, credentials, delegations, policies, resource_servers,
        webhooks, status_lists, audit, authorize, owner_pages, console,
    ):  # fmt: skip
        app.include_router(module.router)
    # MCP at /mcp (streamable HTTP): the same use cases as the routers above, through the services of this app.
    mcp = McpMount(lambda: app.state.services, config.issuer_url, config.max_body_bytes)
    mcp.install(app.router)
    # The busiest routes skip FastAPI's router and dependency injection; inside the limits, like every route.
    app.add_middleware(DirectRoutes, routes=(*auth.DIRECT, *agents.DIRECT, *policies.DIRECT, *delegations.DIRECT))
    if config.dpop_nonce_required:

        def current_nonce() -> str:
            core = app.state.services.core
            return str(core.dpop_nonces.current(core.clock().timestamp()))

        app.add_middleware(DPoPNonceMiddleware, current=current_nonce)
    app.add_middleware(LimitsMiddleware, max_body=config.max_body_bytes)
    # Outside the limits (their refusals get an access line too), inside the proxies (the settled client address).
    app.add_middleware(AccessLog, metrics=observed)
    app.add_middleware(TrustedProxiesMiddleware, trusted=config.trusted_proxies)  # added last: runs first
    return app
