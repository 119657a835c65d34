"""Console lists page through a large tenant: 230 agents are three pages of the agent tree (100, 100, 30), linked
next/previous, every agent on exactly one of them; a ``page`` that is not a number is the first page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live_server import LiveServer, start_issuer
from owner_support import ConsoleOwner

pytestmark = pytest.mark.slow
AGENTS = 229  # and the root


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = start_issuer(tmp_path)
    try:
        yield live
    finally:
        live.stop()


def test_the_agent_tree_pages(server: LiveServer) -> None:
    owner = ConsoleOwner(server.url, "owner@example.com", "big tenant")
    with httpx.Client(base_url=server.url) as http:
        token = http.post(
            "/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": owner.root_key}
        ).json()["access_token"]
        made = {
            http.post("/api/v1/agents", json={"name": f"a{i}", "agent_type": "tool"},
                      headers={"Authorization": f"Bearer {token}"}).json()["agent"]["id"]
            for i in range(AGENTS)
        }  # fmt: skip
    seen: list[str] = []
    path = f"/console/{owner.tenant}"
    for number, expected in enumerate((100, 100, 30)):
        page = owner.http.get(f"{path}?page={number}").text
        ids = re.findall(r'<li class=agent data-agent-id="([^"]+)"', page)
        assert len(ids) == expected, (number, len(ids))
        seen += ids
        assert ('rel=next href="' in page) == (number < 2) and ('rel=prev href="' in page) == (number > 0)
        assert f"{number * 100 + 1}-{number * 100 + expected} of 230" in page
    assert len(seen) == len(set(seen)) == 230 and made <= set(seen) and owner.tenant in seen
    assert re.findall(r'data-agent-id="([^"]+)"', owner.http.get(f"{path}?page=x").text)[:3] == seen[:3]
    owner.http.close()
