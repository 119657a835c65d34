"""`agentauth verify` with a DPoP-bound access token and its proof (``--dpop-proof``, ``--htm``, ``--htu``; RFC 9449
section 7.1), run as the installed command in a subprocess, fully offline (``--jwks`` file, ``--status-dir``):
exit 0 with the binding shown, 1 with the failed check named, 64 for an incomplete command line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dpop_support import bound_token, joserfc_proof
from joserfc.jwk import ECKey
from sdk_support import ISSUER_URL, LIST_URL, FakeIssuer

from agentauth.keys import KeyPair
from agentauth.vc import status_list_filename
from agentauth.vc.dpop import create_proof
from live_server import BIN

URI = "https://api.test/reports"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[FakeIssuer, list[str]]:
    """A fake issuer, and the offline arguments trusting its keys and its status list."""
    issuer = FakeIssuer()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"issuer": ISSUER_URL, "keys": issuer.ring.jwks()["keys"]}))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / status_list_filename(LIST_URL)).write_text(issuer.list_jwt)
    return issuer, ["--jwks", str(jwks), "--status-dir", str(lists)]


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    return subprocess.run(
        [str(BIN / "agentauth"), "verify", *args], check=False, capture_output=True, text=True, env=env, timeout=60
    )


def checks(result: subprocess.CompletedProcess[str]) -> tuple[dict[str, Any], dict[str, str]]:
    report = json.loads(result.stdout)
    return report, {c["name"]: f"{c['result']} {c['detail']}" for c in report["checks"]}


def test_a_bound_token_verifies_with_its_proof(setup: tuple[FakeIssuer, list[str]]) -> None:
    issuer, offline = setup
    pair = KeyPair.generate()
    token, claims = bound_token(issuer, pair.public.thumbprint())
    proof = create_proof(pair, "GET", URI, access_token=token)
    ok = verify(token, *offline, "--dpop-proof", proof, "--htm", "GET", "--htu", URI, "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report, result = checks(ok)
    assert report["valid"] is True and report["claims"]["cnf"] == {"jkt": pair.public.thumbprint()}
    assert result["DPoP binding"] == f"pass proof by the bound key {pair.public.thumbprint()}"
    assert result["status"].startswith("pass not revoked")

    # The same proof a second time is a replay only within one verifier: each run of the command is its own.
    human = verify(token, *offline, "--dpop-proof", proof, "--htm", "get", "--htu", URI)
    assert human.returncode == 0 and f"VALID access token of {claims['sub']}" in " ".join(human.stdout.split())

    key = ECKey.generate_key("P-256")
    es256, _ = bound_token(issuer, key.thumbprint())
    third_party = joserfc_proof(key, "POST", URI, es256)
    assert verify(es256, *offline, "--dpop-proof", third_party, "--htm", "POST", "--htu", URI).returncode == 0


def test_a_bound_token_fails_without_or_with_a_wrong_proof(setup: tuple[FakeIssuer, list[str]], tmp_path: Path) -> None:
    issuer, offline = setup
    pair = KeyPair.generate()
    token, _ = bound_token(issuer, pair.public.thumbprint())
    proof_file = tmp_path / "proof.jwt"
    proof_file.write_text(create_proof(pair, "GET", URI, access_token=token))
    wrong_key = create_proof(KeyPair.generate(), "GET", URI, access_token=token)
    unbound, _ = issuer.token(("api.read",))
    cases = {
        "dpop_required": (token,),
        "invalid_dpop_proof": (token, "--dpop-proof", f"@{proof_file}", "--htm", "GET", "--htu", f"{URI}/other"),
        "dpop_key_mismatch": (token, "--dpop-proof", wrong_key, "--htm", "GET", "--htu", URI),
        "not_dpop_bound": (unbound, "--dpop-proof", f"@{proof_file}", "--htm", "GET", "--htu", URI),
    }
    for code, args in cases.items():
        failed = verify(*args, *offline, "--json")
        assert failed.returncode == 1, (code, failed.stdout, failed.stderr)
        report, result = checks(failed)
        assert report["code"] == code
        assert result["DPoP binding"].startswith(f"fail {code}: "), result
        assert result["status"] == "skip not reached"
    human = verify(token, *offline)
    assert human.returncode == 1 and "INVALID dpop_required" in human.stdout


def test_an_incomplete_dpop_command_line_is_a_usage_error(setup: tuple[FakeIssuer, list[str]]) -> None:
    issuer, offline = setup
    token, _ = issuer.token(("api.read",))
    no_request = verify(token, *offline, "--dpop-proof", "a.b.c")
    assert no_request.returncode == 64 and "--htm METHOD and --htu URI" in no_request.stderr
    no_proof = verify(token, *offline, "--htm", "GET", "--htu", URI)
    assert no_proof.returncode == 64 and "--dpop-proof" in no_proof.stderr
    credential = issuer.list_jwt  # not an access token
    not_a_token = verify(credential, *offline, "--dpop-proof", "a.b.c", "--htm", "GET", "--htu", URI)
    assert not_a_token.returncode == 64 and "access token only" in not_a_token.stderr
