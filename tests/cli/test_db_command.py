"""``agentauth db current|upgrade|downgrade`` (issue 16 item 6) on a data directory of its own: where the schema
is, upgrading ahead of a deploy (to a migration or the release's newest), and taking it back for an older release
- refused without ``--yes``, since later migrations' columns go with their data. A database the commands moved
around is one the service then starts on."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from agentauth.storage.migrate import head_revision, revisions
from live_server import BIN, free_ports, issuer_env, spawn


def db(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "agentauth"), "db", *args], check=False, capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip


def test_db_commands_walk_the_migrations(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    env = issuer_env(tmp_path / "data", port)
    head, known = head_revision(), revisions()
    assert known[-1] == head and len(known) >= 7

    fresh = db(env, "current")
    assert fresh.returncode == 0 and fresh.stdout.strip() == f"database -, release head {head} (no schema yet)"
    older = known[-3]
    assert db(env, "upgrade", older).stdout.strip() == f"database at {older}"
    behind = db(env, "current").stdout.strip()
    assert behind == f"database {older}, release head {head} (behind: agentauth db upgrade)"
    assert db(env, "upgrade").stdout.strip() == f"database at {head}"

    refused = db(env, "downgrade", older)
    assert refused.returncode == 1 and "add --yes" in refused.stderr
    assert db(env, "current").stdout.strip().startswith(f"database {head},"), "a refused downgrade changed it"
    unknown = db(env, "upgrade", "9999")
    assert (
        unknown.returncode == 1 and "unknown migration '9999'" in unknown.stderr and "Traceback" not in unknown.stderr
    )
    assert db(env, "downgrade", "base", "--yes").stdout.strip() == "database at base (no schema)"
    assert db(env, "upgrade").returncode == 0
    assert os.stat(tmp_path / "data").st_mode & 0o077 == 0  # the data directory is made owner-only, as serve does

    server = spawn(env, port, tmp_path / "serve.log", log_level="warning")
    try:
        made = httpx.post(f"{server.url}/api/v1/agents/quickstart", json={"name": "after", "agent_type": "tool"})
        assert made.status_code == 201, made.text
    finally:
        server.stop()
