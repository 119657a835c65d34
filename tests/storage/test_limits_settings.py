"""Pool sizes and batch limits are settings (issue 13 item 8): the measured defaults, validated at start-up, and
what a deployment sets is what the engines and the batched rounds use."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agentauth.bootstrap import build_services
from agentauth.settings import Settings
from agentauth.storage.batch import MicroBatcher
from agentauth.storage.db import PoolLimits, create_engine
from live_server import BIN
from support import reset_postgres

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_defaults_are_the_measured_values(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert (settings.db_pool_size, settings.db_max_overflow) == (None, None)  # the backend's own default
    assert (settings.batch_max_size, settings.assertion_prune_batch) == (256, 5000)
    assert PoolLimits().for_backend(sqlite=True) == (4, 0)
    assert PoolLimits().for_backend(sqlite=False) == (10, 10)
    assert PoolLimits(size=2, overflow=3).for_backend(sqlite=True) == (2, 3)


@pytest.mark.parametrize(
    ("name", "value"),
    [("db_pool_size", "0"), ("db_max_overflow", "-1"), ("batch_max_size", "0"), ("batch_max_size", "many"),
     ("assertion_prune_batch", "0"), ("db_pool_size", "100000")],
)  # fmt: skip
def test_a_bad_value_is_refused_naming_the_setting(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(f"AGENTAUTH_{name.upper()}", value)
    with pytest.raises(ValidationError) as refused:
        Settings(data_dir=tmp_path)
    assert [error["loc"] for error in refused.value.errors()] == [(name,)]


def test_serve_refuses_a_bad_limit_at_start_up(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTAUTH_DATA_DIR": str(tmp_path / "data"), "AGENTAUTH_BATCH_MAX_SIZE": "0"}
    done = subprocess.run(
        [str(BIN / "agentauth"), "serve", "--host", "127.0.0.1", "--port", "18390"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "invalid configuration: batch_max_size" in done.stderr, done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was created


async def test_the_pool_settings_reach_the_engines(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", pool=PoolLimits(size=2, overflow=1))
    try:
        assert (engine.pool.size(), engine.pool._max_overflow) == (2, 1)  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_a_round_takes_at_most_max_batch() -> None:
    rounds: list[int] = []

    async def handler(items: Sequence[int]) -> list[int]:
        rounds.append(len(items))
        await asyncio.sleep(0)
        return [i * 2 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(handler, max_batch=3)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(8))) == [i * 2 for i in range(8)]
    assert max(rounds) == 3 and sum(rounds) == 8
    with pytest.raises(ValueError, match="at least 1"):
        MicroBatcher(handler, max_batch=0)


async def test_bootstrap_wires_the_limits(settings_factory: Any, backend: str) -> None:
    if backend == "postgres":
        await reset_postgres()  # a fresh schema: another test's key ring is sealed with another KEK
    services = await build_services(settings_factory(db_pool_size=2, db_max_overflow=1, batch_max_size=7))
    try:
        assert (services.engine.pool.size(), services.engine.pool._max_overflow) == (2, 1)  # type: ignore[attr-defined]
        batchers = (services.tokens.client_credentials._prepare, services.tokens.token_states._batcher,
                    services.lifecycle.revocations._batcher)  # fmt: skip
        assert [b._max for b in batchers] == [7, 7, 7]
    finally:
        await services.close()
