"""Resource-server integration: the FastAPI dependency, the ASGI middleware and the MCP token verifier answer
200 / 401 / 403 / 503 with the right ``WWW-Authenticate`` (RFC 6750 section 3), in process.

No ``from __future__ import annotations`` here: FastAPI resolves route annotations, and these use locals.
"""

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from sdk_support import ISSUER_URL, RESOURCE, FakeIssuer

from agentauth.sdk import AsyncOnlineVerifier, OnlineVerifier, offline_verifier
from agentauth.sdk.asgi import BearerAuthMiddleware
from agentauth.sdk.bearer import BearerError, bearer_token
from agentauth.sdk.fastapi import install, require_scopes
from agentauth.vc import StaticStatusLists, VerifiedToken

pytestmark = pytest.mark.anyio


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_app(verifier: Any, *, installed: bool = True) -> FastAPI:
    app = FastAPI()
    if installed:
        install(app, verifier, resource_metadata="https://api.test/.well-known/oauth-protected-resource")
    explicit = {} if installed else {"verifier": verifier}

    @app.get("/read")
    async def read(token: Annotated[VerifiedToken, Depends(require_scopes("api.read", **explicit))]) -> dict[str, Any]:
        return {"sub": token.subject}

    @app.get("/write")
    async def write(
        token: Annotated[VerifiedToken, Depends(require_scopes("api.write", **explicit))],
    ) -> dict[str, Any]:
        return {"sub": token.subject}

    return app


@contextlib.asynccontextmanager
async def client_for(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.test") as http:
        yield http


def online(issuer: FakeIssuer) -> AsyncOnlineVerifier:
    return AsyncOnlineVerifier(
        ISSUER_URL,
        resource=RESOURCE,
        http=issuer.async_client(),
        clock=issuer.time.now,
        monotonic=issuer.time.monotonic,
    )


async def test_fastapi_dependency_allows_and_refuses_with_rfc6750_challenges() -> None:
    issuer = FakeIssuer()
    app = make_app(online(issuer))
    token, claims = issuer.token(("api.read",))
    async with client_for(app) as http:
        ok = await http.get("/read", headers=bearer(token))
        assert ok.status_code == 200 and ok.json() == {"sub": claims["sub"]}

        missing = await http.get("/read")
        assert missing.status_code == 401
        # Section 3.1: no error code when the request carried no credentials at all.
        assert missing.headers["www-authenticate"] == (
            'Bearer realm="agentauth", resource_metadata="https://api.test/.well-known/oauth-protected-resource"'
        )
        assert missing.json()["error"] == "invalid_token"

        garbage = await http.get("/read", headers=bearer("not.a.token"))
        assert garbage.status_code == 401
        assert 'error="invalid_token"' in garbage.headers["www-authenticate"]
        assert garbage.json() == {
            "error": "invalid_token",
            "error_description": "the access token is invalid, expired or revoked",
        }

        scope = await http.get("/write", headers=bearer(token))
        assert scope.status_code == 403
        challenge = scope.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge and 'scope="api.write"' in challenge
        assert scope.json()["error"] == "insufficient_scope"

        issuer.revoke(claims)
        issuer.time.advance(issuer.ttl + 1)
        revoked = await http.get("/read", headers=bearer(token))
        assert revoked.status_code == 401 and 'error="invalid_token"' in revoked.headers["www-authenticate"]


async def test_issuer_unreachable_is_503_with_retry_after() -> None:
    issuer = FakeIssuer()
    issuer.down = True
    app = make_app(online(issuer))
    async with client_for(app) as http:
        response = await http.get("/read", headers=bearer(issuer.token()[0]))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "temporarily_unavailable"


async def test_dependency_without_install_still_answers_with_headers() -> None:
    issuer = FakeIssuer()
    lists = StaticStatusLists({"https://issuer.test/api/v1/status-lists/1": issuer.list_jwt})
    verifier = offline_verifier(issuer.ring.jwks(), resource=RESOURCE, issuer_url=ISSUER_URL, status_source=lists)
    app = make_app(verifier, installed=False)
    async with client_for(app) as http:
        ok = await http.get("/read", headers=bearer(issuer.token()[0]))
        refused = await http.get("/write", headers=bearer(issuer.token()[0]))
    assert ok.status_code == 200
    assert refused.status_code == 403 and 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert refused.json() == {"detail": "this request needs the scope api.write"}


async def test_sync_online_verifier_works_from_async_code() -> None:
    issuer = FakeIssuer()
    verifier = OnlineVerifier(
        ISSUER_URL, resource=RESOURCE, http=issuer.client(), clock=issuer.time.now, monotonic=issuer.time.monotonic
    )
    app = make_app(verifier)
    async with client_for(app) as http:
        assert (await http.get("/read", headers=bearer(issuer.token()[0]))).status_code == 200


class CountingAuthority:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def verify_access_token(self, token: str, *, audience: str | None = None) -> VerifiedToken:
        self.calls += 1
        result: VerifiedToken = self.inner.verify_access_token(token, audience=audience)
        return result


async def test_asgi_middleware_guards_everything_but_excluded_paths() -> None:
    issuer = FakeIssuer()
    authority = CountingAuthority(
        offline_verifier(issuer.ring.jwks(), resource=RESOURCE, issuer_url=ISSUER_URL, check_status=False)
    )
    inner = FastAPI()
    install(inner, authority)

    @inner.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @inner.get("/data")
    async def data(request: Request) -> dict[str, Any]:
        token: VerifiedToken = request.state.agentauth_token
        return {"sub": token.subject}

    @inner.get("/admin")
    async def admin(token: Annotated[VerifiedToken, Depends(require_scopes("api.write"))]) -> dict[str, str]:
        return {"sub": token.subject}

    app = BearerAuthMiddleware(inner, authority, required_scopes=["api.read"], exclude_paths=["/health"])
    reader, claims = issuer.token(("api.read",))
    outsider, _ = issuer.token(("agents.read",))
    async with client_for(app) as http:
        assert (await http.get("/health")).status_code == 200
        none = await http.get("/data")
        assert none.status_code == 401 and none.headers["www-authenticate"] == 'Bearer realm="agentauth"'
        assert none.headers["cache-control"] == "no-store"
        ok = await http.get("/data", headers=bearer(reader))
        assert ok.status_code == 200 and ok.json() == {"sub": claims["sub"]}
        lacking = await http.get("/data", headers=bearer(outsider))
        assert lacking.status_code == 403
        assert 'error="insufficient_scope", error_description=' in lacking.headers["www-authenticate"]
        assert 'scope="api.read"' in lacking.headers["www-authenticate"]
        calls = authority.calls
        # Behind the middleware the dependency checks scopes on the already verified token: no second verify.
        admin = await http.get("/admin", headers=bearer(reader))
        assert admin.status_code == 403 and 'scope="api.write"' in admin.headers["www-authenticate"]
        assert authority.calls == calls + 1


async def test_asgi_middleware_closes_unauthenticated_websockets() -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("must not be reached")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    issuer = FakeIssuer()
    middleware = BearerAuthMiddleware(
        app, offline_verifier(issuer.ring.jwks(), resource=RESOURCE, issuer_url=ISSUER_URL)
    )
    await middleware({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "unauthorized"}]


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer  abc.def.ghi ", "abc.def.ghi"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer a b", None),
        (None, None),
    ],
)
def test_bearer_header_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_challenge_quotes_are_escaped() -> None:
    refusal = BearerError(401, "invalid_token", 'bad "token"')
    assert refusal.www_authenticate('my "realm"') == (
        'Bearer realm="my \'realm\'", error="invalid_token", error_description="bad \'token\'"'
    )


async def test_mcp_token_verifier_protects_an_mcp_server() -> None:
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import MCPServer

    from agentauth.sdk.mcp_auth import AgentAuthTokenVerifier

    issuer = FakeIssuer()
    verifier = AgentAuthTokenVerifier(online(issuer))
    server: MCPServer[Any] = MCPServer(
        "reports",
        token_verifier=verifier,
        auth=AuthSettings(
            issuer_url=ISSUER_URL,
            resource_server_url="https://mcp.test/mcp",
            required_scopes=["api.read"],
            validate_token_resource=False,
        ),
    )

    @server.tool()
    def ping() -> str:
        return "pong"

    app = server.streamable_http_app()
    token, claims = issuer.token(("api.read",))
    access = await verifier.verify_token(token)
    assert access is not None
    assert access.client_id == "agt_test" and access.scopes == ["api.read"] and access.subject == claims["sub"]
    assert access.expires_at == claims["exp"] and access.claims is not None
    assert await verifier.verify_token("nope") is None

    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as http,
    ):
        anonymous = await http.post("/mcp", json=initialize, headers=headers)
        assert anonymous.status_code == 401
        assert 'error="invalid_token"' in anonymous.headers["www-authenticate"]
        wrong_scope = await http.post(
            "/mcp", json=initialize, headers=headers | bearer(issuer.token(("agents.read",))[0])
        )
        assert wrong_scope.status_code == 403
        assert 'error="insufficient_scope"' in wrong_scope.headers["www-authenticate"]
        allowed = await http.post("/mcp", json=initialize, headers=headers | bearer(token))
        assert allowed.status_code == 200, allowed.text
