"""``/metrics`` of ``agentauth serve --workers 2`` (issue 16 item 6): with ``PROMETHEUS_MULTIPROC_DIR`` every scrape,
whichever worker answers it, counts the requests of both workers - and the output of both workers stays JSON."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentauth.keys import generate_kek
from live_server import BIN, LiveServer, free_port, server_env, wait_until_up

pytestmark = pytest.mark.slow

MIN_REQUESTS = 30
MAX_REQUESTS = 1000


def writers(directory: Path) -> set[str]:
    return {p.stem.rsplit("_", 1)[-1] for p in directory.glob("counter_*.db")}


def health_count(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "agentauth_http_requests_total" and sample.labels["route"] == "/health":
                return sample.value
    return 0.0


def test_a_scrape_of_any_worker_adds_up_all_workers(tmp_path: Path) -> None:
    port = free_port()
    prometheus = tmp_path / "prometheus"
    prometheus.mkdir()
    env = server_env(
        tmp_path / "data",
        port,
        generate_kek(),
        None,
        AGENTAUTH_METRICS_ENABLED="true",
        PROMETHEUS_MULTIPROC_DIR=str(prometheus),
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "agentauth"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log, env)
    try:
        wait_until_up(server, "/health")
        before = health_count(server.url)
        sent = 0
        # Until both workers served some of them (each keeps its values in files named by its pid): which one
        # accepts a connection is the kernel's choice.
        while sent < MIN_REQUESTS or (len(writers(prometheus)) < 2 and sent < MAX_REQUESTS):
            assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200  # a new connection each
            sent += 1
        counts = [health_count(server.url) for _ in range(6)]
        both = writers(prometheus)
    finally:
        server.stop()
    assert len(both) == 2, both
    assert counts == [before + sent] * len(counts), (before, sent, counts)
    messages = [json.loads(line)["msg"] for line in log.read_text().splitlines()]  # every line is JSON
    assert sum("Started server process" in msg for msg in messages) == 2, messages
