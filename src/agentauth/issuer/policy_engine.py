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

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agentauth.errors import InvalidRequest

ACTIONS: Final = ("read", "write", "delete", "execute", "delegate", "admin")
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_RESOURCE_LENGTH = 1000

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
    "tokens.introspect": (("read",), "api/v1/auth/introspect"),
    # api.* cover every resource outside AgentAuth's own API namespace (third-party resources).
    "api.read": (("read",), "**"),
    "api.write": (("write", "delete", "execute"), "**"),
}


def segments(resource: str) -> list[str]:
    """A resource path split into segments; leading/trailing slashes are insignificant."""
    if not isinstance(resource, str) or not resource.strip("/") or len(resource) > MAX_RESOURCE_LENGTH:
        raise InvalidRequest(f"resource must be a non-empty path of at most {MAX_RESOURCE_LENGTH} characters")
    parts = resource.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidRequest("resource must not contain empty, '.' or '..' segments")
    return parts


# Write-time bounds on what a pattern may ask of the matcher (see ``Glob``): with them, one match costs at most
# a few passes over the resource, whatever the pattern.
MAX_FLOATING_SEGMENTS: Final = 4
MAX_INFIX_LENGTH: Final = 32


def _segment_regex(part: str) -> str:
    """One pattern segment as a regex that never backtracks: it either consumes exactly one resource segment or
    fails, in time linear in that segment (each ``*`` commits to the leftmost place its following literal fits,
    which is optimal: it leaves the most room to what follows)."""
    if part == "*":
        return "[^/]++"
    chunks = part.split("*")
    if len(chunks) == 1:
        return re.escape(part)
    regex = re.escape(chunks[0])
    for infix in chunks[1:-1]:
        if infix:
            regex += f"(?>[^/]*?{re.escape(infix)})"
    suffix = chunks[-1]
    if not suffix:
        return regex + "[^/]*+"
    # The rest of the segment, which must end with the suffix and leave room for it after what came before.
    return regex + f"(?=[^/]{{{len(suffix)}}})[^/]*+(?<={re.escape(suffix)})"


def _run_regex(run: Sequence[str]) -> str:
    return "/".join(_segment_regex(part) for part in run)


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled resource pattern, matched without backtracking (issue 12: a pattern such as ``*a*a*a*a*b``
    once took seconds against 140 characters).

    A pattern is runs of segments separated by ``**``: ``head/**/f1/**/f2/**/tail``. The head must match the
    first segments and the tail the last ones (their places are fixed); each *floating* run between two ``**``
    is placed at its leftmost fit after the previous one, which is optimal for the same reason as in a segment.
    Each run is one regex in which nothing backtracks (``_segment_regex``), so a match costs O(resource) for the
    head, the tail and a pattern without ``**``, and O(resource x floating run) for the floating runs, which
    ``check_pattern_limits`` bounds when a policy is written."""

    pattern: str
    exact: re.Pattern[str] | None  # the whole pattern when it has no '**'
    head: re.Pattern[str] | None
    floating: tuple[re.Pattern[str], ...]
    tail: re.Pattern[str] | None
    tail_size: int

    def match(self, path: str) -> bool:
        """Whether ``path`` (segments joined by ``/``, no leading or trailing slash) matches."""
        if self.exact is not None:
            return self.exact.fullmatch(path) is not None
        head_end = -1  # index of the '/' after the head (or the path's end); -1 when there is no head
        if self.head is not None:
            found = self.head.match(path)
            if found is None:
                return False
            head_end = found.end()
        end = len(path)
        if self.tail is not None:
            cut = end
            for _ in range(self.tail_size):
                if cut < 0:
                    return False  # fewer segments than the tail
                cut = path.rfind("/", 0, cut)
            if cut < head_end or self.tail.fullmatch(path, cut + 1) is None:
                return False  # no tail there, or it would overlap the head
            end = cut  # the '/' before the tail (-1: the tail is the whole path)
        if not self.floating:
            return True
        # Each floating run is searched as "/seg/seg" in "/" + path (indexes shift by one): the search only
        # tries places after a '/', and the literal first character lets the regex engine skip to them.
        text, pos = "/" + path, head_end + 1
        for run in self.floating:
            found = run.search(text, pos, end + 1)
            if found is None:
                return False
            pos = found.end()
        return True


def _pattern_runs(pattern: str) -> list[list[str]]:
    parts = segments(pattern)
    runs: list[list[str]] = [[]]
    for part in parts:
        if part == "**":
            runs.append([])
        elif "**" in part:
            raise InvalidRequest(f"pattern {pattern!r}: '**' must be a whole segment")
        else:
            runs[-1].append(part)
    return runs


def compile_pattern(pattern: str) -> Glob:
    """``*`` as a whole segment matches exactly one segment, ``**`` any number (including none); a ``*`` inside
    a segment matches any characters but ``/``; anything else is literal."""
    runs = _pattern_runs(pattern)
    if len(runs) == 1:
        return Glob(pattern, re.compile(_run_regex(runs[0])), None, (), None, 0)
    head, *floating, tail = runs
    return Glob(
        pattern,
        None,
        re.compile(_run_regex(head) + "(?![^/])") if head else None,
        tuple(re.compile("/" + _run_regex(run) + "(?![^/])") for run in floating if run),
        re.compile(_run_regex(tail)) if tail else None,
        len(tail),
    )


def check_pattern_limits(pattern: str) -> None:
    """The bounds a new pattern must respect, so that no match can hold the event loop (400 otherwise): a match
    then costs at most about (resource length) x (``MAX_FLOATING_SEGMENTS`` + ``MAX_INFIX_LENGTH``) steps of
    the regex engine."""
    runs = _pattern_runs(pattern)
    for i, run in enumerate(runs):
        infixes = [len(infix) for part in run for infix in part.split("*")[1:-1]]
        if any(n > MAX_INFIX_LENGTH for n in infixes):
            raise InvalidRequest(
                f"pattern {pattern!r}: a literal between two '*' in a segment is at most {MAX_INFIX_LENGTH} characters"
            )
        if 0 < i < len(runs) - 1:  # a floating run, searched for
            if len(run) > MAX_FLOATING_SEGMENTS:
                raise InvalidRequest(
                    f"pattern {pattern!r}: at most {MAX_FLOATING_SEGMENTS} segments may stand between two '**'"
                )
            if sum(infixes) > MAX_INFIX_LENGTH:
                raise InvalidRequest(
                    f"pattern {pattern!r}: between two '**', the literals between two '*' in a segment total at "
                    f"most {MAX_INFIX_LENGTH} characters"
                )


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
        """(holds, reasons). Missing inputs: an allow does not apply, a deny does."""
        reasons: list[str] = []
        if self.time_window is not None:
            if not self.time_window.holds(ctx.now):
                return False, ["outside the policy's time window"]
            reasons.append("within the time window")
        if self.source_ips is not None:
            if ctx.ip is None:
                return effect == "deny", ["source IP unknown"]
            try:
                address = ipaddress.ip_address(ctx.ip)
            except ValueError:
                return effect == "deny", ["source IP unparsable"]
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
        if self.effect == "deny":
            # A deny naming an agent binds what it acts through: its sub-agents and delegates (issue 12 item 5).
            # An allow does not carry over: that would widen access.
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


class PolicySet:
    """A tenant's compiled policies, indexed by action and first resource segment."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        self.policies = sorted((p for p in policies if p.enabled), key=lambda p: (-p.priority, p.id))
        self._index: dict[tuple[str, str], list[Policy]] = {}
        for policy in self.policies:
            keys = {_first_key(r) for r in policy.resources}
            for action in policy.actions:
                for key in keys:
                    self._index.setdefault((action, key), []).append(policy)

    def _candidates(self, action: str, first: str) -> list[Policy]:
        found: dict[str, Policy] = {}
        for key in ((action, first), (action, "*"), ("*", first), ("*", "*")):
            for policy in self._index.get(key, ()):
                found[policy.id] = policy
        return sorted(found.values(), key=lambda p: (-p.priority, p.id))

    def evaluate(
        self,
        subject: Subject,
        action: str,
        resource: str,
        grants: Sequence[Grant],
        ctx: EvaluationContext,
    ) -> Decision:
        if action not in ACTIONS:
            raise InvalidRequest(f"action must be one of {', '.join(ACTIONS)}")
        parts = segments(resource)
        path = "/".join(parts)
        allow: tuple[Policy, list[str]] | None = None
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
            if allow is None:
                allow = (policy, reasons)
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
    if effect not in ("allow", "deny"):
        raise InvalidRequest("effect must be allow or deny")
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
