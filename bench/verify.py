"""What a third-party verifier sustains, against the raw Ed25519 ceiling (issue: verifier SDK).

Fully offline, as an air-gapped resource server runs: the verifier is built by ``agentauth.sdk.offline_verifier``
from a JWKS file and a status-list directory written to a temporary directory, then warmed (the status list is
verified and decoded once, then served from the cache for its ttl). Measured in interleaved rounds, next to raw
``cryptography`` Ed25519 verify in the same run:

* access-token verify/s - goal >= 0.70 of raw verify (one signature);
* depth-3 delegated-token verify/s - four signatures (token + three links) - goal >= 0.70 of raw verify / 4;
* the same access token through ``OnlineVerifier`` with a warm cache, to show the online layer costs ~nothing.

Run: .venv/bin/python bench/verify.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agentauth.did import encode_did_key, url_to_did_web
from agentauth.keys import KeyPair, KeyRing
from agentauth.sdk import OnlineVerifier, offline_verifier
from agentauth.vc import CredentialIssuer, StatusList, status_list_filename
from chain import access_token, delegated_token
from core import interleaved

ISSUER_URL = "http://127.0.0.1:8000"
LIST_URL = f"{ISSUER_URL}/api/v1/status-lists/1"
SCOPES = ["api.read", "agents.read", "agents.write", "delegations.write"]


def build(now: datetime, directory: Path) -> tuple[CredentialIssuer, Path, Path, str]:
    """An issuer, its exported JWKS file and status-list directory, and the signed list."""
    ring = KeyRing.create(url_to_did_web(ISSUER_URL), now)
    issuer = CredentialIssuer(ISSUER_URL, ring)
    bits = StatusList()
    for index in range(0, 131_072, 97):  # a list with some revocations in it
        bits.set(index)
    list_jwt = issuer.issue_status_list_credential(
        list_url=LIST_URL, encoded_list=bits.encode(), now=now, ttl_seconds=3600, valid_for_seconds=86_400
    )
    jwks = directory / "jwks.json"
    jwks.write_bytes(orjson.dumps({"issuer": ISSUER_URL} | ring.jwks()))
    lists = directory / "lists"
    lists.mkdir()
    (lists / status_list_filename(LIST_URL)).write_text(list_jwt)
    return issuer, jwks, lists, list_jwt


def tokens(issuer: CredentialIssuer, now: datetime) -> tuple[str, str]:
    """A plain access token and a token acting under a depth-3 delegation chain."""
    agent = encode_did_key(KeyPair.generate().public.raw)
    return access_token(issuer, agent, SCOPES, LIST_URL, now), delegated_token(issuer, SCOPES, LIST_URL, now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        issuer, jwks_file, lists, list_jwt = build(now, Path(tmp))
        token, chained = tokens(issuer, now)
        verifier = offline_verifier(jwks_file, status_dir=lists)
        # Warm: the status list is read, verified and decoded once; every later check is a cache hit.
        assert verifier.verify_access_token(token, audience=ISSUER_URL).scopes == set(SCOPES)
        assert len(verifier.verify_access_token(chained).chain) == 3

        def serve(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("jwks.json"):
                return httpx.Response(200, content=jwks_file.read_bytes(), headers={"cache-control": "max-age=3600"})
            return httpx.Response(200, text=list_jwt, headers={"cache-control": "max-age=3600"})

        online = OnlineVerifier(ISSUER_URL, http=httpx.Client(transport=httpx.MockTransport(serve)))
        assert online.verify_access_token(token).scopes == set(SCOPES)

        raw_key = Ed25519PrivateKey.generate()
        message = token.rsplit(".", 1)[0].encode()
        signature = raw_key.sign(message)
        public = raw_key.public_key()

        rates = interleaved(
            {
                "raw_verify": lambda: public.verify(signature, message),
                "token": lambda: verifier.verify_access_token(token, audience=ISSUER_URL),
                "chain": lambda: verifier.verify_access_token(chained),
                "online": lambda: online.verify_access_token(token, audience=ISSUER_URL),
            },
            args.seconds,
        )
    raw, token_rate, chain_rate, online_rate = rates["raw_verify"], rates["token"], rates["chain"], rates["online"]
    token_ratio, chain_ratio = token_rate / raw, chain_rate / (raw / 4)
    print(f"# bench/verify.py on {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"# access token: {len(token)} bytes; depth-3 delegated token: {len(chained)} bytes; warm cache\n")
    print("| operation | per second | ratio | goal | met |")
    print("|---|---:|---:|---:|:---:|")
    print(f"| raw Ed25519 verify (cryptography) | {raw:,.0f} | 1.00 | | |")
    print(
        f"| offline access-token verify (JWKS file + status-list dir) | {token_rate:,.0f} | "
        f"{token_ratio:.2f} of raw verify | >= 0.70 | {'yes' if token_ratio >= 0.70 else 'NO'} |"
    )
    print(
        f"| offline depth-3 chain verify (4 signatures) | {chain_rate:,.0f} | "
        f"{chain_ratio:.2f} of raw verify / 4 | >= 0.70 | {'yes' if chain_ratio >= 0.70 else 'NO'} |"
    )
    online_ratio = online_rate / raw
    print(f"| OnlineVerifier verify (warm cache) | {online_rate:,.0f} | {online_ratio:.2f} of raw verify | | |")


if __name__ == "__main__":
    main()
