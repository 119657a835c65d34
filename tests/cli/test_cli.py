"""Every ``agentauth`` command through a subprocess: results, exit statuses (0 valid / 1 invalid / 2 revoked /
64 usage), ``--json`` output, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentauth.cli import main
from agentauth.vc.jws import parse_compact
from live_server import LiveServer, free_port

Cli = Callable[..., Any]

NO_NETWORK = """
import socket

class _NoSocket(socket.socket):
    def __init__(self, *args, **kwargs):
        raise OSError("network disabled for this test")

def _refuse(*args, **kwargs):
    raise OSError("network disabled for this test")

socket.socket = _NoSocket
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""


def one_line_error(result: Any) -> str:
    """The failure message: a single 'error: ...' line on stderr, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return str(lines[0])


def checks(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["result"] for c in report["checks"]}


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["verify"],
        ["present"],
        ["did", "generate"],
        ["did", "resolve"],
        ["keys", "list"],
        ["keys", "rotate"],
        ["keys", "revoke"],
        ["jwks", "export"],
        ["status-list", "fetch"],
        ["admin", "suspend"],
        ["admin", "resume"],
        ["admin", "stop"],
    ],
)
def test_help_everywhere(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "Usage: agentauth" in out and len(out.splitlines()) > 5


def test_version_and_usage_errors(cli: Cli) -> None:
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("agentauth ")
    unknown = cli("frobnicate")
    assert unknown.returncode == 64
    assert "No such command" in one_line_error(unknown)
    bad_port = cli("serve", "--port", "not-a-port")
    assert bad_port.returncode == 64
    one_line_error(bad_port)


def test_verify_online_human_and_json(cli: Cli, issuer: LiveServer, agent: dict[str, Any]) -> None:
    human = cli("verify", agent["token"], "--issuer", issuer.url)
    assert human.returncode == 0, human.stderr
    for check in ("structure", "algorithm", "key", "signature", "issuer", "validity period", "status"):
        assert check in human.stdout
    assert "VALID access token of " + agent["agent"]["did"] in human.stdout

    as_json = cli("verify", "-", "--issuer", issuer.url, "--audience", issuer.url, "--json", stdin=agent["token"])
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["valid"] is True and report["kind"] == "access_token" and report["code"] is None
    assert report["claims"]["sub"] == agent["agent"]["did"]
    results = checks(report)
    assert results["signature"] == results["status"] == results["audience"] == "pass"
    assert results["delegation chain"] == "skip"

    identity = cli("verify", agent["identity_credential"], "--issuer", issuer.url, "--json")
    assert identity.returncode == 0, identity.stdout
    assert json.loads(identity.stdout)["kind"] == "identity_credential"


def test_verify_invalid_tokens_and_bad_invocations(
    cli: Cli, issuer: LiveServer, agent: dict[str, Any], tmp_path: Path
) -> None:
    head, payload, signature = agent["token"].split(".")
    tampered = cli("verify", f"{head}.{payload}.{signature[::-1]}", "--issuer", issuer.url, "--json")
    assert tampered.returncode == 1
    report = json.loads(tampered.stdout)
    assert report["valid"] is False and report["code"] in ("invalid_signature", "malformed")

    wrong_audience = cli("verify", agent["token"], "--issuer", issuer.url, "--audience", "https://else", "--json")
    assert wrong_audience.returncode == 1
    report = json.loads(wrong_audience.stdout)
    assert report["code"] == "invalid_audience" and checks(report)["audience"] == "fail"
    assert checks(report)["signature"] == "pass" and checks(report)["status"] == "skip"

    human = cli("verify", agent["token"], "--issuer", issuer.url, "--audience", "https://else")
    assert human.returncode == 1 and "INVALID invalid_audience" in human.stdout

    no_anchor = cli("verify", agent["token"])
    assert no_anchor.returncode == 64
    assert "--issuer" in one_line_error(no_anchor)

    missing = cli("verify", f"@{tmp_path / 'nope.jwt'}", "--issuer", issuer.url)
    assert missing.returncode == 1
    assert "cannot read token" in one_line_error(missing)

    unreachable = cli("verify", agent["token"], "--issuer", f"http://127.0.0.1:{free_port()}", "--json")
    assert unreachable.returncode == 1
    assert json.loads(unreachable.stdout)["code"] == "jwks_unavailable"


def test_offline_round_trip_with_revocation(
    cli: Cli, issuer: LiveServer, agent: dict[str, Any], token_factory: Callable[[str], str], tmp_path: Path
) -> None:
    jwks_file = tmp_path / "jwks.json"
    exported = cli("jwks", "export", "--issuer", issuer.url, "--out", str(jwks_file))
    assert exported.returncode == 0, exported.stderr
    fetched = json.loads(jwks_file.read_text())
    assert fetched["issuer"] == issuer.url and fetched["keys"]
    from_config = cli("jwks", "export")  # the configured service's own key ring (shared data directory)
    assert from_config.returncode == 0, from_config.stderr
    assert json.loads(from_config.stdout) == fetched

    token = token_factory(agent["api_key"])
    token_file = tmp_path / "token.jwt"
    token_file.write_text(token + "\n")
    lists = tmp_path / "lists"
    saved = cli("status-list", "fetch", "--issuer", issuer.url, "--dir", str(lists), "--json")
    assert saved.returncode == 0, saved.stderr
    entries = json.loads(saved.stdout)["lists"]
    assert entries and all(Path(e["file"]).is_file() and e["size"] >= 131_072 for e in entries)

    # No network at all: sockets are disabled in the verifying process.
    offline_env = dict(issuer.env)
    (tmp_path / "nonet").mkdir()
    (tmp_path / "nonet" / "sitecustomize.py").write_text(NO_NETWORK)
    offline_env["PYTHONPATH"] = str(tmp_path / "nonet")
    blocked = cli("verify", f"@{token_file}", "--issuer", issuer.url, "--json", env=offline_env)
    assert json.loads(blocked.stdout)["code"] == "jwks_unavailable"  # proof that the block works
    valid = cli("verify", f"@{token_file}", "--jwks", str(jwks_file), "--status-dir", str(lists), env=offline_env)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert "VALID" in valid.stdout

    no_status = cli("verify", f"@{token_file}", "--jwks", str(jwks_file), "--json", env=offline_env)
    assert no_status.returncode == 1 and json.loads(no_status.stdout)["code"] == "status_unavailable"
    skipped = cli("verify", f"@{token_file}", "--jwks", str(jwks_file), "--skip-status", "--json", env=offline_env)
    assert skipped.returncode == 0 and checks(json.loads(skipped.stdout))["status"] == "skip"

    revoke = httpx.post(f"{issuer.url}/api/v1/auth/revoke", data={"token": token, "client_secret": agent["api_key"]})
    assert revoke.status_code == 200
    refreshed = cli("status-list", "fetch", "--issuer", issuer.url, "--dir", str(lists), "--for", f"@{token_file}")
    assert refreshed.returncode == 0, refreshed.stderr
    # One line per list the token names: "<url> -> <file> (<n> set bits of <size>)"; the revocation list has the bit,
    # its suspension twin has none.
    lines = dict(line.split(" -> ", 1) for line in refreshed.stdout.strip().splitlines())
    bits = {url.rsplit("/", 1)[1]: int(rest.rsplit("(", 1)[1].split()[0]) for url, rest in lines.items()}
    assert len(bits) == 2 and bits.pop("suspension") == 0 and next(iter(bits.values())) >= 1
    revoked = cli(
        "verify", f"@{token_file}", "--jwks", str(jwks_file), "--status-dir", str(lists), "--json", env=offline_env
    )
    assert revoked.returncode == 2, revoked.stdout
    report = json.loads(revoked.stdout)
    assert report["code"] == "revoked" and checks(report)["status"] == "fail"
    human = cli("verify", f"@{token_file}", "--jwks", str(jwks_file), "--status-dir", str(lists), env=offline_env)
    assert human.returncode == 2 and "REVOKED" in human.stdout

    foreign = cli("status-list", "fetch", "--issuer", issuer.url, "--dir", str(lists), "http://169.254.169.254/x")
    assert foreign.returncode == 1
    assert "outside the issuer" in one_line_error(foreign)


def test_did_generate_and_resolve(cli: Cli, issuer: LiveServer, tmp_path: Path) -> None:
    generated = cli("did", "generate", "--json")
    assert generated.returncode == 0
    made = json.loads(generated.stdout)
    assert made["did"].startswith("did:key:z6Mk") and made["private_jwk"]["d"] and "d" not in made["public_jwk"]

    key_file = tmp_path / "agent.jwk"
    to_file = cli("did", "generate", "--out", str(key_file))
    assert to_file.returncode == 0
    did = to_file.stdout.strip()
    assert did.startswith("did:key:z6Mk") and "d" in json.loads(key_file.read_text())
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = cli("did", "generate", "--out", str(key_file))
    assert again.returncode == 1 and "--force" in one_line_error(again)

    resolved = cli("did", "resolve", did)
    assert resolved.returncode == 0
    document = json.loads(resolved.stdout)
    assert document["id"] == did and document["verificationMethod"][0]["controller"] == did

    port = issuer.url.rsplit(":", 1)[1]
    web = cli("did", "resolve", f"did:web:127.0.0.1%3A{port}", "--http")
    assert web.returncode == 0, web.stderr
    assert json.loads(web.stdout)["id"] == f"did:web:127.0.0.1%3A{port}"

    failed = cli("did", "resolve", "did:key:zNotAKey")
    assert failed.returncode == 1
    assert "invalid did:key" in one_line_error(failed)


def test_present_and_verify_presentations(cli: Cli, issuer: LiveServer, agent: dict[str, Any], tmp_path: Path) -> None:
    saved = tmp_path / "quickstart.json"
    saved.write_text(json.dumps(agent))  # a saved quickstart response works as --key
    credential = tmp_path / "identity.jwt"
    credential.write_text(agent["identity_credential"])
    audience, nonce = "https://verifier.test", "n-0123456789"
    made = cli("present", f"@{credential}", "--key", str(saved), "--audience", audience, "--nonce", nonce, "--json")
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    assert result["holder"] == agent["agent"]["did"] and result["credentials"] == 1
    vp = result["presentation"]
    assert parse_compact(vp).payload["nonce"] == nonce

    ok = cli("verify", vp, "--issuer", issuer.url, "--audience", audience, "--nonce", nonce, "--json")
    assert ok.returncode == 0, ok.stdout
    report = json.loads(ok.stdout)
    assert report["kind"] == "presentation" and checks(report)["holder binding"] == "pass"
    assert checks(report)["credentials"] == "pass"

    replay_nonce = cli("verify", vp, "--issuer", issuer.url, "--audience", audience, "--nonce", "other", "--json")
    assert replay_nonce.returncode == 1 and checks(json.loads(replay_nonce.stdout))["nonce"] == "fail"
    no_nonce = cli("verify", vp, "--issuer", issuer.url)
    assert no_nonce.returncode == 64
    one_line_error(no_nonce)

    # Someone else's credential, presented with my key: holder binding fails on the credential.
    stranger = tmp_path / "stranger.jwk"
    assert cli("did", "generate", "--out", str(stranger)).returncode == 0
    plain = cli("present", f"@{credential}", "--key", str(stranger), "--audience", audience, "--nonce", nonce)
    assert plain.returncode == 0
    stolen = cli("verify", plain.stdout.strip(), "--issuer", issuer.url, "--audience", audience, "--nonce", nonce)
    assert stolen.returncode == 1 and "holder_mismatch" in stolen.stdout

    not_a_key = tmp_path / "bad.jwk"
    not_a_key.write_text('{"kty": "RSA"}')
    bad_key = cli(
        "present", agent["identity_credential"], "--key", str(not_a_key), "--audience", audience, "--nonce", nonce
    )
    assert bad_key.returncode == 1 and "private Ed25519 JWK" in one_line_error(bad_key)


def test_keys_list_rotate_revoke_against_the_live_server(
    cli: Cli, issuer: LiveServer, agent: dict[str, Any], token_factory: Callable[[str], str]
) -> None:
    listed = cli("keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    before = {k["state"]: k["kid"] for k in json.loads(listed.stdout)}
    assert set(before) >= {"active", "next"}
    old_token = token_factory(agent["api_key"])
    rotated = cli("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new_kid = rotated.stdout.strip().removeprefix("active key: ")
    assert new_kid == before["next"]  # the pre-published key takes over

    # The running server adopts the stored ring within seconds (its key-maintenance loop).
    deadline = time.monotonic() + 15
    while True:
        new_token = token_factory(agent["api_key"])
        if parse_compact(new_token).header["kid"] == new_kid:
            break
        assert time.monotonic() < deadline, "server did not pick up the rotation"
        time.sleep(0.5)
    for token in (new_token, old_token):
        verified = cli("verify", token, "--issuer", issuer.url, "--json")
        assert verified.returncode == 0, verified.stdout

    dropped = cli("keys", "revoke", before["active"])  # the retired key: compromise drill
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout.startswith(f"dropped {before['active']}; revoked ")
