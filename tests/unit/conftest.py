"""Fixtures for the ``agentauth.vc`` tests (helpers live in ``vc_support``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from vc_support import NOW, Agent, Env

from agentauth.vc import Verifier


@pytest.fixture(scope="session")
def make_env() -> Callable[[datetime], Env]:
    """A factory for property tests, which must not use function-scoped fixtures."""
    return Env


@pytest.fixture
def env() -> Env:
    return Env(NOW)


@pytest.fixture
def verifier(env: Env) -> Verifier:
    return env.verifier()


@pytest.fixture
def agent() -> Agent:
    return Agent.generate()


@pytest.fixture
def other_agent() -> Agent:
    return Agent.generate()
