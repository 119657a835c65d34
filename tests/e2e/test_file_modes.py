"""Files of the embedded default are owner-only whatever the umask and the data directory's mode (issue 12,
item 11): a real ``agentauth serve`` on a pre-existing 0755 directory under umask 022 leaves every file there
(database, ``-wal``, ``-shm``, writer lock, KEK) 0600 after start, after traffic and after it stops, and says at
start that the directory is open to others."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest

from agentauth.keyfile import private_dir
from agentauth.storage.db import private_sqlite_file
from live_server import free_port, server_env, spawn
from support import bearer

pytestmark = pytest.mark.slow

WARNING = "is accessible to group or others"


def modes(directory: Path) -> dict[str, str]:
    return {p.name: f"{stat.S_IMODE(p.stat().st_mode):03o}" for p in sorted(directory.iterdir())}


def traffic(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        for n in range(5):
            agent = http.post("/api/v1/agents/quickstart", json={"name": f"f{n}", "agent_type": "tool"})
            assert agent.status_code == 201, agent.text
            body = agent.json()
            token = http.post(
                "/api/v1/auth/token", data={"grant_type": "client_credentials", "client_secret": body["api_key"]}
            )
            assert token.status_code == 200, token.text
            assert http.get("/api/v1/audit/events", headers=bearer(body["access_token"])).status_code == 200


def test_files_are_private_in_a_shared_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    port = free_port()
    env = server_env(data, port, "unused", None)
    del env["AGENTAUTH_KEY_ENCRYPTION_KEY"]  # the KEK file in the data directory, as on a default install
    previous = os.umask(0o022)
    try:
        server = spawn(env, port, tmp_path / "serve.log")
    finally:
        os.umask(previous)
    try:
        started = modes(data)
        traffic(server.url)
        served = modes(data)
    finally:
        server.stop()
    stopped = modes(data)
    assert {"agentauth.db", "agentauth.db-wal", "agentauth.db-shm", "kek"} <= set(served), served
    for when, seen in (("start", started), ("traffic", served), ("stop", stopped)):
        assert set(seen.values()) == {"600"}, f"after {when}: {seen}"
    log = (tmp_path / "serve.log").read_text()
    assert log.count(WARNING) == 1, log[-3000:]
    assert str(data.resolve()) in log


def test_database_files_left_readable_by_an_older_version_are_tightened(tmp_path: Path) -> None:
    database = tmp_path / "agentauth.db"
    for name in ("agentauth.db", "agentauth.db-wal", "agentauth.db-shm"):
        (tmp_path / name).write_bytes(b"")
        (tmp_path / name).chmod(0o644)
    private_sqlite_file(database)
    assert set(modes(tmp_path).values()) == {"600"}, modes(tmp_path)


def test_a_new_data_directory_is_owner_only_and_raises_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    previous = os.umask(0o022)
    try:
        private_dir(tmp_path / "new" / "data")
        private_dir(tmp_path / "new" / "data")  # again, as a second worker does
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new" / "data").stat().st_mode) == 0o700
    assert WARNING not in caplog.text
