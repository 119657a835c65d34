"""Policy engine and delegation-chain throughput (issue 5: delegation chains, token exchange, policy engine).

In-process, single thread, interleaved rounds (as in bench/core.py) so a noisy neighbour slows every figure alike:
  * evaluations/s of ``PolicySet.evaluate`` over a tenant of 1,000 policies (a realistic mix of first segments,
    actions, subject selectors, wildcards and conditions), for a fixed mix of requests: some decided by a policy
    (allow or deny), some by a scope's default allow, some by default deny;
  * the same requests against a full scan of the 1,000 policies (what the index saves);
  * offline verify/s of a depth-3 delegated access token (4 signatures) next to raw Ed25519 verify;
  * µs per match of the worst resource patterns a policy may hold (issue 12: the write-time bounds of
    ``check_pattern_limits``) against a 4 KiB resource built to make a matcher work hardest, and of the
    pattern of the ReDoS report (``api/v1/agents/*a*a*a*a*b``, ~2 s against 140 characters before).
Run: .venv/bin/python bench/policy.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agentauth.issuer.policy_engine import (
    ACTIONS,
    MAX_FLOATING_SEGMENTS,
    MAX_INFIX_LENGTH,
    EvaluationContext,
    Grant,
    Policy,
    PolicySet,
    Subject,
    build_policy,
    check_pattern_limits,
    compile_pattern,
)
from agentauth.keys import KeyRing
from agentauth.vc import CredentialIssuer, StaticStatusLists, StatusList, Verifier
from chain import delegated_token
from core import rate

ISSUER_URL = "http://127.0.0.1:8000"
LIST_URL = f"{ISSUER_URL}/api/v1/status-lists/1"
POLICIES = 1_000
SEGMENTS = [
    "docs", "reports", "crm", "billing", "tickets", "repos", "data", "models", "tools", "calendar", "email", "files",
    "search", "analytics", "hr", "finance", "legal", "inventory", "orders", "payments", "shipping", "support", "wiki",
    "chat", "vault", "metrics", "logs", "builds", "deploys", "customers",
]  # fmt: skip
SUBPATHS = ["public", "internal", "archive", "drafts", "shared", "team-a", "team-b", "eu", "us", "2024", "2025"]
AGENT_TYPES = ("orchestrator", "autonomous", "assistant", "tool")
TRUST_LEVELS = ("untrusted", "basic", "verified", "trusted")
AGENTS = [f"agt_{i:024x}" for i in range(200)]
NOW = datetime(2025, 6, 2, 14, 30, tzinfo=UTC)


# -- the tenant's policies and the request mix ----------------------------------------------------------------


def interleaved(ops: dict[str, Callable[[], object]], seconds: float, rounds: int = 10) -> dict[str, float]:
    """Median rate (CPU time of this thread) of each op over ``rounds`` rounds, the ops interleaved in each."""
    rates: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(rounds):
        for name, fn in ops.items():
            rates[name].append(rate(fn, seconds / rounds, time.thread_time_ns))
    return {name: statistics.median(values) for name, values in rates.items()}


def random_pattern(rng: random.Random) -> str:
    seg = rng.choice(SEGMENTS)
    roll = rng.random()
    if roll < 0.02:
        return rng.choice(["**/secret/**", "*/public/**", "**/*.key"])  # first segment a wildcard: every bucket
    if roll < 0.07:
        return f"api/v1/{rng.choice(['agents', 'credentials', 'delegations', 'audit'])}/**"
    if roll < 0.40:
        return f"{seg}/{rng.choice(SUBPATHS)}/**"
    if roll < 0.60:
        return f"{seg}/*/items/*"
    if roll < 0.75:
        return f"{seg}/**"
    if roll < 0.90:
        return f"{seg}/{rng.choice(SUBPATHS)}/report-*.pdf"
    return f"{seg}/{rng.choice(SUBPATHS)}/{rng.choice(SUBPATHS)}"


def random_policy(rng: random.Random, i: int) -> Policy:
    roll = rng.random()
    if roll < 0.40:
        subjects: dict[str, Any] = {"agent_ids": rng.sample(AGENTS, rng.randint(1, 3))}
    elif roll < 0.65:
        subjects = {"agent_types": rng.sample(AGENT_TYPES, rng.randint(1, 2))}
    elif roll < 0.85:
        subjects = {"trust_levels": rng.sample(TRUST_LEVELS, rng.randint(1, 2))}
    else:
        subjects = {"all": True}
    conditions: dict[str, Any] = {}
    if rng.random() < 0.10:
        conditions["time_window"] = {"start": "08:00", "end": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
    if rng.random() < 0.10:
        conditions["source_ips"] = ["10.0.0.0/8", "2001:db8::/32"]
    if rng.random() < 0.05:
        conditions["max_delegation_depth"] = rng.randint(0, 2)
    return build_policy(
        id=f"pol_{i:024x}",
        name=f"policy {i}",
        effect="deny" if rng.random() < 0.2 else "allow",
        subjects=subjects,
        actions=["*"] if rng.random() < 0.05 else rng.sample(ACTIONS, rng.randint(1, 2)),
        resources=[random_pattern(rng) for _ in range(rng.randint(1, 2))],
        conditions=conditions,
        priority=rng.randint(-100, 100),
        enabled=rng.random() < 0.95,
    )


Request = tuple[Subject, str, str, list[Grant], EvaluationContext]


def random_request(rng: random.Random) -> Request:
    subject = Subject(rng.choice(AGENTS), rng.choice(AGENT_TYPES), rng.choice(TRUST_LEVELS))
    roll = rng.random()
    if roll < 0.70:  # inside the tenant's resource space
        seg = rng.choice(SEGMENTS)
        tail = rng.choice([
            f"{rng.choice(SUBPATHS)}/doc-{rng.randint(1, 99)}",
            f"{rng.choice(SUBPATHS)}/items/{rng.randint(1, 999)}",
            f"{rng.choice(SUBPATHS)}/report-{rng.randint(2020, 2025)}.pdf",
            f"{rng.choice(SUBPATHS)}/{rng.choice(SUBPATHS)}",
            f"{rng.choice(SUBPATHS)}/secret/plan",
        ])  # fmt: skip
        resource = f"{seg}/{tail}"
    elif roll < 0.85:  # nothing of the tenant's there
        resource = f"unknown-{rng.randint(1, 50)}/x/y"
    else:  # a REST route of the service
        resource = f"api/v1/{rng.choice(['agents', 'credentials', 'delegations', 'policies'])}/x"
    ip = rng.choice(["10.1.2.3", "203.0.113.7", "2001:db8::5", None])
    ctx = EvaluationContext(NOW, ip, rng.choice([0, 0, 0, 1, 2]))
    grants = [Grant(frozenset({"api.read", "agents.read", "delegations.read"}))]
    return subject, rng.choice(ACTIONS), resource, grants, ctx


# Worst cases for the matcher, each at the write-time bounds, against 4 KiB built so that it almost matches
# everywhere (no match in the end: the whole resource is searched).
KIB4 = 4096
_RUN = "/".join(["*a*"] * (MAX_FLOATING_SEGMENTS - 1) + ["*b*"])
_INFIX = "a" * (MAX_INFIX_LENGTH - 1) + "b"
WORST_PATTERNS: dict[str, tuple[str, str]] = {
    "reported": ("api/v1/agents/*a*a*a*a*b", "api/v1/agents/" + "a" * (KIB4 - 14)),
    "floating run of wildcards": (f"**/{_RUN}/**", "/".join(["a"] * (KIB4 // 2))),
    "floating longest infix": (f"**/*{_INFIX}*/**", "a" * KIB4),
    "longest infix, fixed place": (f"x/*{_INFIX}*", "x/" + "a" * (KIB4 - 2)),
    "many '*' in a segment": ("*a" * 499 + "*b", "a" * KIB4),
    "many floating runs": ("**/" + "*a*/**/" * 100 + "b", "/".join(["a"] * (KIB4 // 2))),
}


def glob_match(pattern: str, resource: str) -> Callable[[], object]:
    check_pattern_limits(pattern)  # every one is a pattern a tenant may write
    glob = compile_pattern(pattern)
    assert not glob.match(resource)
    return lambda: glob.match(resource)


class FullScan(PolicySet):
    """The same engine scanning every policy (by action only): the baseline the index is measured against."""

    def _candidates(self, action: str, first: str) -> list[Policy]:
        return [p for p in self.policies if action in p.actions or "*" in p.actions]


# -- a depth-3 delegated token (bench/chain.py) ----------------------------------------------------------------


def depth3_token(now: datetime) -> tuple[Verifier, str]:
    ring = KeyRing.create("did:web:127.0.0.1%3A8000", now)
    issuer = CredentialIssuer(ISSUER_URL, ring)
    status = issuer.issue_status_list_credential(
        list_url=LIST_URL, encoded_list=StatusList().encode(), now=now, ttl_seconds=3600, valid_for_seconds=86400
    )
    verifier = Verifier(issuer_url=ISSUER_URL, jwks=ring.jwks(), status_source=StaticStatusLists({LIST_URL: status}))
    scopes = ["agents.read", "api.read", "delegations.read", "delegations.write"]
    token = delegated_token(issuer, scopes, LIST_URL, now, attenuate=True)
    assert len(verifier.verify_access_token(token, audience=ISSUER_URL, now=now).chain) == 3
    return verifier, token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    policies = [random_policy(rng, i) for i in range(POLICIES)]
    indexed, scanned = PolicySet(policies), FullScan(policies)
    requests = [random_request(rng) for _ in range(2_000)]
    decisions = [indexed.evaluate(*r) for r in requests]
    for request, decision in zip(requests, decisions, strict=True):
        assert scanned.evaluate(*request) == decision, request  # the index changes speed, never the answer
    bases = Counter(f"{d.basis}:{d.effect}" for d in decisions)
    candidates = statistics.mean(len(indexed._candidates(r[1], r[2].split("/", 1)[0])) for r in requests)

    cursor = {"i": 0}

    def evaluate_with(policy_set: PolicySet) -> Callable[[], object]:
        def one() -> object:
            i = cursor["i"] = (cursor["i"] + 1) % len(requests)
            return policy_set.evaluate(*requests[i])

        return one

    verifier, token = depth3_token(datetime.now(UTC))
    raw_key = Ed25519PrivateKey.generate()
    message = token.rsplit(".", 1)[0].encode()
    signature = raw_key.sign(message)
    public = raw_key.public_key()

    rates = interleaved(
        {
            "evaluate": evaluate_with(indexed),
            "scan": evaluate_with(scanned),
            "raw_verify": lambda: public.verify(signature, message),
            "chain": lambda: verifier.verify_access_token(token, audience=ISSUER_URL),
            # A policy write: the writer's set derived with one policy replaced, against compiling the set anew.
            "changed": lambda: indexed.changed(policies[0].id, policies[0]),
            "rebuild": lambda: PolicySet(policies),
            **{f"glob:{name}": glob_match(*case) for name, case in WORST_PATTERNS.items()},
        },
        args.seconds,
    )
    evaluate, scan, raw_verify, chain = rates["evaluate"], rates["scan"], rates["raw_verify"], rates["chain"]

    print(f"# bench/policy.py on {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(
        f"# {POLICIES:,} policies ({sum(p.enabled for p in policies)} enabled) in one tenant; {len(requests):,} "
        f"requests decided as {dict(sorted(bases.items()))}; {candidates:.1f} candidate policies per request "
        f"on average; depth-3 delegated token: {len(token)} bytes\n"
    )
    print("| operation | per second | ratio | goal |")
    print("|---|---:|---:|---:|")
    print(f"| policy evaluation, 1,000 policies (indexed) | {evaluate:,.0f} | | >= 10,000 |")
    print(
        f"| policy evaluation, 1,000 policies (full scan, baseline) | {scan:,.0f} | {evaluate / scan:.1f}x slower | |"
    )
    print(f"| raw Ed25519 verify (cryptography) | {raw_verify:,.0f} | 1.00 | |")
    print(
        f"| depth-3 delegated token verify (4 signatures) | {chain:,.0f} | "
        f"{chain / (raw_verify / 4):.2f} of raw verify / 4 | >= 0.70 |"
    )
    print(
        f"| compiled set after a policy write (PolicySet.changed) | {rates['changed']:,.0f} | "
        f"{rates['changed'] / rates['rebuild']:.0f}x the rebuild of the set ({rates['rebuild']:,.0f}/s) | |"
    )
    print("\n| resource pattern against a 4 KiB resource | µs per match | goal |")
    print("|---|---:|---:|")
    for name, (pattern, _) in WORST_PATTERNS.items():
        shown = pattern if len(pattern) <= 40 else pattern[:37] + "..."
        print(f"| {name}: `{shown}` | {1e6 / rates[f'glob:{name}']:,.1f} | < 1,000 |")


if __name__ == "__main__":
    main()
