"""Every SQLite write path recovers by itself once the file is writable again (issue 12 item 14, fourth bullet).

Regression: after the database file had been read-only, token and revoke (the hot path, which drops its
connection after any error and reopens it) recovered, while refresh and quickstart (the ORM path) kept answering
503 until a restart: a pooled connection opened while the file was read-only stays read-only for its whole life.
Now a connection that saw the file fail is invalidated (``db._poisons_connection``) and the pool opens a new one.

The suite runs as root, for whom ``chmod`` changes nothing; ``chattr +i`` (ext4's immutable flag) makes the
files unwritable even for root. The shared-memory file ``-shm`` stays writable: it is mmapped, and a write
fault on an immutable mapping is a SIGBUS, not an error SQLite could report.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_support import QUICKSTART, REVOKE, TOKEN, log_problems, running

from agentauth.api.app import create_app
from agentauth.bootstrap import build_services
from agentauth.keys import generate_kek
from agentauth.settings import Settings
from live_server import free_port, server_env, spawn
from support import ISSUER_URL

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _chattr(flag: str, paths: list[Path]) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@contextlib.contextmanager
def immutable(data: Path) -> Iterator[None]:
    """The database and its WAL unwritable (even for root) until the block ends."""
    files = [data / "agentauth.db", data / "agentauth.db-wal"]
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    try:
        _chattr("+i", files)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"this file system has no immutable flag: {exc.stderr!r}")
    try:
        yield
    finally:
        _chattr("-i", files)


class Writes:
    """One request of each write path: quickstart and refresh (ORM), token and revoke (hot path)."""

    def __init__(self, http: httpx.AsyncClient, registered: dict[str, Any]) -> None:
        self.http = http
        self.api_key: str = registered["api_key"]
        self.refresh_token: str = registered["refresh_token"]
        # Tokens to revoke: client-credentials tokens of their own grants, never the access token paired with
        # ``refresh_token`` (revoking either half of a pair revokes both, and the refresh path must stay usable).
        self.spare_tokens: list[str] = []

    async def issue_spare(self) -> None:
        issued = await self.http.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": self.api_key})
        assert issued.status_code == 200, issued.text
        self.spare_tokens.append(issued.json()["access_token"])

    async def run(self) -> dict[str, int]:
        statuses = {}
        quickstart = await self.http.post(QUICKSTART, json={"name": "w", "agent_type": "tool"})
        statuses["quickstart"] = quickstart.status_code
        refreshed = await self.http.post(
            TOKEN, data={"grant_type": "refresh_token", "refresh_token": self.refresh_token}
        )
        statuses["refresh"] = refreshed.status_code
        if refreshed.status_code == 200:
            self.refresh_token = refreshed.json()["refresh_token"]
        issued = await self.http.post(TOKEN, data={"grant_type": "client_credentials", "client_secret": self.api_key})
        statuses["token"] = issued.status_code
        if issued.status_code == 200:
            self.spare_tokens.append(issued.json()["access_token"])
        # Revoke a token issued earlier (while the file was writable), so the revocation has a write to make.
        revoked = await self.http.post(REVOKE, data={"token": self.spare_tokens[0], "client_secret": self.api_key})
        statuses["revoke"] = revoked.status_code
        if revoked.status_code == 200:
            self.spare_tokens.pop(0)
        return statuses


UNAVAILABLE = {"quickstart": 503, "refresh": 503, "token": 503, "revoke": 503}
WORKING = {"quickstart": 201, "refresh": 200, "token": 200, "revoke": 200}


async def test_every_write_path_recovers_after_the_file_was_read_only(tmp_path: Path) -> None:
    """Through a real server: 503 on all four while the files are unwritable, all four work again after."""
    port = free_port()
    data = tmp_path / "data"
    with running([], remove=data) as servers:
        server = spawn(server_env(data, port, generate_kek(), None), port, tmp_path / "server.log")
        servers.append(server)
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            registered = await http.post(QUICKSTART, json={"name": "ro", "agent_type": "tool"})
            assert registered.status_code == 201, registered.text
            writes = Writes(http, registered.json())
            await writes.issue_spare()
            assert await writes.run() == WORKING
            with immutable(data):
                for _ in range(2):
                    assert await writes.run() == UNAVAILABLE
            assert await writes.run() == WORKING
            assert await writes.run() == WORKING
        assert server.process.poll() is None
        assert log_problems(server) == []


async def test_a_connection_opened_while_the_file_was_read_only_is_not_kept(tmp_path: Path) -> None:
    """The mechanism itself: the ORM pool has to open a connection while the file is unwritable (here: the pool
    was emptied, as happens whenever connections are invalidated) - SQLite opens it read-only. Once the file is
    writable, that connection must not go on refusing writes."""
    settings = Settings(
        issuer_url=ISSUER_URL,
        data_dir=tmp_path / "data",
        key_encryption_key=generate_kek(),
        quickstart_rate_per_ip=10_000,
    )
    services = await build_services(settings)
    try:
        app = create_app(services=services)
        app.state.services = services
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as http:
            body = {"name": "ro", "agent_type": "tool"}
            assert (await http.post(QUICKSTART, json=body)).status_code == 201
            with immutable(settings.data_dir):
                await services.engine.dispose()  # the next write opens a new connection, now
                assert (await http.post(QUICKSTART, json=body)).status_code == 503
            answers = [(await http.post(QUICKSTART, json=body)).status_code for _ in range(3)]
            assert answers == [201, 201, 201], f"the ORM path stayed unavailable: {answers}"
    finally:
        await services.close()
