"""The policy engine behind ``check_permission`` and every REST route: deny-overrides, default-deny.

Decision procedure for (agent, action, resource, context):
1. Candidate policies come from an index by action and by the first resource segment, so evaluation touches
   only policies that could match, not every policy of the tenant.
2. A policy *applies* when it is enabled, its subjects match the agent (any listed agent id, agent type or
   trust level; or ``all``; a *deny* listing an agent id also binds the agents below that one and its
   delegates acting for it), one of its actions is the action (or ``*``), one of its resource patterns
   matches (``*`` = exactly one segment, ``**`` = any number of segments), and every condition holds.
3. If any ``deny`` applies, the answer is deny - whatever allows say, whatever their priority.
4. Otherwise an applying ``allow`` policy, or a scope of the agent's own grant whose default allow covers the
   request (``SCOPE_ALLOWS``), or a scope of an active delegation to the agent, allows.
5. Otherwise deny (default deny).
Priority orders the policies: the reported ``matched_policy`` is the highest-priority one that decided.

Conditions: ``time_window`` {start "HH:MM", end "HH:MM", days ["mon".."sun"], timezone IANA}, ``source_ips``
[CIDR...], ``max_delegation_depth`` n (applies only up to n hops), ``min_delegation_depth`` n (applies only from
n hops on - e.g. a deny on deeply delegated requests). A condition whose input is missing from the request (no IP known)
counts as *not* met for an allow and as met for a deny: missing information never widens access.
"""

from __future__ import annotations

import bisect
import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agentauth.errors import InvalidRequest
from agentauth.issuer.policy_patterns import (
    MAX_FLOATING_SEGMENTS,
    MAX_INFIX_LENGTH,
    MAX_RESOURCE_LENGTH,
    Glob,
    check_pattern_limits,
    compile_pattern,
    segments,
)

# The pattern matcher is ``policy_patterns``'; its names stay importable from the engine, as before the split.
__all__ = [
    "ACTIONS", "DAYS", "MAX_FLOATING_SEGMENTS", "MAX_INFIX_LENGTH", "MAX_RESOURCE_LENGTH", "SCOPE_ALLOWS",
    "Conditions", "Decision", "EvaluationContext", "Glob", "Grant", "Policy", "PolicySet", "Subject", "TimeWindow",
    "build_policy", "check_pattern_limits", "compile_pattern", "segments",
]  # fmt: skip

ACTIONS: Final = ("read", "write", "delete", "execute", "delegate", "admin")
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Default allows that scopes carry. AgentAuth's own operations are resources too (issuer/operations.py).
API_PREFIX = "api/v1"
SCOPE_ALLOWS: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    "agents.read": (("read",), "api/v1/agents/**"),
    "agents.write": (("write", "delete"), "api/v1/agents/**"),
    "credentials.read": (("read",), "api/v1/credentials/**"),
    "credentials.write": (("write", "delete"), "api/v1/credentials/**"),
    "delegations.read": (("read",), "api/v1/delegations/**"),
    "delegations.write": (("write", "delete", "delegate"), "api/v1/delegations/**"),
    "policies.read": (("read",), "api/v1/policies/**"),
    "policies.write": (("write", "delete", "admin"), "api/v1/policies/**"),
    "audit.read": (("read",), "api/v1/audit/**"),
    "resource_servers.read": (("read",), "api/v1/resource-servers/**"),
    "resource_servers.write": (("write", "delete"), "api/v1/resource-servers/**"),
    "webhooks.read": (("read",), "api/v1/webhooks/**"),
    "webhooks.write": (("write", "delete"), "api/v1/webhooks/**"),
    "tokens.introspect": (("read",), "api/v1/auth/introspect"),
    # api.* cover every resource outside AgentAuth's own API namespace (third-party resources).
    "api.read": (("read",), "**"),
    "api.write": (("write", "delete", "execute"), "**"),
}


def _outside_api(resource_parts: Sequence[str]) -> bool:
    return "/".join(resource_parts[:2]) != API_PREFIX


@dataclass(frozen=True, slots=True)
class TimeWindow:
    start: time
    end: time
    days: frozenset[str]
    zone: ZoneInfo

    def holds(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        if DAYS[local.weekday()] not in self.days:
            return False
        t = local.time()
        # A window may wrap midnight (22:00-06:00).
        return self.start <= t < self.end if self.start <= self.end else (t >= self.start or t < self.end)


@dataclass(frozen=True, slots=True)
class Conditions:
    time_window: TimeWindow | None = None
    source_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    max_delegation_depth: int | None = None
    min_delegation_depth: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Conditions:
        raw = dict(raw or {})
        unknown = set(raw) - {"time_window", "source_ips", "max_delegation_depth", "min_delegation_depth"}
        if unknown:
            raise InvalidRequest(f"unknown condition(s): {', '.join(sorted(unknown))}")
        window = None
        if raw.get("time_window") is not None:
            tw = raw["time_window"]
            try:
                zone = ZoneInfo(tw.get("timezone", "UTC"))
                days = frozenset(d.lower() for d in tw.get("days", DAYS))
                window = TimeWindow(time.fromisoformat(tw["start"]), time.fromisoformat(tw["end"]), days, zone)
            except (KeyError, TypeError, ValueError, AttributeError, ZoneInfoNotFoundError) as exc:
                raise InvalidRequest("time_window needs start and end 'HH:MM', optional days and timezone") from exc
            if not days <= set(DAYS) or not days:
                raise InvalidRequest(f"time_window days must be a non-empty list among {', '.join(DAYS)}")
            if window.start.tzinfo is not None or window.end.tzinfo is not None:
                # An offset-aware time cannot be compared with the local time of day (a 500 on every evaluation).
                raise InvalidRequest("time_window start and end are local 'HH:MM' times: give the zone as timezone")
            if window.start == window.end:
                raise InvalidRequest("time_window start and end must differ")
        ips = None
        if raw.get("source_ips") is not None:
            try:
                if not isinstance(raw["source_ips"], list) or not all(isinstance(c, str) for c in raw["source_ips"]):
                    raise TypeError("not a list of strings")
                ips = tuple(ipaddress.ip_network(c, strict=False) for c in raw["source_ips"])
            except (TypeError, ValueError) as exc:
                raise InvalidRequest("source_ips must be a list of CIDR blocks") from exc
        depths = []
        for name in ("max_delegation_depth", "min_delegation_depth"):
            depth = raw.get(name)
            if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= 10):
                raise InvalidRequest(f"{name} must be an integer 0-10")
            depths.append(depth)
        return cls(window, ips, depths[0], depths[1])

    def check(self, ctx: EvaluationContext, effect: str) -> tuple[bool, list[str]]:
        """(holds, reasons). Missing inputs: an allow does not apply, a deny (or require_approval) does."""
        reasons: list[str] = []
        if self.time_window is not None:
            if not self.time_window.holds(ctx.now):
                return False, ["outside the policy's time window"]
            reasons.append("within the time window")
        if self.source_ips is not None:
            if ctx.ip is None:
                return effect != "allow", ["source IP unknown"]
            try:
                address = ipaddress.ip_address(ctx.ip)
            except ValueError:
                return effect != "allow", ["source IP unparsable"]
            if not any(address in net for net in self.source_ips):
                return False, [f"source IP {ctx.ip} outside the allowed ranges"]
            reasons.append(f"source IP {ctx.ip} in range")
        if self.max_delegation_depth is not None:
            if ctx.delegation_depth > self.max_delegation_depth:
                return False, [f"delegation depth {ctx.delegation_depth} > {self.max_delegation_depth}"]
            reasons.append(f"delegation depth {ctx.delegation_depth} <= {self.max_delegation_depth}")
        if self.min_delegation_depth is not None:
            if ctx.delegation_depth < self.min_delegation_depth:
                return False, [f"delegation depth {ctx.delegation_depth} < {self.min_delegation_depth}"]
            reasons.append(f"delegation depth {ctx.delegation_depth} >= {self.min_delegation_depth}")
        return True, reasons


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a decision is about. ``bound_by``: the agents whose denials bind it too - those above it in its
    tenant (they created it, or created its creator) and, under a delegation, the delegator it acts for and
    those above that one."""

    agent_id: str
    agent_type: str
    trust_level: str
    bound_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    now: datetime
    ip: str | None = None
    delegation_depth: int = 0


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    name: str
    effect: str
    actions: frozenset[str]
    resources: tuple[str, ...]
    priority: int
    enabled: bool = True
    all_subjects: bool = False
    agent_ids: frozenset[str] = frozenset()
    agent_types: frozenset[str] = frozenset()
    trust_levels: frozenset[str] = frozenset()
    conditions: Conditions = field(default_factory=Conditions)
    patterns: tuple[Glob, ...] = ()

    def subject_reason(self, subject: Subject) -> str | None:
        if self.all_subjects:
            return "applies to all agents"
        if subject.agent_id in self.agent_ids:
            return f"names agent {subject.agent_id}"
        if self.effect != "allow":
            # A deny (or require_approval) naming an agent binds what it acts through: its sub-agents and delegates
            # (issue 12 item 5). An allow does not carry over: that would widen access.
            for other in subject.bound_by:
                if other in self.agent_ids:
                    return f"names agent {other}, whose denials bind {subject.agent_id}"
        if subject.agent_type in self.agent_types:
            return f"applies to agent type {subject.agent_type}"
        if subject.trust_level in self.trust_levels:
            return f"applies to trust level {subject.trust_level}"
        return None


@dataclass(frozen=True, slots=True)
class Grant:
    """Scopes the subject holds: its own grant (``delegation_id`` None) or an active delegation to it."""

    scopes: frozenset[str]
    delegation_id: str | None = None
    depth: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    effect: str
    basis: str  # policy | scope | delegation | default
    matched_policy: dict[str, Any] | None
    delegation_id: str | None
    reasons: list[str]


def _first_key(pattern: str) -> str:
    first = segments(pattern)[0]
    return first if "*" not in first else "*"


def _index_keys(policy: Policy) -> set[tuple[str, str]]:
    firsts = {_first_key(r) for r in policy.resources}
    return {(action, first) for action in policy.actions for first in firsts}


def _order(policy: Policy) -> tuple[int, str]:
    return -policy.priority, policy.id


class PolicySet:
    """A tenant's compiled policies, indexed by action and first resource segment."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        self.policies = sorted((p for p in policies if p.enabled), key=_order)
        # Never mutated once built: ``changed`` shares the lists it does not touch with the set it derives from.
        self._index: dict[tuple[str, str], list[Policy]] = {}
        for policy in self.policies:
            for key in _index_keys(policy):
                self._index.setdefault(key, []).append(policy)

    def changed(self, removed: str | None = None, added: Policy | None = None) -> PolicySet:
        """A new set: this one without the policy of id ``removed`` and with ``added`` (a policy write). It costs
        a pass over the list and the index entries the two sit in - not a recompilation of the tenant's policies;
        this set is left as it is, for the evaluations still using it."""
        old = next((p for p in self.policies if p.id == removed), None) if removed is not None else None
        policies = [p for p in self.policies if p is not old] if old is not None else list(self.policies)
        index = dict(self._index)
        if old is not None:
            for key in _index_keys(old):
                kept = [p for p in index[key] if p is not old]
                if kept:
                    index[key] = kept
                else:
                    del index[key]
        if added is not None and added.enabled:
            bisect.insort(policies, added, key=_order)
            for key in _index_keys(added):
                index[key] = [*index.get(key, ()), added]
        derived = PolicySet(())
        derived.policies, derived._index = policies, index
        return derived

    def _candidates(self, action: str, first: str) -> list[Policy]:
        found: dict[str, Policy] = {}
        for key in ((action, first), (action, "*"), ("*", first), ("*", "*")):
            for policy in self._index.get(key, ()):
                found[policy.id] = policy
        return sorted(found.values(), key=_order)

    def evaluate(
        self,
        subject: Subject,
        action: str,
        resource: str,
        grants: Sequence[Grant],
        ctx: EvaluationContext,
        approved: Sequence[Any] = (),
    ) -> Decision:
        """``approved``: the ``authorization_details`` of the caller's token (an owner's approval, CIBA); an
        ``agent_action`` entry naming this action and this resource satisfies a ``require_approval`` policy (it
        grants nothing: scopes and allows still decide)."""
        if action not in ACTIONS:
            raise InvalidRequest(f"action must be one of {', '.join(ACTIONS)}")
        parts = segments(resource)
        path = "/".join(parts)
        allow: tuple[Policy, list[str]] | None = None
        gate: tuple[Policy, list[str]] | None = None
        for policy in self._candidates(action, parts[0]):
            who = policy.subject_reason(subject)
            if who is None or not any(p.match(path) for p in policy.patterns):
                continue
            holds, why = policy.conditions.check(ctx, policy.effect)
            if not holds:
                continue
            reasons = [f"policy {policy.name!r} (priority {policy.priority}) {who}", *why]
            if policy.effect == "deny":
                return Decision(False, "deny", "policy", _ref(policy), None, [*reasons, "deny overrides any allow"])
            if policy.effect == REQUIRE_APPROVAL:
                if gate is None and not approval_covers(approved, action, path):
                    gate = (policy, reasons)
            elif allow is None:
                allow = (policy, reasons)
        if gate is not None:
            how = approval_request_for(action, path)
            return Decision(False, REQUIRE_APPROVAL, "policy", _ref(gate[0]), None, [*gate[1], how])
        if allow is not None:
            return Decision(True, "allow", "policy", _ref(allow[0]), None, allow[1])
        for grant in grants:
            for scope in sorted(grant.scopes):
                allowed = SCOPE_ALLOWS.get(scope)
                if allowed is None or action not in allowed[0]:
                    continue
                pattern = allowed[1]
                if pattern == "**" and not _outside_api(parts):
                    continue
                if pattern != "**" and not _compiled(pattern).match(path):
                    continue
                if grant.delegation_id is None:
                    return Decision(True, "allow", "scope", None, None, [f"scope {scope} allows {action} on {pattern}"])
                return Decision(
                    True,
                    "allow",
                    "delegation",
                    None,
                    grant.delegation_id,
                    [f"delegation {grant.delegation_id} grants scope {scope}, which allows {action} on {pattern}"],
                )
        return Decision(False, "deny", "default", None, None, ["no policy or scope allows this (default deny)"])


REQUIRE_APPROVAL = "require_approval"
EFFECTS = ("allow", "deny", REQUIRE_APPROVAL)
APPROVED_ACTION = "agent_action"  # the authorization_details type that approves one action on one resource


def approval_details(action: str, path: str) -> list[dict[str, Any]]:
    """The ``authorization_details`` to ask approval of ``action`` on ``path`` with (RFC 9396 common fields)."""
    return [{"type": APPROVED_ACTION, "actions": [action], "locations": [path]}]


def approval_request_for(action: str, path: str) -> str:
    return (
        "a person must approve this first: ask (CIBA backchannel authentication; MCP request_approval) with "
        f"authorization_details={json.dumps(approval_details(action, path))}, then call with the token it returns"
    )


def approval_covers(approved: Sequence[Any], action: str, path: str) -> bool:
    """Whether an approved ``agent_action`` entry names ``action`` and the resource ``path`` exactly."""
    for entry in approved:
        if not isinstance(entry, Mapping) or entry.get("type") != APPROVED_ACTION:
            continue
        actions, locations = entry.get("actions"), entry.get("locations")
        if not isinstance(actions, list) or action not in actions or not isinstance(locations, list):
            continue
        if any(isinstance(loc, str) and "/".join(segments(loc)) == path for loc in locations):
            return True
    return False


_COMPILED: dict[str, Glob] = {}


def _compiled(pattern: str) -> Glob:
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        compiled = _COMPILED[pattern] = compile_pattern(pattern)
    return compiled


def _ref(policy: Policy) -> dict[str, Any]:
    return {"id": policy.id, "name": policy.name, "effect": policy.effect, "priority": policy.priority}


def _string_set(subjects: Mapping[str, Any], name: str) -> frozenset[str]:
    # A bare string would become a set of its characters: a policy that silently never applies.
    value = subjects.get(name) or []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(f"subjects.{name} must be a list of non-empty strings")
    return frozenset(value)


def build_policy(
    *,
    id: str,
    name: str,
    effect: str,
    subjects: Mapping[str, Any],
    actions: Sequence[str],
    resources: Sequence[str],
    conditions: Mapping[str, Any] | None,
    priority: int,
    enabled: bool = True,
    new: bool = True,
) -> Policy:
    """Validate and compile one policy (raises ``InvalidRequest`` with the precise problem). A ``new`` policy
    (being written) must also respect the pattern limits; a stored one is compiled as it is, so that tightening
    the limits never locks a tenant out of its own policies."""
    if effect not in EFFECTS:
        raise InvalidRequest("effect must be allow, deny or require_approval")
    if not isinstance(actions, list | tuple) or not actions or any(a not in (*ACTIONS, "*") for a in actions):
        raise InvalidRequest(f"actions must be a non-empty list of {', '.join(ACTIONS)} or '*'")
    if not isinstance(resources, list | tuple) or not resources or not all(isinstance(r, str) for r in resources):
        raise InvalidRequest("resources must be a non-empty list of patterns")
    if new:
        for resource in resources:
            check_pattern_limits(resource)
    unknown = set(subjects) - {"all", "agent_ids", "agent_types", "trust_levels"}
    if unknown:
        raise InvalidRequest(f"unknown subject selector(s): {', '.join(sorted(unknown))}")
    all_subjects = subjects.get("all", False)
    if not isinstance(all_subjects, bool):
        raise InvalidRequest("subjects.all must be true or false")
    ids, types, levels = (_string_set(subjects, name) for name in ("agent_ids", "agent_types", "trust_levels"))
    if not (all_subjects or ids or types or levels):
        raise InvalidRequest("subjects must select someone: all, agent_ids, agent_types or trust_levels")
    return Policy(
        id=id,
        name=name,
        effect=effect,
        actions=frozenset(actions),
        resources=tuple(resources),
        priority=priority,
        enabled=enabled,
        all_subjects=all_subjects,
        agent_ids=ids,
        agent_types=types,
        trust_levels=levels,
        conditions=Conditions.parse(conditions),
        patterns=tuple(compile_pattern(r) for r in resources),
    )
