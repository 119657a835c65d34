"""Storage translates its own failures, once, for every adapter (issue 12 item 8; storage/failures.py).

Regression: on PostgreSQL two quickstarts with the same did:key both passed the "already registered?" read, one
insert then hit the unique index, and its ``IntegrityError`` reached REST's database handler: 503 and a
"database unavailable" warning - an outage logged for a duplicate registration. A taken unique value is a 409
``conflict`` on every backend and through every adapter (REST and MCP give the same answer).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import httpx
import pytest
from mcp.client import Client
from mcp.types import CallToolResult, TextContent

from agentauth.bootstrap import Services
from agentauth.did import encode_did_key
from agentauth.errors import Conflict, InvalidRequest, TemporarilyUnavailable
from agentauth.keys import KeyPair
from agentauth.mcp.embedded import EmbeddedBackend
from agentauth.mcp.server import build_server
from agentauth.storage.failures import translate

pytestmark = pytest.mark.anyio

CONCURRENT = 8
QUICKSTART = "/api/v1/agents/quickstart"
OUTAGE_LOGS = ("database unavailable", "unhandled error")


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if any(s in r.getMessage() for s in OUTAGE_LOGS)]


async def test_concurrent_quickstarts_of_one_did_key_are_one_201_and_409s(
    client: httpx.AsyncClient, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for attempt in range(3):  # a race: several rounds so the losers really reach the unique index
        did = encode_did_key(KeyPair.generate().public.raw)
        body = {"name": f"twin-{attempt}", "agent_type": "tool", "public_key": did}
        answers = await asyncio.gather(*(client.post(QUICKSTART, json=body) for _ in range(CONCURRENT)))
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {201: 1, 409: CONCURRENT - 1}, [(a.status_code, a.text) for a in answers]
        for answer in answers:
            if answer.status_code == 409:
                assert answer.json() == {
                    "error": "conflict",
                    "error_description": "an agent with this did:key is already registered",
                }
                assert answer.headers["cache-control"] == "no-store"
    assert outage_lines(caplog) == [], "a duplicate registration was logged as an outage"


async def test_concurrent_mcp_quickstarts_of_one_did_key_are_one_success_and_conflicts(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    did = encode_did_key(KeyPair.generate().public.raw)
    arguments: dict[str, Any] = {"name": "twin", "agent_type": "tool", "public_key": did}
    async with Client(build_server(EmbeddedBackend(lambda: services), token_in_header=False)) as mcp:
        results = await asyncio.gather(*(mcp.call_tool("quickstart", arguments) for _ in range(CONCURRENT)))
    assert sum(not r.is_error for r in results) == 1, [text_of(r) for r in results if r.is_error]
    for result in results:
        if result.is_error:
            assert text_of(result).startswith("conflict: an agent with this did:key is already registered."), text_of(
                result
            )
    assert outage_lines(caplog) == []


def test_the_one_translation_of_driver_failures() -> None:
    """What each adapter then maps (status and code are the AgentAuthError's own)."""
    from sqlalchemy.exc import DataError, IntegrityError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    cases: list[tuple[BaseException, type[Exception]]] = [
        (IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: agents.did")), Conflict),
        (DataError("SELECT", {}, Exception("value out of range")), InvalidRequest),
        (OperationalError("SELECT", {}, Exception("database is locked")), TemporarilyUnavailable),
        (PoolTimeoutError("QueuePool limit reached"), TemporarilyUnavailable),
        (ConnectionRefusedError(111, "Connection refused"), TemporarilyUnavailable),
        (TimeoutError(), TemporarilyUnavailable),
    ]
    for failure, expected in cases:
        assert type(translate(failure)) is expected, failure
    assert translate(ValueError("a bug")) is None  # not a storage failure: a 500, logged with its traceback
    assert translate(Conflict("on purpose")) is None
