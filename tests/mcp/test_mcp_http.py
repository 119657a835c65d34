"""The /mcp endpoint as HTTP (issue 12, items 9 and 15): no response of it is ever stored by a cache - tool results
carry API keys and tokens, and REST already answers them ``no-store`` - and, being stateless, it serves POST only:
a GET gets a prompt 405 instead of an event stream held open for nobody."""

from __future__ import annotations

import time

import httpx
import httpx2
import pytest
from mcp_support import RunningServer, call, fail, http_session, secrets_of

pytestmark = pytest.mark.anyio

ACCEPT = "application/json, text/event-stream"
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
PROMPT_SECONDS = 5.0


def assert_no_store(headers: httpx.Headers | httpx2.Headers, what: str) -> None:
    assert headers.get("cache-control") == "no-store", (what, headers.get("cache-control"))
    assert headers.get("pragma") == "no-cache", (what, headers.get("pragma"))


async def test_answers_with_secrets_are_no_store_through_the_official_client(server: RunningServer) -> None:
    seen: list[httpx2.Response] = []

    async def record(response: httpx2.Response) -> None:
        seen.append(response)

    async with http_session(f"{server.url}/mcp", on_response=record) as session:
        registered = await call(session, "quickstart", name="no-store", agent_type="assistant")
        calls = len(seen)
        pair = await call(session, "authenticate", api_key=registered["api_key"])
        refreshed = await call(session, "refresh_token", refresh_token_value=pair["refresh_token"])
        token = refreshed["access_token"]
        key = await call(session, "create_credential", agent_id=registered["agent"]["id"], access_token=token)
        rotated = await call(session, "rotate_credential", credential_id=key["id"], access_token=token)
        await fail(session, "list_agents", access_token="not-a-token")
        server.secrets += secrets_of(registered, pair, refreshed, key, rotated)
    assert calls >= 2 and len(seen) >= calls + 5  # initialize, initialized, quickstart, then one per call
    for response in seen:
        assert_no_store(response.headers, f"{response.request.method} {response.status_code}")


async def test_refusals_of_the_transport_are_no_store_too(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=PROMPT_SECONDS) as http:
        answers = {
            "wrong accept": await http.post("/mcp", json=PING, headers={"Accept": "text/html"}),
            "rebound host": await http.post("/mcp", json=PING, headers={"Accept": ACCEPT, "Host": "rebound.example"}),
            "not json": await http.post(
                "/mcp", content=b"{", headers={"Accept": ACCEPT, "Content-Type": "application/json"}
            ),
            "GET": await http.get("/mcp", headers={"Accept": "text/event-stream"}),
        }
    assert answers["wrong accept"].status_code == 406 and answers["rebound host"].status_code == 421
    assert answers["not json"].status_code == 400
    for what, response in answers.items():
        assert_no_store(response.headers, what)


@pytest.mark.parametrize("path", ["/mcp", "/mcp/"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Mcp-Session-Id": "0123456789abcdef"}],
    ids=["anonymous", "with-token", "with-session-id"],
)
async def test_get_is_answered_at_once_with_405(server: RunningServer, path: str, headers: dict[str, str]) -> None:
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=server.url, timeout=PROMPT_SECONDS) as http:
        response = await http.get(path, headers={"Accept": "text/event-stream", **headers})
    assert time.monotonic() - started < PROMPT_SECONDS
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["message"].startswith("Method Not Allowed")


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
async def test_other_methods_are_405_and_name_post(server: RunningServer, method: str) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=PROMPT_SECONDS) as http:
        response = await http.request(method, "/mcp", headers={"Accept": ACCEPT})
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert_no_store(response.headers, method)
