"""Delegation-depth conditions in both directions, and the stricter condition validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from test_policy_engine import decide, policy

from agentauth.errors import InvalidRequest
from agentauth.issuer.policy_engine import EvaluationContext, Grant, build_policy

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SCOPE = [Grant(frozenset({"api.read"}))]


@pytest.mark.parametrize(("depth", "allowed"), [(0, True), (1, True), (2, False), (5, False)])
def test_min_delegation_depth_lets_a_deny_catch_deep_chains(depth: int, allowed: bool) -> None:
    deny_deep = policy("deep", effect="deny", conditions={"min_delegation_depth": 2})
    decision = decide([deny_deep], grants=SCOPE, ctx=EvaluationContext(NOW, delegation_depth=depth))
    assert decision.allowed is allowed
    if not allowed:
        assert decision.matched_policy is not None and decision.matched_policy["id"] == "deep"
        assert f"delegation depth {depth} >= 2" in decision.reasons


@pytest.mark.parametrize(
    "conditions",
    [
        {"source_ips": [10]},
        {"source_ips": "10.0.0.0/8"},
        {"time_window": {"start": "09:00", "end": "09:00"}},
        {"time_window": {"start": "09:00", "end": "17:00", "days": []}},
        {"min_delegation_depth": -1},
        {"min_delegation_depth": True},
    ],
)
def test_conditions_that_could_never_hold_or_mean_something_else_are_refused(conditions: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        build_policy(
            id="p",
            name="p",
            effect="allow",
            subjects={"all": True},
            actions=["read"],
            resources=["docs/**"],
            conditions=conditions,
            priority=0,
        )
