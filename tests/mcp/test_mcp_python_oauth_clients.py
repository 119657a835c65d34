"""The official Python MCP SDK's OAuth clients against third-party MCP servers (tests/mcp/third_party_mcp_server.py:
the official Python SDK, verifying with agentauth.sdk, RFC 9728 metadata naming AgentAuth) that a tenant registered
as resource servers; ``agentauth serve`` on SQLite and PostgreSQL (issue 14, must show):

* ``ClientCredentialsOAuthProvider`` (the tenant root agent's id and API key, client_secret_basic);
* ``OAuthClientProvider`` - authorization code + PKCE - once with RFC 7591 dynamic registration and once with a
  Client ID Metadata Document served over https from 127.0.0.1 (its CA handed to AgentAuth with
  AGENTAUTH_CIMD_CA_BUNDLE); the browser steps (login, consent) by headless Chromium.

Each obtains a token whose ``aud`` is the first server, calls its tool, and the same token sent to the second
server gets 401; for the code flow a refresh keeps ``aud``, ``sub`` (the owner) and ``act`` (the agent).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp_support import RunningServer, start_server

import browser_support
import owner_support
from live_server import LiveServer, free_port, start_uvicorn, wait_until_up
from mcp import ClientSession
from support import BACKENDS, POSTGRES_URL, bearer, reset_postgres

HERE = Path(__file__).parent
SCOPES = [{"name": "files.read", "description": "Read files"}, {"name": "files.write"}]
EMAIL = "sdk-owner@example.com"


@dataclass
class MemoryStorage:
    """The SDK's ``TokenStorage``, in memory."""

    tokens: OAuthToken | None = None
    client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@dataclass
class Deployment:
    issuer: RunningServer
    servers: list[LiveServer]
    root: dict[str, Any]  # the owner's tenant root: agent id, API key
    cimd_url: str
    redirect_uri: str
    callbacks: list[str] = field(default_factory=list)

    def resource(self, index: int) -> str:
        return f"{self.servers[index].url}/mcp"


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(
    handler: type[BaseHTTPRequestHandler], port: int, context: ssl.SSLContext | None = None
) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    if context is not None:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for the IP 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cimd test host")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp / "cimd-cert.pem", tmp / "cimd-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture(scope="module", params=BACKENDS)
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    browser_support.require_browser()
    tmp = tmp_path_factory.mktemp(f"python-oauth-{request.param}")
    cert, key = self_signed(tmp)
    cimd_port, callback_port = free_port(), free_port()
    cimd_url = f"https://127.0.0.1:{cimd_port}/client.json"
    redirect_uri = f"http://127.0.0.1:{callback_port}/callback"
    document = {"client_id": cimd_url, "client_name": "Python SDK (CIMD)", "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                "token_endpoint_auth_method": "none"}  # fmt: skip
    callbacks: list[str] = []

    class Document(_Quiet):
        def do_GET(self) -> None:
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Callback(_Quiet):
        def do_GET(self) -> None:
            callbacks.append(f"http://127.0.0.1:{callback_port}{self.path}")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"done")

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    hosts = [serve(Document, cimd_port, context), serve(Callback, callback_port)]
    settings = {"AGENTAUTH_CIMD_ALLOW_LOOPBACK": "true", "AGENTAUTH_CIMD_CA_BUNDLE": str(cert)}
    if request.param == "postgres":
        asyncio.run(reset_postgres())
        settings["AGENTAUTH_DATABASE_URL"] = POSTGRES_URL
    issuer = start_server(tmp, **settings)
    servers: list[LiveServer] = []
    try:
        for index in range(2):
            port = free_port()
            env = {"AGENTAUTH_ISSUER_URL": issuer.url, "MCP_RESOURCE_URL": f"http://127.0.0.1:{port}/mcp"}
            workdir = tmp / f"mcp-server-{index}"
            workdir.mkdir()
            servers.append(start_uvicorn(workdir, HERE, "third_party_mcp_server:app", env, port=port, wait=False))
        for server in servers:
            wait_until_up(server, "/.well-known/oauth-protected-resource/mcp")
        api_key = owner_support.sign_up_owner(issuer.url, EMAIL)
        token = httpx.post(f"{issuer.url}/api/v1/auth/token",
                           data={"grant_type": "client_credentials", "client_secret": api_key}).json()  # fmt: skip
        asked = {"token": token["access_token"], "client_secret": api_key}
        agent_id = httpx.post(f"{issuer.url}/api/v1/auth/introspect", data=asked).json()["agent_id"]
        issuer.secrets += [api_key, token["access_token"]]
        for server in servers:
            registration = {"identifier": f"{server.url}/mcp", "name": "files", "kind": "mcp", "scopes": SCOPES}
            created = httpx.post(
                f"{issuer.url}/api/v1/resource-servers", json=registration, headers=bearer(token["access_token"])
            )
            assert created.status_code == 201, created.text
        yield Deployment(issuer, servers, {"id": agent_id, "api_key": api_key}, cimd_url, redirect_uri, callbacks)
    finally:
        for server in servers:
            server.stop()
        issuer.stop()
        for host in hosts:
            host.shutdown()
            host.server_close()
    log = issuer.log_text()
    assert not [s for s in issuer.secrets if s in log], "a secret reached the server log"


async def call_whoami(url: str, auth: httpx2.Auth) -> dict[str, Any]:
    async with (
        httpx2.AsyncClient(auth=auth, timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("whoami", {})
        assert not result.is_error, result
        structured = result.structured_content or json.loads(result.content[0].text)  # type: ignore[union-attr]
        return dict(structured.get("result", structured))


def replayed_status(url: str, token: str) -> httpx.Response:
    client = {"name": "replay", "version": "1"}
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": client}
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    return httpx.post(url, json=initialize, headers=bearer(token) | {"Accept": "application/json, text/event-stream"})


def test_client_credentials_provider(deployment: Deployment) -> None:
    storage = MemoryStorage()
    auth = ClientCredentialsOAuthProvider(
        server_url=deployment.resource(0), storage=storage, client_id=deployment.root["id"],
        client_secret=deployment.root["api_key"], issuer=deployment.issuer.url,
    )  # fmt: skip
    seen = asyncio.run(call_whoami(deployment.resource(0), auth))
    assert seen["aud"] == deployment.resource(0) and seen["client_id"] == deployment.root["id"]
    assert storage.tokens is not None
    deployment.issuer.secrets.append(storage.tokens.access_token)
    refused = replayed_status(deployment.resource(1), storage.tokens.access_token)
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]


def code_flow(deployment: Deployment, client_metadata_url: str | None) -> tuple[dict[str, Any], MemoryStorage]:
    storage = MemoryStorage()
    visited: list[str] = []

    async def redirect_handler(authorization_url: str) -> None:
        visit = await asyncio.to_thread(
            browser_support.authorize, authorization_url, deployment.redirect_uri, EMAIL, owner_support.PASSWORD
        )
        visited.append(visit.final_url)

    async def callback_handler() -> AuthorizationCodeResult:
        query = parse_qs(urlsplit(visited[-1]).query)
        return AuthorizationCodeResult(
            code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
        )

    metadata = OAuthClientMetadata(
        redirect_uris=[deployment.redirect_uri], token_endpoint_auth_method="none", client_name="Python SDK (DCR)",
        grant_types=["authorization_code", "refresh_token"], response_types=["code"],
    )  # fmt: skip
    auth = OAuthClientProvider(
        server_url=deployment.resource(0), client_metadata=metadata, storage=storage,
        redirect_handler=redirect_handler, callback_handler=callback_handler, client_metadata_url=client_metadata_url,
    )  # fmt: skip
    seen = asyncio.run(call_whoami(deployment.resource(0), auth))
    assert visited and "iss=" in visited[-1]
    return seen, storage


@pytest.mark.parametrize("registration", ["dcr", "cimd"])
def test_authorization_code_provider(deployment: Deployment, registration: str) -> None:
    seen, storage = code_flow(deployment, deployment.cimd_url if registration == "cimd" else None)
    assert storage.tokens is not None and storage.client is not None
    client_id = storage.client.client_id
    if registration == "cimd":
        assert client_id == deployment.cimd_url
    else:
        assert client_id is not None and client_id.startswith("cli_")
    assert seen["aud"] == deployment.resource(0) and seen["client_id"] == client_id
    deployment.issuer.secrets += [storage.tokens.access_token, storage.tokens.refresh_token or ""]
    claims = httpx.post(f"{deployment.issuer.url}/api/v1/auth/introspect",
                        data={"token": storage.tokens.access_token,
                              "client_secret": deployment.root["api_key"]}).json()  # fmt: skip
    refused = replayed_status(deployment.resource(1), storage.tokens.access_token)
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
    # Refresh keeps the audience (and who the token is for, and through which client).
    form = {"grant_type": "refresh_token", "refresh_token": storage.tokens.refresh_token, "client_id": client_id}
    renewed = httpx.post(f"{deployment.issuer.url}/api/v1/auth/token", data=form)
    assert renewed.status_code == 200, renewed.text
    deployment.issuer.secrets += [renewed.json()["access_token"], renewed.json()["refresh_token"]]
    again = httpx.post(f"{deployment.issuer.url}/api/v1/auth/introspect",
                       data={"token": renewed.json()["access_token"],
                             "client_secret": deployment.root["api_key"]}).json()  # fmt: skip
    assert claims["active"] is True and again["active"] is True
    for name in ("aud", "sub", "client_id", "scope"):
        assert again[name] == claims[name], (name, claims, again)
