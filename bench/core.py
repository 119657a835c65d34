"""Credential core throughput against the raw Ed25519 ceiling (issue: pure credential core; goals of issue 13).

Measures raw `cryptography` Ed25519 sign/s and verify/s, then access-credential issue/s, verify/s and depth-3
delegated-token verify/s (4 signatures) of tokens the verifier has not seen before (it remembers passing
signatures: a token seen again is printed apart, without a goal), and judges each against the raw figure it is
bounded by:

  issue  / raw sign                     >= 0.65
  verify / raw verify                   >= 0.80
  chain  / raw verify of its 4 signatures >= 0.75
  SDK verify of a DPoP-bound token plus its proof / raw verify >= 0.35 (two signatures: 0.5 is the ceiling)

and, without a goal, a DPoP proof check (RFC 9449 section 4.3, ``vc/dpop.py``; a proof not seen before) against
a raw verify of the proof's own signature.

The DPoP-bound row is a resource server's hot path (issue 15 item 5): ``agentauth.sdk.bearer.authenticate`` - the
one function the FastAPI dependency, the ASGI middleware and the MCP setup go through - given
``Authorization: DPoP <token>`` and the request's one proof, with a warm ``AsyncOnlineVerifier`` (keys and status
list in hand: it never suspends, so the coroutine is driven to its end without an event loop). It checks the
token's signature and claims, the proof (signature, htm, htu, iat, ath, jti into the replay cache) and that the
proof's key is the token's - two Ed25519 verifications.

How, so that the ratios do not depend on how busy the machine is:
  * a ratio is only ever taken between figures of one round: in each round every operation runs for a slice of
    time in turn (the order rotates from round to round), and the round's ratios compare neighbours in time, so
    load drift slows the raw baseline and the measured operation alike; a run's ratio is the median of its
    rounds' ratios;
  * time is this thread's CPU time (``--clock cpu``, the default): time the scheduler gives to another process
    counts for neither side (``--clock wall`` measures wall time instead);
  * ``--runs`` (default 3) whole runs; the verdict is on the median of the runs, and every run is printed.

The raw baselines do exactly the signature work of what they are compared with. For issue and verify: the
issuer's own key signing and verifying the access token's own signing input (1.3 kB). For the chain: the same
key verifying the depth-3 token's four signatures over their own signing inputs (the token's 7.4 kB, which carry
its three links, and each link's 1.3-1.5 kB: 12 kB in all). Ed25519 verification takes variable time (72-100 us
here, by signature) and hashes its whole message, so "raw verify / 4" - four verifications of the 1.3 kB access
token - charged the chain for hashing 9 kB more and for its signatures being slower or faster than that one; the
table still prints that older ratio, for comparison, without a verdict.
Run: .venv/bin/python bench/core.py [--runs 3] [--seconds 2] [--rounds 20] [--clock cpu|wall]
Exit status 1 when a ratio misses its goal.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agentauth.did import encode_did_key
from agentauth.keys import KeyPair, KeyRing, b64url_decode, b64url_encode, ed25519
from agentauth.sdk import AsyncOnlineVerifier, DPoPSettings
from agentauth.sdk.bearer import authenticate
from agentauth.vc import CredentialIssuer, StaticStatusLists, StatusEntry, StatusList, VerifiedToken, Verifier
from agentauth.vc.dpop import check_proof, create_proof
from agentauth.vc.nonces import NonceRegistry
from chain import access_token, delegated_token

ISSUER_URL = "http://127.0.0.1:8000"
LIST_URL = f"{ISSUER_URL}/api/v1/status-lists/1"

# ratio name -> (operation, baseline, signatures per operation, goal); no goal: printed for comparison only
RATIOS: dict[str, tuple[str, str, int, float | None]] = {
    "issue": ("issue", "raw_sign", 1, 0.65),
    "verify": ("verify", "raw_verify", 1, 0.80),
    "chain": ("chain", "raw_chain", 1, 0.75),
    "chain_raw4": ("chain", "raw_verify", 4, None),  # the chain's ratio before issue 13 (see above)
    "verify_seen": ("verify_seen", "raw_verify", 1, None),  # a token seen before: its signature remembered
    "dpop": ("dpop", "raw_dpop", 1, None),  # a DPoP proof (issue 15), against a raw verify of its own signature
    "dpop_token": ("dpop_token", "raw_verify", 1, 0.35),  # SDK: a DPoP-bound token and its proof (2 signatures)
}
CLOCKS: dict[str, Callable[[], int]] = {"cpu": time.thread_time_ns, "wall": time.perf_counter_ns}


def rate(fn: Callable[[], object], seconds: float, clock: Callable[[], int]) -> float:
    """Calls per second of ``fn`` over roughly ``seconds`` of ``clock``."""
    n, start = 0, clock()
    deadline = start + int(seconds * 1e9)
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = clock()
        if now >= deadline:
            return n * 1e9 / (now - start)


def one_run(
    ops: dict[str, Callable[[], object]], seconds: float, rounds: int, clock: Callable[[], int]
) -> tuple[dict[str, float], dict[str, float]]:
    """(median rate of each op, median of each round's ratios) over ``rounds`` rounds of ``seconds`` per op."""
    names = list(ops)
    rates: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in RATIOS}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        this = {name: rate(ops[name], seconds / rounds, clock) for name in order}
        for name, value in this.items():
            rates[name].append(value)
        for ratio, (op, base, signatures, _) in RATIOS.items():
            ratios[ratio].append(this[op] / (this[base] / signatures))
    return (
        {name: statistics.median(values) for name, values in rates.items()},
        {name: statistics.median(values) for name, values in ratios.items()},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="whole runs; the verdict is on their median")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per operation per run")
    parser.add_argument("--rounds", type=int, default=20, help="rounds per run; ratios are taken within a round")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu", help="this thread's CPU time, or wall")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    ops, token, chained = build_ops()
    for fn in ops.values():  # warm caches and the status list before anything counts
        rate(fn, 0.05, clock)

    load_before = os.getloadavg()
    runs = [one_run(ops, args.seconds, args.rounds, clock) for _ in range(args.runs)]
    load_after = os.getloadavg()
    rates = {name: statistics.median(run[0][name] for run in runs) for name in ops}
    ratios = {name: [run[1][name] for run in runs] for name in RATIOS}

    per = "CPU-second" if args.clock == "cpu" else "second"
    print(f"# bench/core.py on {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(
        f"# {args.runs} runs x {args.rounds} interleaved rounds, {args.seconds:g} s per operation per run, "
        f"clock {args.clock}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(f"# access token: {len(token)} bytes; depth-3 delegated token: {len(chained)} bytes\n")
    failed = report(rates, ratios, per)
    if failed:
        print(f"\nFAIL: {', '.join(failed)} below goal", file=sys.stderr)
        sys.exit(1)


def build_ops() -> tuple[dict[str, Callable[[], object]], str, str]:
    """The measured operations, the access token and the depth-3 delegated token they use."""
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

    # cryptography's own objects for the issuer's key: the raw baselines do exactly the token's signature work.
    raw_key = Ed25519PrivateKey.from_private_bytes(ring.active.pair.seed())
    public = Ed25519PublicKey.from_public_bytes(ring.active.pair.public.raw)
    message = token.rsplit(".", 1)[0].encode()
    signature = raw_key.sign(message)
    assert b64url_encode(signature) == token.rsplit(".", 1)[1]  # Ed25519 is deterministic: the token's signature
    # The chain's own four signatures over their own signing inputs: the delegated token's, then its links'.
    jwts = [chained, *orjson.loads(b64url_decode(chained.split(".")[1], canonical=False))["delegation_chain"]]
    signed = [(b64url_decode(jwt.rsplit(".", 1)[1]), jwt.rsplit(".", 1)[0].encode()) for jwt in jwts]
    assert len(signed) == 4

    forget = ed25519._VERIFIED.clear

    def raw_chain() -> None:
        for link_signature, link_input in signed:
            public.verify(link_signature, link_input)

    # DPoP proofs of one agent key for the token endpoint, each used once: a pool signed ahead, its replay cache
    # started afresh each time the pool comes round again.
    holder, at = KeyPair.generate(), time.time()
    proofs = [create_proof(holder, "POST", f"{ISSUER_URL}/api/v1/auth/token", now=at) for _ in range(5_000)]
    proof_input = proofs[0].rsplit(".", 1)[0].encode()
    proof_signature = b64url_decode(proofs[0].rsplit(".", 1)[1])
    holder_public = Ed25519PublicKey.from_public_bytes(holder.public.raw)
    replay, position = [NonceRegistry()], [0]

    def dpop() -> None:
        n = position[0]
        if n == len(proofs):
            n, replay[0] = 0, NonceRegistry()
        position[0] = n + 1
        forget()
        check_proof(proofs[n], method="POST", uri=f"{ISSUER_URL}/api/v1/auth/token", replay=replay[0], now=at)

    dpop_token = sdk_dpop_op(issuer, ring.jwks(), source, agent, scopes, holder, at)

    return (
        {
            "raw_sign": lambda: raw_key.sign(message),
            "raw_verify": lambda: public.verify(signature, message),
            "raw_chain": raw_chain,
            "issue": issue,
            # A token seen for the first time: the verifier remembers passing signatures (``keys/ed25519.py``),
            # so the memo is forgotten before each call; its cost (a clear of one entry) counts against us.
            "verify": lambda: forget() or verifier.verify_access_token(token, audience=ISSUER_URL, now=now),
            "chain": lambda: forget() or verifier.verify_access_token(chained, now=now),
            "verify_seen": lambda: verifier.verify_access_token(token, audience=ISSUER_URL, now=now),
            "raw_dpop": lambda: holder_public.verify(proof_signature, proof_input),
            "dpop": dpop,
            "dpop_token": dpop_token,
        },
        token,
        chained,
    )


def sdk_dpop_op(
    issuer: CredentialIssuer,
    jwks: Mapping[str, Any],
    source: StaticStatusLists,
    agent: str,
    scopes: list[str],
    holder: KeyPair,
    at: float,
) -> Callable[[], VerifiedToken]:
    """A resource server's hot path: ``authenticate`` of a token bound to ``holder``'s key with a fresh proof (from
    a pool signed ahead, its replay cache started afresh each time the pool comes round again)."""
    moment = datetime.fromtimestamp(at, UTC)
    bound, _ = issuer.issue_access_credential(
        subject_did=agent,
        client_id="agt_bench",
        scopes=scopes,
        audience=ISSUER_URL,
        now=moment,
        expires_at=moment + timedelta(minutes=15),
        status=StatusEntry(LIST_URL, 4242),
        dpop_jkt=holder.public.thumbprint(),
    )
    resource_uri = f"{ISSUER_URL}/api/v1/reports"
    proofs = [create_proof(holder, "GET", resource_uri, access_token=bound, now=at) for _ in range(5_000)]
    sdk = AsyncOnlineVerifier(
        ISSUER_URL, resource=ISSUER_URL, jwks=jwks, status_source=source, clock=lambda: moment,
        monotonic=lambda: 0.0,  # its caches stay fresh: no fetch is ever due during the run
    )  # fmt: skip
    settings, position = [DPoPSettings()], [0]
    authorization = f"DPoP {bound}"
    forget = ed25519._VERIFIED.clear

    def dpop_token() -> VerifiedToken:
        n = position[0]
        if n == len(proofs):
            n, settings[0] = 0, DPoPSettings()
        position[0] = n + 1
        forget()
        request = authenticate(
            sdk, authorization, ("agents.read",), dpop=settings[0], dpop_proofs=(proofs[n],), method="GET",
            uri=resource_uri,
        )  # fmt: skip
        return completed(request)

    assert dpop_token().claims["cnf"] == {"jkt": holder.public.thumbprint()}
    return dpop_token


def completed(coroutine: Coroutine[Any, Any, VerifiedToken]) -> VerifiedToken:
    """The result of a coroutine that never suspends (a warm verifier's), without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: VerifiedToken = done.value
        return result
    coroutine.close()
    raise RuntimeError("the verification suspended: its verifier was not warm")


def report(rates: dict[str, float], ratios: dict[str, list[float]], per: str) -> list[str]:
    """Print the table; the names of the ratios below their goal."""
    print(f"| operation | per {per} (median) | ratio per run | median | goal | verdict |")
    print("|---|---:|---:|---:|---:|:---:|")
    print(f"| raw Ed25519 sign (cryptography) | {rates['raw_sign']:,.0f} | | 1.00 | | |")
    print(f"| raw Ed25519 verify (cryptography) | {rates['raw_verify']:,.0f} | | 1.00 | | |")
    print(f"| raw Ed25519 verify of the chain's 4 signatures | {rates['raw_chain']:,.0f} | | 1.00 | | |")
    labels = {
        "issue": ("access credential issue", "of raw sign"),
        "verify": ("access credential verify", "of raw verify"),
        "chain": ("depth-3 chain verify (4 signatures)", "of raw verify of its 4"),
        "chain_raw4": ("depth-3 chain verify, former baseline", "of raw verify / 4"),
        "verify_seen": ("access credential verify, token seen before", "of raw verify"),
        "dpop": ("DPoP proof check (RFC 9449 section 4.3)", "of raw verify of the proof"),
        "dpop_token": ("SDK verify of a DPoP-bound token plus its proof (2 signatures)", "of raw verify"),
    }
    failed = []
    for name, (op, _, _, goal) in RATIOS.items():
        median = statistics.median(ratios[name])
        label, of = labels[name]
        each = " / ".join(f"{value:.2f}" for value in ratios[name])
        if goal is None:
            print(f"| {label} | | {each} | {median:.2f} {of} | | |")
            continue
        verdict = "PASS" if median >= goal else "FAIL"
        if verdict == "FAIL":
            failed.append(name)
        print(f"| {label} | {rates[op]:,.0f} | {each} | {median:.2f} {of} | >= {goal:.2f} | {verdict} |")
    return failed


if __name__ == "__main__":
    main()
