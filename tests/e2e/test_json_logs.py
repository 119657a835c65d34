"""Structured logs of a real ``agentauth serve`` (issue 16 item 6; ``api/logs.py``), its output going to a file as
in a container or under CI: quickstart, a token request and a refused one (a wrong API key). Every line the server
wrote - uvicorn's start-up and shutdown lines included - is one JSON object; each request has exactly one access
line (method, route template, status, duration, request id, client address) naming the id the response's
``X-Request-ID`` named; every line logged while a request was handled carries that request's id; and no line
holds the API key, the access token, the refresh token or the wrong key that was tried.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentauth.keys import generate_kek
from live_server import free_port, server_env, spawn

pytestmark = pytest.mark.slow

TOKEN = "/api/v1/auth/token"
QUICKSTART = "/api/v1/agents/quickstart"


def test_every_line_is_json_with_request_ids_and_no_secrets(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    server = spawn(server_env(tmp_path / "data", port, generate_kek(), None), port, log)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            registered = http.post(QUICKSTART, json={"name": "logged", "agent_type": "assistant"})
            assert registered.status_code == 201, registered.text
            api_key = registered.json()["api_key"]
            issued = http.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": api_key})
            assert issued.status_code == 200, issued.text
            wrong = api_key[:-1] + ("A" if api_key[-1] != "A" else "B")
            refused = http.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": wrong})
            assert refused.status_code == 401, refused.text
    finally:
        server.stop()  # everything flushed, shutdown lines included

    lines = log.read_text("utf-8").splitlines()
    entries: list[dict[str, Any]] = []
    for line in lines:
        entry = json.loads(line)  # raises on any line that is not JSON
        assert isinstance(entry, dict) and {"ts", "level", "logger", "msg"} <= entry.keys(), line
        entries.append(entry)
    assert any(e["logger"].startswith("uvicorn") for e in entries), "uvicorn's own lines go through the same format"

    answers = {
        "quickstart": (registered, "POST", QUICKSTART),
        "token": (issued, "POST", TOKEN),
        "refused": (refused, "POST", TOKEN),
    }
    ids = {what: response.headers["x-request-id"] for what, (response, _, _) in answers.items()}
    assert len(set(ids.values())) == len(ids), ids
    access = [e for e in entries if e["logger"] == "agentauth.access"]
    for what, (response, method, route) in answers.items():
        (line,) = [e for e in access if e["request_id"] == ids[what]]
        assert (line["method"], line["route"], line["status"]) == (method, route, response.status_code), line
        assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0, line
        assert line["client_ip"] == "127.0.0.1", line
    # The refusal's explanation (api/errors.py logs its private debug text) is logged while handling it.
    explained = [e for e in entries if e["logger"] == "agentauth.api" and "invalid_client" in e["msg"]]
    assert explained and all(e.get("request_id") == ids["refused"] for e in explained), explained
    # No line names a request id that is not one of a request's (the health probes of spawn have their own).
    health = {e["request_id"] for e in access if e["route"] == "/health"}
    for entry in entries:
        if "request_id" in entry:
            assert entry["request_id"] in set(ids.values()) | health, entry
        if entry["logger"].startswith("agentauth.") and entry["logger"] != "agentauth.access":
            handling = any(r[1] in entry["msg"] for r in answers.values())
            assert not handling or "request_id" in entry, f"a request's line without its id: {entry}"

    text = log.read_text("utf-8")
    secrets = {
        "API key": api_key,
        "wrong API key": wrong,
        "access token": issued.json()["access_token"],
        "refresh token": issued.json().get("refresh_token"),
        "quickstart access token": registered.json()["access_token"],
        "quickstart refresh token": registered.json()["refresh_token"],
    }
    assert secrets["API key"] and secrets["access token"] and secrets["quickstart refresh token"], secrets
    leaked = [name for name, secret in secrets.items() if secret and secret in text]
    assert not leaked, f"secrets in the server log: {leaked}"
