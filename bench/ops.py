"""CPU per request of each operation, in process: the app called as ASGI (no socket, no HTTP parser), ``--concurrency``
requests in flight, on a fresh SQLite file (or ``--postgres-url``). What bench/load.py's mix and bench/read.py spend
per request, without the load generator and other processes in the figures (issue 13 diagnosis).

For each operation it prints requests/s at that concurrency, process CPU ms per request (every thread: the event
loop and aiosqlite's) and, with ``--profile DIR``, writes a cProfile of that operation's timed phase to
DIR/NAME.prof and prints the functions with the most cumulative time inside it (``--top``).

Run: .venv/bin/python bench/ops.py [--requests 2000] [--concurrency 32] [--only list,health,...]
     [--postgres-url URL] [--profile DIR]

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
import base64
import cProfile
import hashlib
import io
import itertools
import os
import pstats
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from agentauth.api.app import create_app
from agentauth.issuer.context import RequestContext
from agentauth.keys import KeyPair
from agentauth.settings import Settings
from agentauth.vc import create_agent_assertion
from rawhttp import new_event_loop
from server import reset_postgres

ISSUER = "http://127.0.0.1:8000"
CODE_REDIRECT = "http://127.0.0.1:9/callback"
TOKEN = "/api/v1/auth/token"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RESOURCE = "https://files.example.com/mcp"


class Asgi:
    """Calls an ASGI app the way uvicorn does, minus the socket: one http scope per request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.location = ""  # the Location of the last answer that had one

    async def call(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        json: Any = None,
        token: str | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> tuple[int, bytes]:
        headers = [(b"host", b"127.0.0.1:8000"), *(extra or [])]
        body = b""
        if form is not None:
            body = urlencode(form).encode()
            headers.append((b"content-type", b"application/x-www-form-urlencoded"))
        elif json is not None:
            body = orjson.dumps(json)
            headers.append((b"content-type", b"application/json"))
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        if token:
            headers.append((b"authorization", b"Bearer " + token.encode()))
        path_only, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path_only,
            "raw_path": path_only.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name == b"location":
                        self.location = value.decode()
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


def expect(answer: tuple[int, bytes], status: int) -> Any:
    if answer[0] != status:
        raise AssertionError(f"expected {status}, got {answer[0]}: {answer[1][:300]!r}")
    return orjson.loads(answer[1]) if answer[1] else None


class World:
    """A root agent with a child, an allow policy, API keys and stocks of tokens for the operations to use."""

    def __init__(self, asgi: Asgi) -> None:
        self.asgi = asgi
        self.refresh: list[str] = []
        self.revocable: list[str] = []
        self.keys: list[str] = []
        self.policies: list[str] = []
        self.assertions: list[dict[str, str]] = []
        self.codes: list[dict[str, str]] = []  # authorization_code redemption bodies

    async def prepare(self, stock: int) -> None:
        a = self.asgi
        root = expect(
            await a.call("POST", "/api/v1/agents/quickstart", json={"name": "ops", "agent_type": "orchestrator"}), 201
        )
        self.root_id = root["agent"]["id"]
        self.root_key = KeyPair.from_jwk(root["private_key_jwk"])
        self.token = root["access_token"]
        self.api_key = root["api_key"]
        child = expect(
            await a.call("POST", "/api/v1/agents", json={"name": "c", "agent_type": "tool"}, token=self.token), 201
        )
        self.child_id = child["agent"]["id"]
        child_key = KeyPair.from_jwk(child["private_key_jwk"])
        assertion = create_agent_assertion(child_key, audience=ISSUER + TOKEN, now=datetime.now(UTC))
        self.child_token = expect(
            await a.call("POST", TOKEN, form={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                              "assertion": assertion}), 200
        )["access_token"]  # fmt: skip
        policy = {"name": "docs", "effect": "allow", "subjects": {"agent_types": ["tool"]}, "actions": ["read"],
                  "resources": ["/docs/**"]}  # fmt: skip
        expect(await a.call("POST", "/api/v1/policies", json=policy, token=self.token), 201)
        for _ in range(3):
            expect(
                await a.call("POST", "/api/v1/agents", json={"name": "c", "agent_type": "tool"}, token=self.token), 201
            )
        self.live = expect(
            await a.call("POST", TOKEN, form={"grant_type": "client_credentials", "client_secret": self.api_key}), 200
        )["access_token"]
        # A registered resource server (RFC 8707), for the token_resource operation.
        server = {"identifier": RESOURCE, "name": "files", "scopes": [{"name": "files.read"}]}
        expect(await a.call("POST", "/api/v1/resource-servers", json=server, token=self.token), 201)

    async def stock_pairs(self, n: int, into: str, concurrency: int) -> None:
        async def one() -> None:
            pair = expect(
                await self.asgi.call(
                    "POST", TOKEN, form={"grant_type": "client_credentials", "client_secret": self.api_key}
                ),
                200,
            )
            if into == "refresh":
                self.refresh.append(pair["refresh_token"])
            else:
                self.revocable.append(pair["access_token"])

        await run_many(one, n, concurrency)

    async def private_key_jwt_token(self) -> None:
        expect(await self.asgi.call("POST", TOKEN, form=self.assertions.pop()), 200)

    async def stock_assertions(self, n: int) -> None:
        """``private_key_jwt`` client_credentials bodies (RFC 7523 section 2.2), a fresh assertion each."""
        self.assertions = [
            {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE,
             "client_assertion": create_agent_assertion(self.root_key, audience=ISSUER + TOKEN, now=datetime.now(UTC),
                                                        client_id=self.root_id)}
            for _ in range(n)
        ]  # fmt: skip

    async def prepare_consent(self) -> None:
        """An owner with a session and a tenant, a public client (RFC 7591), and the consent form's fields: what
        the ``authorize`` operation posts (the owner's decision) and ``stock_codes`` mints codes with."""
        services = self.asgi.app.state.services
        ctx = RequestContext()
        email = f"ops-{os.getpid()}@example.com"
        await services.owners.signup(email, "ops password 1234", ctx)
        login = await services.owners.login(email, "ops password 1234", ctx)
        await services.owners.create_tenant(login.session, "ops tenant", ctx)
        client = expect(await self.asgi.call("POST", "/api/v1/auth/register", json={
            "redirect_uris": [CODE_REDIRECT], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"], "client_name": "ops"}), 201)  # fmt: skip
        self.client_id = client["client_id"]
        agents = await services.owners.agents(login.session.owner.id)
        self.consent_form = {"response_type": "code", "client_id": self.client_id, "redirect_uri": CODE_REDIRECT,
                        "code_challenge_method": "S256", "csrf_token": login.session.csrf_token, "decision": "allow",
                        "act_as": f"owner:{agents[0].id}"}  # fmt: skip
        self.cookie = [(b"cookie", f"agentauth_session={login.session_token}".encode()), (b"origin", ISSUER.encode())]

    async def consent(self) -> str:
        """One consent POST; the code's redemption body."""
        verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        form = self.consent_form | {"code_challenge": challenge}
        status, _ = await self.asgi.call("POST", "/authorize", form=form, extra=self.cookie)
        assert status == 303, status
        code = parse_qs(urlsplit(self.asgi.location).query)["code"][0]
        self.codes.append({"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                           "redirect_uri": CODE_REDIRECT, "client_id": self.client_id})  # fmt: skip
        return code

    async def stock_codes(self, n: int, concurrency: int) -> None:
        async def one() -> None:
            await self.consent()

        await run_many(one, n, concurrency)

    async def stock_keys(self, n: int, concurrency: int) -> None:
        async def one() -> None:
            key = expect(await self.asgi.call("POST", "/api/v1/credentials", json={"name": "k"}, token=self.token), 201)
            self.keys.append(key["id"])

        await run_many(one, n, concurrency)

    async def stock_policies(self, n: int, concurrency: int) -> None:
        async def one() -> None:
            policy = expect(await self.asgi.call("POST", "/api/v1/policies", json=policy_body(), token=self.token), 201)
            self.policies.append(policy["id"])

        await run_many(one, n, concurrency)


def policy_body() -> dict[str, Any]:
    return {"name": "p", "effect": "allow", "subjects": {"agent_types": ["tool"]}, "actions": ["read"],
            "resources": ["/other/**"]}  # fmt: skip


async def run_many(one: Callable[[], Awaitable[None]], n: int, concurrency: int) -> None:
    counter = itertools.count()

    async def lane() -> None:
        while next(counter) < n:
            await one()

    await asyncio.gather(*(lane() for _ in range(concurrency)))


def operations(w: World) -> dict[str, tuple[Callable[[], Awaitable[None]], Callable[[int], Awaitable[None]] | None]]:
    """name -> (one request, what to stock first for n requests)."""
    a = w.asgi
    cc_form = {"grant_type": "client_credentials", "client_secret": w.api_key}
    resource_form = cc_form | {"resource": RESOURCE}

    async def health() -> None:
        expect(await a.call("GET", "/health"), 200)

    async def list_agents() -> None:
        expect(await a.call("GET", "/api/v1/agents", token=w.token), 200)

    async def get_agent() -> None:
        expect(await a.call("GET", f"/api/v1/agents/{w.child_id}", token=w.token), 200)

    async def token() -> None:
        expect(await a.call("POST", TOKEN, form=cc_form), 200)

    async def token_resource() -> None:
        expect(await a.call("POST", TOKEN, form=resource_form), 200)

    async def introspect() -> None:
        expect(await a.call("POST", "/api/v1/auth/introspect", form={"token": w.live}, token=w.token), 200)

    async def check_permission() -> None:
        body = {"agent_id": w.child_id, "action": "read", "resource": "/docs/1"}
        expect(await a.call("POST", "/api/v1/policies/evaluate", json=body, token=w.token), 200)

    async def quickstart() -> None:
        expect(await a.call("POST", "/api/v1/agents/quickstart", json={"name": "q", "agent_type": "tool"}), 201)

    async def refresh() -> None:
        pair = expect(
            await a.call("POST", TOKEN, form={"grant_type": "refresh_token", "refresh_token": w.refresh.pop()}), 200
        )
        del pair

    async def revoke() -> None:
        expect(await a.call("POST", "/api/v1/auth/revoke", form={"token": w.revocable.pop()}, token=w.token), 200)

    async def delegation_create() -> None:
        body = {"delegate_agent_id": w.child_id, "scopes": ["agents.read"], "expires_in_hours": 1}
        expect(await a.call("POST", "/api/v1/delegations", json=body, token=w.token), 201)

    async def delegate_and_exchange() -> None:
        body = {"delegate_agent_id": w.child_id, "scopes": ["agents.read"], "expires_in_hours": 1}
        credential = expect(await a.call("POST", "/api/v1/delegations", json=body, token=w.token), 201)["credential"]
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": credential,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "actor_token": w.child_token,
            "actor_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }
        expect(await a.call("POST", TOKEN, form=form), 200)

    async def authorize() -> None:
        await w.consent()

    async def authorization_code() -> None:
        expect(await a.call("POST", TOKEN, form=w.codes.pop()), 200)

    async def api_key_create() -> None:
        expect(await a.call("POST", "/api/v1/credentials", json={"name": "k"}, token=w.token), 201)

    async def api_key_rotate() -> None:
        expect(await a.call("POST", f"/api/v1/credentials/{w.keys.pop()}/rotate", token=w.token), 200)

    async def policy_create() -> None:
        expect(await a.call("POST", "/api/v1/policies", json=policy_body(), token=w.token), 201)

    async def policy_update() -> None:
        expect(await a.call("PUT", f"/api/v1/policies/{w.policies[0]}", json=policy_body(), token=w.token), 200)

    async def policy_delete() -> None:
        expect(await a.call("DELETE", f"/api/v1/policies/{w.policies.pop()}", token=w.token), 204)

    conc = 8
    return {
        "health": (health, None),
        "list": (list_agents, None),
        "get_agent": (get_agent, None),
        "token": (token, None),
        "token_private_key_jwt": (w.private_key_jwt_token, w.stock_assertions),
        "token_resource": (token_resource, None),
        "introspect": (introspect, None),
        "check_permission": (check_permission, None),
        "quickstart": (quickstart, None),
        "refresh": (refresh, lambda n: w.stock_pairs(n, "refresh", conc)),
        "revoke": (revoke, lambda n: w.stock_pairs(n, "revoke", conc)),
        "delegation_create": (delegation_create, None),
        "delegate_exchange": (delegate_and_exchange, None),
        "authorize": (authorize, None),  # an owner's consent POST (decision=allow): one code
        "authorization_code": (authorization_code, lambda n: w.stock_codes(n, conc)),
        "api_key_create": (api_key_create, None),
        "api_key_rotate": (api_key_rotate, lambda n: w.stock_keys(n, conc)),
        "policy_create": (policy_create, None),
        "policy_update": (policy_update, lambda n: w.stock_policies(max(1, n // 20), conc)),
        "policy_delete": (policy_delete, lambda n: w.stock_policies(n, conc)),
    }


def start_spy(directory: Path, name: str, gil: bool) -> subprocess.Popen[bytes]:
    """py-spy this very process into DIR/NAME.txt (collapsed stacks) until SIGINT; ``gil``: only the thread holding
    the GIL (where the CPU goes), else every non-idle thread."""
    directory.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(os.getpid()), "--rate", "500", "--format", "raw", "--nonblocking"]
    command += ["--output", str(directory / f"{name}.txt"), *(["--gil"] if gil else [])]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach
    return process


def cumulative(profile: cProfile.Profile, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="agentauth-ops-") as tmp:
        if args.postgres_url:
            await reset_postgres(args.postgres_url)
        settings = Settings(
            data_dir=Path(tmp),
            issuer_url=ISSUER,
            database_url=args.postgres_url or None,
            token_rate_per_ip=100_000_000,
            token_rate_per_client=100_000_000,
            quickstart_rate_per_ip=100_000_000,
        )
        app = create_app(settings)
        asgi = Asgi(app)
        async with app.router.lifespan_context(app):
            world = World(asgi)
            await world.prepare(args.requests)
            await world.prepare_consent()
            ops = operations(world)
            names = args.only.split(",") if args.only else list(ops)
            print(f"| operation | req/s (concurrency {args.concurrency}) | CPU ms/request | wall ms/request |")
            print("|---|---:|---:|---:|")
            for name in names:
                one, stock = ops[name]
                n = args.requests
                if stock is not None:
                    await stock(n + args.warmup)
                await run_many(one, args.warmup, args.concurrency)
                profile = cProfile.Profile() if args.profile else None
                spy = start_spy(args.spy, name, args.gil) if args.spy else None
                cpu0, wall0 = time.process_time(), time.perf_counter()
                if profile:
                    profile.enable()
                await run_many(one, n, args.concurrency)
                if profile:
                    profile.disable()
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(timeout=30)
                print(f"| {name} | {n / wall:,.0f} | {1000 * cpu / n:.2f} | {1000 * wall / n:.2f} |", flush=True)
                if profile:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    profile.dump_stats(str(args.profile / f"{name}.prof"))
                    if args.top:
                        print(cumulative(profile, args.top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per operation")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per operation first")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", default="", help="comma-separated operation names")
    parser.add_argument("--postgres-url", default="", help="PostgreSQL instead of SQLite (its schema is dropped)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR", help="cProfile each operation")
    parser.add_argument("--spy", type=Path, default=None, metavar="DIR", help="py-spy each operation's timed phase")
    parser.add_argument("--gil", action="store_true", help="with --spy: sample only the thread holding the GIL")
    parser.add_argument("--top", type=int, default=0, help="with --profile: print this many cumulative lines")
    parser.add_argument(
        "--switch-interval", type=float, default=0.0, help="sys.setswitchinterval (s) for the run (0: Python's 5 ms)"
    )
    args = parser.parse_args()
    if args.switch_interval > 0:
        sys.setswitchinterval(args.switch_interval)
    os.environ.pop("AGENTAUTH_DATABASE_URL", None)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main_async(args))


if __name__ == "__main__":
    main()
