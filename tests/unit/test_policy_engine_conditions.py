"""Policy conditions and policy validation (``issuer/policy_engine.py``; issue 5 "Every condition the engine
documents is implemented and tested; nothing documented is silently ignored").

Conditions: ``time_window`` {start, end, days, timezone} (a window may wrap midnight), ``source_ips`` [CIDR...]
(IPv4 and IPv6), ``max_delegation_depth``. A missing input (no source IP) never widens access: an allow with
that condition does not apply, a deny does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agentauth.errors import InvalidRequest
from agentauth.issuer.policy_engine import (
    Conditions,
    Decision,
    EvaluationContext,
    PolicySet,
    Subject,
    build_policy,
    segments,
)

MONDAY = datetime(2025, 1, 6, tzinfo=UTC)
AGENT = Subject("agt_a", "assistant", "basic")


def at(hour: int, minute: int = 0, day: int = 0) -> datetime:
    """UTC time on Monday 6 January 2025 (+ ``day`` days)."""
    return MONDAY.replace(day=6 + day, hour=hour, minute=minute)


def decide(conditions: dict[str, Any], effect: str = "allow", **ctx: Any) -> Decision:
    rule = build_policy(
        id="p",
        name="cond",
        effect=effect,
        subjects={"all": True},
        actions=["read"],
        resources=["docs/**"],
        conditions=conditions,
        priority=0,
    )
    context = EvaluationContext(**({"now": at(12)} | ctx))
    return PolicySet([rule]).evaluate(AGENT, "read", "docs/x", [], context)


def applies(conditions: dict[str, Any], effect: str = "allow", **ctx: Any) -> bool:
    """Whether the single policy applied (for a deny: whether it denied by policy)."""
    decision = decide(conditions, effect, **ctx)
    return decision.basis == "policy"


# -- time_window --------------------------------------------------------------------------------------------

OFFICE = {"time_window": {"start": "09:00", "end": "17:00"}}


@pytest.mark.parametrize(
    ("moment", "inside"),
    [(at(9), True), (at(12), True), (at(16, 59), True), (at(17), False), (at(8, 59), False), (at(23), False)],
)
def test_time_window_start_inclusive_end_exclusive(moment: datetime, inside: bool) -> None:
    assert applies(OFFICE, now=moment) is inside
    assert applies(OFFICE, "deny", now=moment) is inside


def test_time_window_days() -> None:
    weekend = {"time_window": {"start": "00:00", "end": "23:59", "days": ["sat", "sun"]}}
    assert not applies(weekend, now=at(12))  # Monday
    assert applies(weekend, now=at(12, day=5))  # Saturday
    assert applies(weekend, now=at(12, day=6))  # Sunday
    assert applies({"time_window": {"start": "09:00", "end": "17:00", "days": ["MON"]}}, now=at(12))


def test_time_window_timezone() -> None:
    new_york = {"time_window": {"start": "09:00", "end": "17:00", "timezone": "America/New_York"}}
    assert not applies(new_york, now=at(12))  # 07:00 EST
    assert applies(new_york, now=at(15))  # 10:00 EST
    assert not applies(new_york, now=at(1, day=1))  # Tuesday 01:00 UTC = Monday 20:00 EST
    assert applies(new_york, now=at(21, day=1))  # Tuesday 16:00 EST
    sunday_ny = {"time_window": {"start": "18:00", "end": "23:00", "days": ["sun"], "timezone": "America/New_York"}}
    # Monday 02:00 UTC is Sunday 21:00 in New York: the day is judged in the window's timezone.
    assert applies(sunday_ny, now=at(2))
    assert not applies({"time_window": {"start": "18:00", "end": "23:00", "days": ["sun"]}}, now=at(2))


@pytest.mark.parametrize(
    ("moment", "inside"),
    [(at(22), True), (at(23, 30), True), (at(0), True), (at(3), True), (at(5, 59), True), (at(6), False),
     (at(12), False), (at(21, 59), False)],
)  # fmt: skip
def test_time_window_wrapping_midnight(moment: datetime, inside: bool) -> None:
    night = {"time_window": {"start": "22:00", "end": "06:00"}}
    assert applies(night, now=moment) is inside
    assert applies(night, "deny", now=moment) is inside


# -- source_ips ---------------------------------------------------------------------------------------------

NETWORKS = {"source_ips": ["10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"]}


@pytest.mark.parametrize(
    ("ip", "inside"),
    [
        ("10.1.2.3", True),
        ("10.255.255.255", True),
        ("11.0.0.1", False),
        ("192.168.1.7", True),
        ("192.168.1.8", False),
        ("2001:db8::1", True),
        ("2001:db8:ffff::1", True),
        ("2001:db9::1", False),
        ("::1", False),
    ],
)
def test_source_ips(ip: str, inside: bool) -> None:
    assert applies(NETWORKS, ip=ip) is inside
    assert applies(NETWORKS, "deny", ip=ip) is inside


def test_source_ips_accepts_host_bits_set() -> None:
    assert applies({"source_ips": ["10.1.2.3/8"]}, ip="10.200.0.1")


@pytest.mark.parametrize("ip", [None, "not-an-ip", "10.0.0.256"])
def test_unknown_source_ip_never_widens_access(ip: str | None) -> None:
    allow = decide(NETWORKS, ip=ip)
    assert (allow.allowed, allow.basis) == (False, "default")
    deny = decide(NETWORKS, "deny", ip=ip)
    assert (deny.allowed, deny.basis) == (False, "policy")
    assert any("source IP" in reason for reason in deny.reasons)


# -- max_delegation_depth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("depth", "holds"), [(0, True), (1, True), (2, False), (5, False)])
def test_max_delegation_depth(depth: int, holds: bool) -> None:
    assert applies({"max_delegation_depth": 1}, delegation_depth=depth) is holds
    assert applies({"max_delegation_depth": 1}, "deny", delegation_depth=depth) is holds


def test_max_delegation_depth_zero_means_only_direct_requests() -> None:
    assert applies({"max_delegation_depth": 0}, delegation_depth=0)
    assert not applies({"max_delegation_depth": 0}, delegation_depth=1)


def test_every_condition_must_hold() -> None:
    conditions = {**OFFICE, **NETWORKS, "max_delegation_depth": 1}
    assert applies(conditions, now=at(12), ip="10.0.0.1", delegation_depth=1)
    assert not applies(conditions, now=at(18), ip="10.0.0.1", delegation_depth=1)
    assert not applies(conditions, now=at(12), ip="8.8.8.8", delegation_depth=1)
    assert not applies(conditions, now=at(12), ip="10.0.0.1", delegation_depth=2)


# -- validation -----------------------------------------------------------------------------------------------

VALID: dict[str, Any] = {
    "id": "p",
    "name": "n",
    "effect": "allow",
    "subjects": {"all": True},
    "actions": ["read"],
    "resources": ["docs/**"],
    "conditions": None,
    "priority": 0,
}


@pytest.mark.parametrize(
    "change",
    [
        {"effect": "permit"},
        {"effect": "ALLOW"},
        {"actions": ["read", "fly"]},
        {"actions": []},
        {"subjects": {"groups": ["admins"]}},
        {"subjects": {}},
        {"subjects": {"all": False}},
        {"subjects": {"agent_ids": []}},
        {"resources": []},
        {"resources": ["a/**b"]},
        {"resources": ["a/b**"]},
        {"resources": ["**x/a"]},
        {"resources": ["a/../b"]},
        {"resources": [".."]},
        {"resources": ["./a"]},
        {"resources": ["a//b"]},
        {"resources": ["/"]},
        {"resources": ["a" * 1001]},
        {"conditions": {"geo": "EU"}},
        {"conditions": {"source_ips": ["10.0.0.0/33"]}},
        {"conditions": {"source_ips": ["not-a-cidr"]}},
        {"conditions": {"source_ips": "10.0.0.0/8"}},
        {"conditions": {"time_window": {"start": "25:00", "end": "17:00"}}},
        {"conditions": {"time_window": {"start": "9am", "end": "5pm"}}},
        {"conditions": {"time_window": {"start": "09:00"}}},
        {"conditions": {"time_window": {"start": "09:00", "end": "17:00", "days": ["funday"]}}},
        {"conditions": {"time_window": {"start": "09:00", "end": "17:00", "timezone": "Mars/Olympus_Mons"}}},
        {"conditions": {"time_window": "09:00-17:00"}},
        {"conditions": {"max_delegation_depth": -1}},
        {"conditions": {"max_delegation_depth": 11}},
        {"conditions": {"max_delegation_depth": True}},
        {"conditions": {"max_delegation_depth": "2"}},
    ],
)
def test_invalid_policies_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        build_policy(**(VALID | change))


def test_valid_conditions_parse() -> None:
    parsed = Conditions.parse(
        {
            "time_window": {"start": "22:00", "end": "06:00", "days": ["fri", "SAT"], "timezone": "Europe/Paris"},
            "source_ips": ["10.0.0.0/8", "2001:db8::/32"],
            "max_delegation_depth": 0,
        }
    )
    assert parsed.time_window is not None and parsed.time_window.days == frozenset({"fri", "sat"})
    assert parsed.source_ips is not None and len(parsed.source_ips) == 2
    assert parsed.max_delegation_depth == 0
    assert Conditions.parse(None) == Conditions.parse({}) == Conditions()


@pytest.mark.parametrize("resource", ["", "/", "a/../b", "a//b", "./a", "x" * 1001])
def test_invalid_request_resources_are_refused(resource: str) -> None:
    with pytest.raises(InvalidRequest):
        segments(resource)


@pytest.mark.parametrize("selector", ["agent_ids", "agent_types", "trust_levels"])
@pytest.mark.parametrize("value", ["agt_a", [""], [1], {"agt_a": True}])
def test_subject_lists_must_be_lists_of_strings(selector: str, value: Any) -> None:
    # Regression (fixed in aa6590a): frozenset('agt_a') is a set of characters, so a deny policy written
    # {'agent_ids': 'agt_a'} was stored and silently never applied.
    with pytest.raises(InvalidRequest):
        build_policy(**(VALID | {"subjects": {selector: value}}))


@pytest.mark.parametrize("value", ["false", "no", 1, 0, [0], None])
def test_subjects_all_must_be_a_boolean(value: Any) -> None:
    # Regression (fixed in aa6590a): bool('false') is True - a policy meant for nobody applied to everyone.
    with pytest.raises(InvalidRequest):
        build_policy(**(VALID | {"subjects": {"all": value}}))
