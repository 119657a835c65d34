"""The harness of test_mcp_authorization_conformance.py on its own: the official conformance suite, headless
Chromium and the suite's loopback callback, against a stand-in authorization server that serves the page contract
tests/browser_support.py assumes (login form with ``email`` and ``password``, consent button ``decision=allow``).

So a broken Chromium, Playwright or suite install, or a change in how the suite prints its authorization URL,
fails here - not only once AgentAuth's own authorization endpoint is behind it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from conformance_support import run_code_grant, suite_cli

from browser_support import require_browser
from live_server import free_port

EMAIL, PASSWORD = "owner@example.com", "correct horse battery staple"
CLIENT_ID = "conformance-client"


@dataclass
class StandIn:
    """What the stand-in authorization server saw."""

    issuer: str
    logins: list[dict[str, str]] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    pending: dict[str, dict[str, str]] = field(default_factory=dict)  # request id -> authorization request
    codes: dict[str, dict[str, str]] = field(default_factory=dict)  # code -> authorization request


def handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def send(self, status: int, body: str, content_type: str, **headers: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(data)

        def redirect(self, location: str) -> None:
            self.send(303, "", "text/plain", Location=location)

        def page(self, form: str) -> None:
            self.send(200, f"<!doctype html><html><body>{form}</body></html>", "text/html; charset=utf-8")

        def form(self) -> dict[str, str]:
            length = int(self.headers.get("Content-Length", "0"))
            return {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/.well-known/oauth-authorization-server":
                base = stand_in.issuer
                metadata = {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/authorize",
                    "token_endpoint": f"{base}/token",
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": ["none"],
                    "client_id_metadata_document_supported": True,
                }
                self.send(200, json.dumps(metadata), "application/json")
            elif url.path == "/authorize":
                request_id = secrets.token_urlsafe(8)
                stand_in.pending[request_id] = query
                self.redirect(f"/login?req={request_id}")
            elif url.path == "/login":
                action = html.escape(f"/login?req={query['req']}")
                self.page(
                    f'<form method="post" action="{action}"><input name="email"><input name="password" '
                    'type="password"><button type="submit">Log in</button></form>'
                )
            elif url.path == "/consent":
                action = html.escape(f"/consent?req={query['req']}")
                self.page(
                    f'<form method="post" action="{action}"><button name="decision" value="deny">Deny</button>'
                    '<button name="decision" value="allow">Allow</button></form>'
                )
            else:
                self.send(404, "not found", "text/plain")

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            form = self.form()
            if url.path == "/login":
                stand_in.logins.append(form)
                self.redirect(f"/consent?req={query['req']}")
            elif url.path == "/consent":
                stand_in.decisions.append(form.get("decision", ""))
                request = stand_in.pending.pop(query["req"])
                code = secrets.token_urlsafe(16)
                stand_in.codes[code] = request
                answer = {"code": code, "state": request["state"], "iss": stand_in.issuer}
                self.redirect(f"{request['redirect_uri']}?{urlencode(answer)}")
            elif url.path == "/token":
                stand_in.token_requests.append(form)
                request = stand_in.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "").encode()
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
                if (
                    request is None
                    or challenge != request["code_challenge"]
                    or form.get("redirect_uri") != request["redirect_uri"]
                    or form.get("client_id") != request["client_id"]
                ):
                    self.send(400, json.dumps({"error": "invalid_grant"}), "application/json", Cache_Control="no-store")
                    return
                token = {"access_token": secrets.token_urlsafe(32), "token_type": "Bearer", "expires_in": 300}
                self.send(200, json.dumps(token), "application/json", Cache_Control="no-store")
            else:
                self.send(404, "not found", "text/plain")

    return Handler


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    port = free_port()
    seen = StandIn(issuer=f"http://127.0.0.1:{port}")
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(seen))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_suite_and_browser_complete_a_code_grant(stand_in: StandIn, tmp_path: Path) -> None:
    suite_cli()
    require_browser()
    callback_port = free_port()
    resource = "https://mcp.example.com/mcp"

    run = run_code_grant(stand_in.issuer, CLIENT_ID, callback_port, tmp_path, (EMAIL, PASSWORD), resource=resource)

    assert run.returncode == 0, run.output
    assert [(c["id"], c["status"]) for c in run.checks] == [
        ("authorization-server-metadata", "SUCCESS"),
        ("authorization-server-metadata-cimd", "SUCCESS"),
        ("authorization-code-grant", "SUCCESS"),
    ], run.output
    # the browser filled the login form and pressed allow (not deny), once each
    assert stand_in.logins == [{"email": EMAIL, "password": PASSWORD}]
    assert stand_in.decisions == ["allow"]
    # the suite's authorization request and token request, as CONFORMANCE_NOTES.md describes them
    request = dict(query_params(run.authorization_url))
    redirect_uri = f"http://127.0.0.1:{callback_port}/callback"
    assert request["response_type"] == "code" and request["code_challenge_method"] == "S256"
    assert request["client_id"] == CLIENT_ID and request["redirect_uri"] == redirect_uri
    assert request["resource"] == resource and "scope" not in request
    (token_request,) = stand_in.token_requests
    assert set(token_request) == {"grant_type", "code", "redirect_uri", "code_verifier", "resource", "client_id"}
    assert token_request["grant_type"] == "authorization_code" and token_request["resource"] == resource
    assert run.visit.final_url.startswith(redirect_uri + "?")
    assert run.checks[-1]["details"]["authorizationResponseUrl"] == run.visit.final_url


def query_params(url: str) -> list[tuple[str, str]]:
    return [(k, v) for k, values in parse_qs(urlsplit(url).query).items() for v in values]
