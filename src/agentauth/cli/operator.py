"""Commands an operator of the service runs: serve it, manage its signing keys, pull the kill switch."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from agentauth.cli.shared import (
    CliError,
    _print_json,
    _settings,
)

# How long an idle keep-alive connection stays open. uvicorn's default of 5 s equals httpx's pool expiry (5 s;
# undici's is 4 s): a client reusing a connection at that moment races the server closing it and gets a
# ReadError on a request it sent. The server waits longer than the clients do, so the client closes first.
KEEP_ALIVE_SECONDS = 30


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (AGENTAUTH_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (AGENTAUTH_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Serve the REST API (and MCP) over HTTP. Configuration: AGENTAUTH_* environment variables."""
    import uvicorn

    from agentauth.api.logs import logging_config

    settings = _settings(host=host, port=port)
    uvicorn.run(
        "agentauth.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=log_level,
        # Applied by uvicorn in this process and in each worker: JSON lines unless stderr is a terminal.
        log_config=logging_config(log_level),
        access_log=False,  # the app writes its own access line (api/logs.py: AccessLog), with the route template
        # uvicorn believes X-Forwarded-For from any local peer by default; the app applies
        # AGENTAUTH_TRUSTED_PROXIES itself (api.middleware.TrustedProxiesMiddleware).
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


def keys_rotate() -> None:
    """Promote the next key to active, retire the active one, publish a fresh next key."""
    import asyncio

    from agentauth.bootstrap import build_services, utcnow

    async def run() -> str:
        svc = await build_services(_settings())
        try:
            ring = await svc.keys.rotate(utcnow(), svc.key_retention())
            return ring.active.kid
        finally:
            await svc.close()

    typer.echo(f"active key: {asyncio.run(run())}")


def keys_revoke(
    kid: Annotated[str, typer.Argument(metavar="KID", help="The kid to drop (as shown by `agentauth keys list`).")],
) -> None:
    """Key compromise: drop KID from the JWKS and DID document now, and revoke everything it signed."""
    import asyncio

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
        raise CliError(exc.description) from None
    typer.echo(f"dropped {kid}; revoked {count} credentials it signed")


def keys_list(as_json: Annotated[bool, typer.Option("--json", help="Print the keys as JSON.")] = False) -> None:
    """Show the published keys and their states."""
    import asyncio

    from agentauth.bootstrap import build_services

    async def run() -> list[dict[str, Any]]:
        svc = await build_services(_settings())
        try:
            return [
                {
                    "kid": k.kid,
                    "state": k.state.value,
                    "created_at": k.created_at.isoformat(),
                    "activated_at": k.activated_at.isoformat() if k.activated_at else None,
                    "remove_after": k.remove_after.isoformat() if k.remove_after else None,
                }
                for k in svc.keys.ring.keys
            ]
        finally:
            await svc.close()

    keys = asyncio.run(run())
    if as_json:
        _print_json(keys)
        return
    for key in keys:
        typer.echo(f"{key['state']:8} {key['kid']}")


def admin_stats(as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False) -> None:
    """Operator statistics of the configured service, across every tenant: tenants, agents, API keys, live
    credentials, the last 24 hours' issuance, revocations and denials, the webhook outbox, status lists and
    signing keys (counts only; one consistent snapshot)."""
    import asyncio

    from agentauth.bootstrap import build_services, utcnow
    from agentauth.storage import admin_stats

    async def run() -> dict[str, Any]:
        svc = await build_services(_settings())
        try:
            now = utcnow()
            stats = admin_stats.summary(await svc.ports.reads.fetch(*admin_stats.queries(now)))
            return {"at": now.isoformat(), **stats}
        finally:
            await svc.close()

    stats = asyncio.run(run())
    if as_json:
        _print_json(stats)
        return
    for name, value in stats.items():
        shown = ", ".join(f"{k} {v}" for k, v in value.items()) or "none" if isinstance(value, dict) else value
        typer.echo(f"{name:20} {shown}")


AgentId = Annotated[str, typer.Argument(metavar="AGENT_ID", help="The agent (agt_...); a tenant root: all of it.")]


def _kill_switch(action: str, agent_id: str) -> dict[str, Any]:
    """Run ``agents.<action>`` on ``agent_id`` as its tenant's root (as the console does for an owner), recorded in
    the audit log with ``details.operator`` = the OS user."""
    import asyncio
    import getpass

    from agentauth.bootstrap import build_services
    from agentauth.errors import AgentAuthError
    from agentauth.issuer.context import RequestContext

    async def run() -> dict[str, Any]:
        svc = await build_services(_settings())
        try:
            operator = getpass.getuser()
            principal = await svc.agents.operator_principal(agent_id, operator)
            ctx = RequestContext(operator=operator)
            use_case = {"suspend": svc.agents.suspend, "resume": svc.agents.resume, "stop": svc.agents.deactivate}
            agent = await use_case[action](principal, agent_id, ctx)
            return {"id": agent.id, "name": agent.name, "status": agent.status}
        finally:
            await svc.close()

    try:
        return asyncio.run(run())
    except AgentAuthError as exc:
        raise CliError(f"{exc.error}: {exc.description}") from None


def _report(agent: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        _print_json(agent)
    else:
        typer.echo(f"{agent['id']} ({agent['name']}) is {agent['status']}: {what}")


AsJson = Annotated[bool, typer.Option("--json", help="Print the agent's id, name and status as JSON.")]


def admin_suspend(agent_id: AgentId, as_json: AsJson = False) -> None:
    """Kill switch, reversible: suspend AGENT_ID and its subtree. Nothing of theirs authenticates or verifies
    (offline verifiers: at their next status-list fetch); nothing is revoked - `admin resume` restores them."""
    agent = _kill_switch("suspend", agent_id)
    _report(agent, as_json, "its subtree too; status lists re-signed, `agentauth admin resume` restores it")


def admin_resume(agent_id: AgentId, as_json: AsJson = False) -> None:
    """Undo `admin suspend`: AGENT_ID and every suspended agent below it act again."""
    _report(_kill_switch("resume", agent_id), as_json, "so is every agent below it that was suspended")


def admin_stop(
    agent_id: AgentId,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask: this cannot be undone.")] = False,
    as_json: AsJson = False,
) -> None:
    """Kill switch, for good: deactivate AGENT_ID and its subtree, revoking every API key, token, refresh token and
    delegation they hold or gave, and closing their open approval requests."""
    if not yes:
        typer.confirm(f"Stop {agent_id} and everything below it for good? This cannot be undone", abort=True)
    _report(_kill_switch("stop", agent_id), as_json, "everything it and its subtree held is revoked")
