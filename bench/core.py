"""Credential core throughput against the raw Ed25519 ceiling (issue: pure credential core).

Prints raw `cryptography` Ed25519 sign/s and verify/s, then access-credential issue/s, verify/s and depth-3
delegated-token verify/s (4 signatures), each with its ratio to the raw figure it is bounded by.
Run: .venv/bin/python bench/core.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agentauth.did import encode_did_key
from agentauth.keys import KeyPair, KeyRing
from agentauth.vc import CredentialIssuer, StaticStatusLists, StatusList, Verifier
from chain import access_token, delegated_token

ISSUER_URL = "http://127.0.0.1:8000"
LIST_URL = f"{ISSUER_URL}/api/v1/status-lists/1"


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over roughly ``seconds``."""
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            fn()
        n += 100
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def interleaved(ops: dict[str, Callable[[], object]], seconds: float, rounds: int = 5) -> dict[str, float]:
    """Median rate of each op over ``rounds`` rounds that take turns, so that a noisy neighbour on this
    2-core machine slows the raw baseline and the measured operation alike instead of skewing one ratio."""
    samples: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(rounds):
        for name, fn in ops.items():
            samples[name].append(rate(fn, seconds / rounds))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    now = datetime.now(UTC)
    ring = KeyRing.create("did:web:127.0.0.1%3A8000", now)
    issuer = CredentialIssuer(ISSUER_URL, ring)
    status = StatusList()
    source = StaticStatusLists(
        {
            LIST_URL: issuer.issue_status_list_credential(
                list_url=LIST_URL, encoded_list=status.encode(), now=now, ttl_seconds=3600, valid_for_seconds=86400
            )
        }
    )
    verifier = Verifier(issuer_url=ISSUER_URL, jwks=ring.jwks(), status_source=source)
    agent = encode_did_key(KeyPair.generate().public.raw)
    scopes = ["agents.read", "agents.write", "credentials.read", "tokens.introspect"]

    def issue() -> str:
        return access_token(issuer, agent, scopes, LIST_URL, now)

    token = issue()

    # A depth-3 chain: root -> d1 -> d2 -> d3, and d3's token acting for the root.
    chained = delegated_token(issuer, scopes, LIST_URL, now)
    assert len(verifier.verify_access_token(chained, now=now).chain) == 3

    raw_key = Ed25519PrivateKey.generate()
    message = token.rsplit(".", 1)[0].encode()
    signature = raw_key.sign(message)
    public = raw_key.public_key()

    rates = interleaved(
        {
            "raw_sign": lambda: raw_key.sign(message),
            "raw_verify": lambda: public.verify(signature, message),
            "issue": issue,
            "verify": lambda: verifier.verify_access_token(token, audience=ISSUER_URL, now=now),
            "chain": lambda: verifier.verify_access_token(chained, now=now),
        },
        args.seconds,
    )
    raw_sign, raw_verify = rates["raw_sign"], rates["raw_verify"]
    issue_rate, verify_rate, chain_rate = rates["issue"], rates["verify"], rates["chain"]

    print(f"# bench/core.py on {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"# access token: {len(token)} bytes; depth-3 delegated token: {len(chained)} bytes\n")
    print("| operation | per second | ratio | goal |")
    print("|---|---:|---:|---:|")
    print(f"| raw Ed25519 sign (cryptography) | {raw_sign:,.0f} | 1.00 | |")
    print(f"| raw Ed25519 verify (cryptography) | {raw_verify:,.0f} | 1.00 | |")
    print(f"| access credential issue | {issue_rate:,.0f} | {issue_rate / raw_sign:.2f} of raw sign | >= 0.60 |")
    print(f"| access credential verify | {verify_rate:,.0f} | {verify_rate / raw_verify:.2f} of raw verify | >= 0.70 |")
    print(
        f"| depth-3 chain verify (4 signatures) | {chain_rate:,.0f} | "
        f"{chain_rate / (raw_verify / 4):.2f} of raw verify / 4 | >= 0.70 |"
    )


if __name__ == "__main__":
    main()
