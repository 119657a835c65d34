"""``agentauth admin stats``: counts across every tenant of the service's own database, read while it serves,
with no id, name or secret of any tenant in the output."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from live_server import BIN, start_issuer


def test_stats_count_what_the_service_holds(tmp_path: Path) -> None:
    server = start_issuer(tmp_path)
    try:
        made = []
        for n in range(3):
            answer = httpx.post(
                f"{server.url}/api/v1/agents/quickstart", json={"name": f"tenant-alpha-{n}", "agent_type": "tool"}
            )
            assert answer.status_code == 201, answer.text
            made.append(answer.json())
        auth = {"Authorization": f"Bearer {made[0]['access_token']}"}
        child = httpx.post(f"{server.url}/api/v1/agents", json={"name": "c", "agent_type": "tool"}, headers=auth)
        assert child.status_code == 201
        httpx.delete(f"{server.url}/api/v1/agents/{child.json()['agent']['id']}", headers=auth)
        bad = {"grant_type": "client_credentials", "client_secret": "ak_live_nope"}
        assert httpx.post(f"{server.url}/api/v1/auth/token", data=bad).status_code == 401
        ran = subprocess.run(
            [str(BIN / "agentauth"), "admin", "stats", "--json"],
            env=server.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        stats = json.loads(ran.stdout)
        assert stats["tenants"] == 3
        assert stats["agents"].get("active") == 3
        assert sum(stats["agents"].values()) == 4
        assert stats["api_keys"].get("active") == 3
        assert stats["live_credentials"].get("access", 0) >= 3 and stats["issued_24h"].get("identity", 0) >= 4
        assert stats["token_denials_24h"] == 1
        assert stats["signing_keys"].get("active") == 1
        for answer in made:
            for secret in (answer["api_key"], answer["agent"]["id"], answer["agent"]["name"], answer["refresh_token"]):
                assert secret not in ran.stdout
        table = subprocess.run(
            [str(BIN / "agentauth"), "admin", "stats"],
            env=server.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert table.returncode == 0 and "tenants" in table.stdout and "3" in table.stdout
    finally:
        server.stop()
