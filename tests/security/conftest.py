"""The attack catalogue's ``world`` fixture: a fresh victim-and-attacker world (``security_support.World``), built
through the REST API for each test that asks for it."""

from __future__ import annotations

import httpx
import pytest
from security_support import World, make_world


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    return await make_world(client)
