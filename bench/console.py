"""Server time of the owner console's list pages on a big tenant (issue 17: "console list pages (agents, audit)
answer within 100 ms of server time with 10,000 agents and 100,000 audit events in one tenant").

The app is called in process as ASGI (bench/ops.py's ``Asgi``: no socket, no HTTP parser), so the time measured
is the server's alone. The tenant is made through the use cases - an owner signs up and creates it, its root
creates ``--agents`` children -, and ``--events`` audit events are then inserted in bulk (the audit log is
append-only rows; making them one token request at a time would only take longer). Each page is requested
``--repeat`` times one after another; the table shows median and 95th percentile.

Run: .venv/bin/python bench/console.py [--agents 10000] [--events 100000] [--repeat 30] [--postgres-url URL]

``--postgres-url`` DROPS the ``public`` schema of that database first.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a script named http.py (see bench/load.py): move bench/ to the end of sys.path.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from agentauth.api.app import create_app
from agentauth.bootstrap import Services
from agentauth.issuer.context import RequestContext
from agentauth.issuer.schemas import CreateAgentRequest
from agentauth.settings import Settings
from agentauth.storage.models import AuditEventRow
from ops import ISSUER, Asgi
from server import reset_postgres

ACTIONS = ("token.issued", "token.issued", "token.issued", "token.denied", "agent.created", "credential.created")


async def seed(services: Services, agents: int, events: int) -> tuple[str, str]:
    """An owner with a tenant of ``agents`` children and ``events`` audit events: (session cookie, tenant id)."""
    ctx = RequestContext(ip="127.0.0.1")
    await services.owners.signup("owner@example.com", "correct horse battery staple", ctx)
    login = await services.owners.login("owner@example.com", "correct horse battery staple", ctx)
    session = await services.owners.session(login.session_token)
    assert session is not None
    tenant = await services.owners.create_tenant(session, "big tenant", ctx)
    principal = await services.owners.principal(session, tenant.agent.id)
    started = time.perf_counter()
    for start in range(0, agents, 64):
        await asyncio.gather(*(
            services.agents.create_child(principal, CreateAgentRequest(name=f"agent {i}", agent_type="tool"), ctx)
            for i in range(start, min(start + 64, agents))
        ))  # fmt: skip
    print(f"seeded {agents} agents in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    now = datetime.now(UTC)
    rows = [
        {
            "tenant_id": tenant.agent.id, "actor": tenant.agent.id, "action": ACTIONS[i % len(ACTIONS)],
            "target_type": "agent", "target_id": tenant.agent.id, "outcome": "success", "reason": None,
            "request_id": f"bench{i}", "ip": "127.0.0.1", "created_at": now - timedelta(seconds=events - i),
            "details": None,
        }
        for i in range(events)
    ]  # fmt: skip
    async with services.sessions.begin() as db:
        for start in range(0, len(rows), 10_000):
            await db.execute(insert(AuditEventRow), rows[start : start + 10_000])
    return login.session_token, tenant.agent.id


async def timed(asgi: Asgi, path: str, cookie: str, repeat: int) -> list[float]:
    header = [(b"cookie", f"agentauth_session={cookie}".encode())]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        status, body = await asgi.call("GET", path, extra=header)
        times.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise AssertionError(f"{path}: {status} {body[:200]!r}")
    return times


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="agentauth-console-") as tmp:
        if args.postgres_url:
            await reset_postgres(args.postgres_url)
        settings = Settings(data_dir=Path(tmp), issuer_url=ISSUER, database_url=args.postgres_url or None)
        app = create_app(settings)
        asgi = Asgi(app)
        async with app.router.lifespan_context(app):
            cookie, tenant = await seed(app.state.services, args.agents, args.events)
            last_page = args.agents // 100
            pages = {
                "agents, first page": f"/console/{tenant}",
                f"agents, page {last_page}": f"/console/{tenant}?page={last_page}",
                "API keys": f"/console/{tenant}/keys",
                "audit log, newest 50": f"/console/{tenant}/audit",
                "audit log, action=token.denied": f"/console/{tenant}/audit?action=token.denied",
                "audit log, outcome=failure (none)": f"/console/{tenant}/audit?outcome=failure",
                "delegations": f"/console/{tenant}/delegations",
                "policies": f"/console/{tenant}/policies",
            }
            backend = "PostgreSQL" if args.postgres_url else "SQLite"
            print(f"{backend}, {args.agents} agents, {args.events} audit events, {args.repeat} requests per page")
            print("| page | median ms | p95 ms |")
            print("|---|---|---|")
            for name, path in pages.items():
                times = sorted(await timed(asgi, path, cookie, args.repeat))
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                print(f"| {name} | {statistics.median(times):.1f} | {p95:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--postgres-url", default="")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
