"""``agentauth-mcp``: the MCP tools over stdio, for clients that launch their servers as a process.

* ``AGENTAUTH_URL`` set: the tools call that AgentAuth's REST API (``remote``).
* otherwise: embedded on the local data directory (``AGENTAUTH_DATA_DIR``, default ``./data``) with the
  same settings as ``agentauth serve`` - no network needed.

``AGENTAUTH_API_KEY`` is the key ``authenticate`` uses when called without one. stdout carries the protocol
only; logs go to stderr (``AGENTAUTH_MCP_LOG_LEVEL``, default WARNING) and never contain tokens or keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator

import anyio

from agentauth.bootstrap import build_services
from agentauth.mcp.backend import Backend
from agentauth.mcp.embedded import EmbeddedBackend
from agentauth.mcp.remote import RestBackend
from agentauth.mcp.server import build_server
from agentauth.settings import Settings

log = logging.getLogger("agentauth.mcp")


@contextlib.asynccontextmanager
async def open_backend(url: str | None) -> AsyncIterator[Backend]:
    if url:
        remote = RestBackend(url)
        try:
            yield remote
        finally:
            await remote.aclose()
        return
    # Nothing may reach stdout but the protocol: keep anything printed while opening the database off it.
    with contextlib.redirect_stdout(sys.stderr):
        services = await build_services(Settings())
    task = asyncio.create_task(services.maintain())
    try:
        yield EmbeddedBackend(lambda: services)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await services.close()


async def serve() -> None:
    url = os.environ.get("AGENTAUTH_URL") or None
    api_key = os.environ.get("AGENTAUTH_API_KEY") or None
    async with open_backend(url) as backend:
        server = build_server(backend, token_in_header=False, default_api_key=api_key)
        await server.run_stdio_async()


def main() -> None:
    level = os.environ.get("AGENTAUTH_MCP_LOG_LEVEL", "WARNING").upper()
    if level not in logging.getLevelNamesMapping():
        level = "WARNING"
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve)


if __name__ == "__main__":
    main()
