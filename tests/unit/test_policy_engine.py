"""The pure policy engine (``issuer/policy_engine.py``; issue 5, Build 3 and "Must show" 4): every documented
matcher, deny-overrides, default deny, priority order, scope default allows (``SCOPE_ALLOWS``), delegation
grants and the reasons text. Conditions and validation live in ``test_policy_engine_conditions.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentauth.errors import InvalidRequest
from agentauth.issuer.policy_engine import (
    ACTIONS,
    SCOPE_ALLOWS,
    Decision,
    EvaluationContext,
    Grant,
    Policy,
    PolicySet,
    Subject,
    build_policy,
    compile_pattern,
)

NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)  # a Monday, noon UTC
AGENT = Subject("agt_a", "assistant", "basic")


def policy(pid: str = "p", **fields: Any) -> Policy:
    values: dict[str, Any] = {
        "name": pid,
        "effect": "allow",
        "subjects": {"all": True},
        "actions": ["read"],
        "resources": ["docs/**"],
        "conditions": None,
        "priority": 0,
    }
    return build_policy(id=pid, **(values | fields))


def decide(
    policies: Sequence[Policy],
    action: str = "read",
    resource: str = "docs/x",
    subject: Subject = AGENT,
    grants: Sequence[Grant] = (),
    ctx: EvaluationContext | None = None,
    approved: Sequence[Any] = (),
) -> Decision:
    return PolicySet(policies).evaluate(subject, action, resource, grants, ctx or EvaluationContext(NOW), approved)


# -- subjects ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subjects", "reason"),
    [
        ({"agent_ids": ["agt_a"]}, "names agent agt_a"),
        ({"agent_types": ["assistant"]}, "applies to agent type assistant"),
        ({"trust_levels": ["basic"]}, "applies to trust level basic"),
        ({"all": True}, "applies to all agents"),
        ({"agent_ids": ["agt_z"], "agent_types": ["tool"], "trust_levels": ["basic"]}, "applies to trust level basic"),
    ],
)
def test_subject_selectors_match(subjects: dict[str, Any], reason: str) -> None:
    decision = decide([policy(subjects=subjects)])
    assert decision.allowed and decision.basis == "policy"
    assert reason in decision.reasons[0]


@pytest.mark.parametrize(
    "subjects",
    [{"agent_ids": ["agt_b"]}, {"agent_types": ["tool", "orchestrator"]}, {"trust_levels": ["trusted"]}],
)
def test_subject_selectors_do_not_match_others(subjects: dict[str, Any]) -> None:
    decision = decide([policy(subjects=subjects)])
    assert (decision.allowed, decision.basis) == (False, "default")


# -- actions ----------------------------------------------------------------------------------------------


def test_listed_actions_only() -> None:
    rule = policy(actions=["read", "write"])
    assert [decide([rule], action=a).allowed for a in ACTIONS] == [a in ("read", "write") for a in ACTIONS]


def test_star_action_covers_every_action() -> None:
    rule = policy(actions=["*"])
    assert all(decide([rule], action=a).allowed for a in ACTIONS)


@pytest.mark.parametrize("action", ["fly", "*", "READ", ""])
def test_unknown_action_in_a_request_is_refused(action: str) -> None:
    with pytest.raises(InvalidRequest):
        decide([policy()], action=action)


def test_a_deny_naming_an_agent_binds_the_agents_it_acts_through_an_allow_does_not() -> None:
    """Issue 12 item 5: a sub-agent or a delegate of a denied agent carries it in ``bound_by``."""
    below = Subject("agt_c", "tool", "basic", bound_by=("agt_root", "agt_a"))
    denied = decide(
        [policy(effect="deny", subjects={"agent_ids": ["agt_a"]})],
        subject=below,
        grants=[Grant(frozenset({"api.read"}))],
    )
    assert not denied.allowed and denied.basis == "policy"
    assert "names agent agt_a, whose denials bind agt_c" in denied.reasons[0]
    assert not decide([policy(subjects={"agent_ids": ["agt_a"]})], subject=below).allowed
    assert decide(
        [policy(effect="deny", subjects={"agent_ids": ["agt_z"]})],
        subject=below,
        grants=[Grant(frozenset({"api.read"}))],
    ).allowed


# -- resource patterns ------------------------------------------------------------------------------------

PATTERN_CASES = [
    # '*' is exactly one segment
    ("docs/*", "docs/a", True),
    ("docs/*", "docs/a/b", False),
    ("docs/*", "docs", False),
    ("*/x", "a/x", True),
    ("*/x", "a/b/x", False),
    ("a/*/c", "a/b/c", True),
    ("a/*/c", "a/c", False),
    # '**' is any depth, including zero
    ("docs/**", "docs", True),
    ("docs/**", "docs/a", True),
    ("docs/**", "docs/a/b/c", True),
    ("docs/**", "docsx/a", False),
    ("docs/**", "doc", False),
    ("**", "a", True),
    ("**", "a/b/c", True),
    ("**/secret", "secret", True),
    ("**/secret", "a/b/secret", True),
    ("**/secret", "a/secret/x", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y", False),
    ("a/**/**/b", "a/b", True),
    ("*/**", "a", True),
    # '*' inside a segment: any characters but '/'
    ("files/report-*.pdf", "files/report-2024.pdf", True),
    ("files/report-*.pdf", "files/report-.pdf", True),
    ("files/report-*.pdf", "files/report-a/b.pdf", False),
    ("files/report-*.pdf", "files/summary.pdf", False),
    ("ap*/v1", "api/v1", True),
    # everything else is literal (regex metacharacters too); slashes at the ends are insignificant
    ("a.b/c+d", "a.b/c+d", True),
    ("a.b/c+d", "aXb/c+d", False),
    ("a.b/c+d", "a.b/c+dd", False),
    ("a.b/(x)", "a.b/(x)", True),
    ("docs/x", "/docs/x/", True),
    ("/docs/x/", "docs/x", True),
    ("Docs/x", "docs/x", False),
]


@pytest.mark.parametrize(("pattern", "resource", "matches"), PATTERN_CASES)
def test_resource_patterns(pattern: str, resource: str, matches: bool) -> None:
    assert decide([policy(resources=[pattern])], resource=resource).allowed is matches


def test_any_listed_resource_pattern_matches() -> None:
    rule = policy(resources=["docs/*", "reports/**"])
    assert decide([rule], resource="reports/2025/q1").allowed
    assert not decide([rule], resource="other/x").allowed


# A reference matcher written independently of the regex compiler: segment by segment, fnmatch in a segment.
def reference_match(pattern: list[str], resource: list[str]) -> bool:
    if not pattern:
        return not resource
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(reference_match(rest, resource[i:]) for i in range(len(resource) + 1))
    return bool(resource) and fnmatchcase(resource[0], head) and reference_match(rest, resource[1:])


SEGMENT = st.sampled_from(["a", "b", "ab", "ba"])
PATTERN_SEGMENT = st.sampled_from(["a", "b", "ab", "*", "**", "a*", "*b", "a*b"])
POLICY = st.tuples(
    st.sampled_from(["allow", "deny", "require_approval"]),
    st.lists(st.sampled_from([*ACTIONS, "*"]), min_size=1, max_size=2),
    st.lists(st.lists(PATTERN_SEGMENT, min_size=1, max_size=4), min_size=1, max_size=2),
    st.integers(-3, 3),
    st.sampled_from([{"all": True}, {"agent_ids": ["agt_a"]}, {"agent_types": ["tool"]}]),
)


@settings(max_examples=200, deadline=None)
@given(
    rules=st.lists(POLICY, max_size=12),
    action=st.sampled_from(ACTIONS),
    resource=st.lists(SEGMENT, min_size=1, max_size=4),
)
def test_indexed_evaluation_equals_a_full_scan(
    rules: list[tuple[str, list[str], list[list[str]], int, dict[str, Any]]], action: str, resource: list[str]
) -> None:
    """The action / first-segment index never loses a candidate: same decision as scanning every policy."""
    policies = [
        policy(f"p{i:02}", effect=e, actions=a, resources=["/".join(r) for r in rs], priority=pr, subjects=s)
        for i, (e, a, rs, pr, s) in enumerate(rules)
    ]
    applying = [
        (p, rs)
        for p, (_, a, rs, _, s) in zip(policies, rules, strict=True)
        if (action in a or "*" in a)
        and ("all" in s or "agt_a" in s.get("agent_ids", ()))
        and any(reference_match(r, resource) for r in rs)
    ]
    decision = decide(policies, action=action, resource="/".join(resource))
    denies = [p for p, _ in applying if p.effect == "deny"]
    gates = [p for p, _ in applying if p.effect == "require_approval"]
    allows = [p for p, _ in applying if p.effect == "allow"]
    assert decision.allowed is (not denies and not gates and bool(allows))
    assert decision.effect == ("deny" if denies else "require_approval" if gates else decision.effect)
    if applying:
        winner = min(denies or gates or allows, key=lambda p: (-p.priority, p.id))
        assert decision.matched_policy is not None and decision.matched_policy["id"] == winner.id
    else:
        assert decision.matched_policy is None


@pytest.mark.parametrize("pattern", ["**/**", "**/**/**"])
def test_double_star_run_matches_all(pattern: str) -> None:
    # Found by test_indexed_evaluation_equals_a_full_scan: runs of '**' once compiled to match nothing.
    for resource in ("a", "a/b", "a/b/c"):
        assert decide([policy(resources=[pattern])], resource=resource).allowed, resource


def test_compile_pattern_is_anchored() -> None:
    assert not compile_pattern("docs/*").match("docs/a/b")
    assert not compile_pattern("docs").match("docs/a")


# -- deny overrides, default deny, priority -----------------------------------------------------------------


def test_low_priority_deny_beats_high_priority_allow() -> None:
    allow = policy("allow-all", priority=1000, actions=["*"], resources=["**"])
    deny = policy("no-secrets", effect="deny", priority=-1000, resources=["docs/secret/**"])
    decision = decide([allow, deny], resource="docs/secret/plan")
    assert (decision.allowed, decision.effect, decision.basis) == (False, "deny", "policy")
    assert decision.matched_policy == {"id": "no-secrets", "name": "no-secrets", "effect": "deny", "priority": -1000}
    assert decision.reasons[-1] == "deny overrides any allow"
    assert decide([allow, deny], resource="docs/public").allowed


def test_deny_beats_scope_and_delegation_allows() -> None:
    deny = policy("no-agents", effect="deny", resources=["api/v1/agents/**"])
    own = Grant(frozenset({"agents.read"}))
    delegated = Grant(frozenset({"agents.read"}), "dlg_1", 1)
    decision = decide([deny], resource="api/v1/agents/x", grants=[own, delegated])
    assert (decision.allowed, decision.basis, decision.matched_policy["id"]) == (False, "policy", "no-agents")  # type: ignore[index]


def test_default_deny() -> None:
    for policies in ([], [policy(resources=["other/**"])], [policy(actions=["write"])]):
        decision = decide(policies)
        assert decision == Decision(
            False, "deny", "default", None, None, ["no policy or scope allows this (default deny)"]
        )


def test_disabled_policies_do_not_apply() -> None:
    assert not decide([policy(enabled=False)]).allowed
    assert decide([policy(effect="deny", enabled=False), policy("on")]).allowed


@pytest.mark.parametrize("effect", ["allow", "deny", "require_approval"])
def test_highest_priority_matching_policy_is_reported(effect: str) -> None:
    rules = [policy(f"p{pr}", effect=effect, priority=pr) for pr in (5, -2, 10, 7)]
    rules.append(policy("p99", effect=effect, priority=99, resources=["elsewhere/**"]))  # does not match
    decision = decide(rules)
    assert decision.matched_policy == {"id": "p10", "name": "p10", "effect": effect, "priority": 10}
    assert decision.reasons[0].startswith("policy 'p10' (priority 10)")


def test_an_allow_policy_decides_before_scope_defaults() -> None:
    decision = decide([policy("docs")], grants=[Grant(frozenset({"api.read"}))])
    assert (decision.basis, decision.matched_policy["id"]) == ("policy", "docs")  # type: ignore[index]


# -- scope default allows -----------------------------------------------------------------------------------


def sample_resource(pattern: str) -> str:
    return "thirdparty/orders/42" if pattern == "**" else pattern.replace("**", "x/y")


@pytest.mark.parametrize("scope", sorted(SCOPE_ALLOWS))
def test_scope_default_allows_table(scope: str) -> None:
    actions, pattern = SCOPE_ALLOWS[scope]
    resource = sample_resource(pattern)
    for action in ACTIONS:
        decision = decide([], action=action, resource=resource, grants=[Grant(frozenset({scope}))])
        assert decision.allowed is (action in actions), (scope, action)
        if decision.allowed:
            assert decision.basis == "scope" and decision.reasons == [f"scope {scope} allows {action} on {pattern}"]


def test_scope_examples() -> None:
    agents_read = [Grant(frozenset({"agents.read"}))]
    assert decide([], "read", "api/v1/agents/agt_x", grants=agents_read).allowed
    assert decide([], "read", "api/v1/agents", grants=agents_read).allowed
    assert not decide([], "write", "api/v1/agents/agt_x", grants=agents_read).allowed
    assert not decide([], "read", "api/v1/credentials", grants=agents_read).allowed
    api_read = [Grant(frozenset({"api.read"}))]
    assert decide([], "read", "docs/x", grants=api_read).allowed
    # api.* cover resources outside AgentAuth's own API only.
    assert not decide([], "read", "api/v1/audit/events", grants=api_read).allowed
    assert not decide([], "read", "api/v1", grants=api_read).allowed
    assert not decide([], "write", "docs/x", grants=api_read).allowed
    assert decide([], "execute", "tools/run", grants=[Grant(frozenset({"api.write"}))]).allowed
    assert decide([], "delegate", "api/v1/delegations", grants=[Grant(frozenset({"delegations.write"}))]).allowed
    assert not decide([], "read", "api/v1/auth/introspect/x", grants=[Grant(frozenset({"tokens.introspect"}))]).allowed


def test_delegation_grants() -> None:
    delegated = Grant(frozenset({"agents.read"}), "dlg_42", 2)
    decision = decide([], "read", "api/v1/agents/agt_x", grants=[delegated])
    assert (decision.allowed, decision.basis, decision.delegation_id) == (True, "delegation", "dlg_42")
    assert decision.reasons == ["delegation dlg_42 grants scope agents.read, which allows read on api/v1/agents/**"]
    # The agent's own grant is consulted first and reported as such.
    own = Grant(frozenset({"agents.read"}))
    assert decide([], "read", "api/v1/agents/x", grants=[own, delegated]).basis == "scope"
    assert decide([], "read", "api/v1/agents/x", grants=[Grant(frozenset()), delegated]).delegation_id == "dlg_42"
    assert not decide([], "write", "api/v1/agents/x", grants=[delegated]).allowed


# -- reasons ------------------------------------------------------------------------------------------------


def test_reasons_name_the_policy_the_subject_selector_and_the_conditions() -> None:
    rule = policy(
        "pol_hours",
        name="business hours",
        subjects={"agent_types": ["assistant"]},
        priority=5,
        conditions={
            "time_window": {"start": "09:00", "end": "17:00", "days": ["mon", "tue"]},
            "source_ips": ["10.0.0.0/8"],
            "max_delegation_depth": 2,
        },
    )
    decision = decide([rule], ctx=EvaluationContext(NOW, ip="10.1.2.3", delegation_depth=1))
    assert decision.allowed
    assert decision.reasons == [
        "policy 'business hours' (priority 5) applies to agent type assistant",
        "within the time window",
        "source IP 10.1.2.3 in range",
        "delegation depth 1 <= 2",
    ]
    assert decision.matched_policy == {"id": "pol_hours", "name": "business hours", "effect": "allow", "priority": 5}
    deny = policy("pol_block", name="block agt_a", effect="deny", subjects={"agent_ids": ["agt_a"]}, priority=-1)
    assert decide([rule, deny], ctx=EvaluationContext(NOW, ip="10.1.2.3")).reasons == [
        "policy 'block agt_a' (priority -1) names agent agt_a",
        "deny overrides any allow",
    ]


def test_require_approval_is_satisfied_only_by_an_approval_of_that_action_on_that_resource() -> None:
    gate = [policy("gate", effect="require_approval"), policy("open")]
    assert decide(gate).effect == "require_approval" and not decide(gate).allowed
    resource = "docs/a"
    approved = [{"type": "agent_action", "actions": ["read"], "locations": [f"/{resource}"]}]
    assert decide(gate, resource=resource, approved=approved).allowed
    for other in (
        [{"type": "agent_action", "actions": ["write"], "locations": [resource]}],
        [{"type": "agent_action", "actions": ["read"], "locations": ["docs/b"]}],
        [{"type": "payment", "actions": ["read"], "locations": [resource]}],
        [{"type": "agent_action", "actions": "read", "locations": resource}],
    ):
        assert decide(gate, resource=resource, approved=other).effect == "require_approval", other
