"""``PolicySet.changed`` (``issuer/policy_engine.py``): the set a policy write derives from the writer's set is the
set compiled anew from the same policies - same order, same decisions - and the set it derives from is left as it
was, for the evaluations still using it (issue 13 item 7: no recompilation of a tenant's policies per write).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentauth.issuer.policy_engine import EvaluationContext, Grant, Policy, PolicySet, Subject, build_policy

NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
SUBJECTS = [Subject("agt_a", "tool", "basic"), Subject("agt_b", "assistant", "verified", ("agt_a",))]
REQUESTS = [(action, resource) for action in ("read", "write") for resource in ("docs/1", "api/v1/agents", "x/y")]


def policy(pid: str, effect: str, action: str, resource: str, priority: int, enabled: bool, who: str) -> Policy:
    subjects: dict[str, Any] = {"all": True} if who == "all" else {"agent_ids": [who]}
    return build_policy(
        id=pid, name=pid, effect=effect, subjects=subjects, actions=[action], resources=[resource],
        conditions=None, priority=priority, enabled=enabled,
    )  # fmt: skip


policies = st.builds(
    policy,
    st.sampled_from(["pol_1", "pol_2", "pol_3", "pol_4"]),
    st.sampled_from(["allow", "deny", "require_approval"]),
    st.sampled_from(["read", "write", "*"]),
    st.sampled_from(["docs/**", "*/1", "api/v1/**", "**"]),
    st.integers(-2, 2),
    st.booleans(),
    st.sampled_from(["all", "agt_a"]),
)
# A write: (the id it removes or None, the policy it adds or None) - a create, a replacement or a delete.
writes = st.tuples(st.sampled_from([None, "pol_1", "pol_2", "pol_3", "pol_4"]), st.none() | policies)


def decisions(policy_set: PolicySet) -> list[Any]:
    grants = [Grant(frozenset({"api.read"}))]
    return [
        policy_set.evaluate(subject, action, resource, grants, EvaluationContext(NOW))
        for subject in SUBJECTS
        for action, resource in REQUESTS
    ]


@settings(max_examples=150, deadline=None)
@given(st.lists(writes, max_size=8))
def test_a_changed_set_is_the_set_compiled_anew(changes: list[tuple[str | None, Policy | None]]) -> None:
    stored: dict[str, Policy] = {}
    derived = PolicySet(())
    for asked, added in changes:
        # One policy per id: a write of an existing id replaces it.
        removed = added.id if added is not None and added.id in stored else asked
        before, before_decisions = derived, decisions(derived)
        before_policies = list(derived.policies)
        derived = derived.changed(removed, added)
        if removed is not None:
            stored.pop(removed, None)
        if added is not None:
            stored[added.id] = added
        anew = PolicySet(stored.values())
        assert derived.policies == anew.policies
        assert decisions(derived) == decisions(anew)
        assert before.policies == before_policies and decisions(before) == before_decisions  # left as it was
