"""The ``agentauth`` command."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from agentauth.settings import Settings

app = typer.Typer(help="AgentAuth: identity and authentication for AI agents.", no_args_is_help=True)
keys_app = typer.Typer(help="Issuer signing keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _settings(**overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**values)  # type: ignore[arg-type]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (AGENTAUTH_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (AGENTAUTH_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Serve the REST API (and later MCP) over HTTP."""
    import uvicorn

    settings = _settings(host=host, port=port)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        "agentauth.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Promote the next key to active, retire the active one, publish a fresh next key."""
    from agentauth.bootstrap import build_services, utcnow

    async def run() -> str:
        svc = await build_services(_settings())
        try:
            ring = await svc.keys.rotate(utcnow(), svc.key_retention())
            return ring.active.kid
        finally:
            await svc.close()

    typer.echo(f"active key: {asyncio.run(run())}")


@keys_app.command("revoke")
def keys_revoke(
    kid: Annotated[str, typer.Argument(help="The kid to drop (as shown by `agentauth keys list`).")],
) -> None:
    """Key compromise: drop KID from the JWKS and DID document now, and revoke everything it signed."""
    from agentauth.bootstrap import build_services
    from agentauth.errors import NotFound
    from agentauth.issuer.compromise import revoke_signing_key
    from agentauth.issuer.context import RequestContext

    async def run() -> int:
        svc = await build_services(_settings())
        try:
            return await revoke_signing_key(svc.keys, svc.core, kid, RequestContext())
        finally:
            await svc.close()

    try:
        count = asyncio.run(run())
    except NotFound as exc:
        typer.echo(f"error: {exc.description}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"dropped {kid}; revoked {count} credentials it signed")


@keys_app.command("list")
def keys_list() -> None:
    """Show the published keys and their states."""
    from agentauth.bootstrap import build_services

    async def run() -> list[str]:
        svc = await build_services(_settings())
        try:
            return [f"{k.state.value:8} {k.kid}" for k in svc.keys.ring.keys]
        finally:
            await svc.close()

    for line in asyncio.run(run()):
        typer.echo(line)


def main() -> None:
    app()
