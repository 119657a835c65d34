"""The agent's credentials file (``agentauth.sdk.credentials``): round trip, 0600, atomic replacement, refusals
that name the problem and never a secret."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from agentauth.keys import KeyPair
from agentauth.sdk.credentials import Credentials, CredentialsFileError, load, save

SECRET = "ak_live_do-not-print-me"


def credentials() -> Credentials:
    key = KeyPair.generate()
    return Credentials(
        agent_id="a1", did="did:key:z6MkExample", issuer="http://127.0.0.1:8000", api_key=SECRET,
        private_key_jwk=key.private_jwk(), refresh_token="rt_secret",
    )  # fmt: skip


def test_round_trip_is_owner_only_and_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "agent.json"
    first = credentials()
    save(path, first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load(path) == first
    held = load(path).key()
    assert held is not None and held.private_jwk() == first.private_key_jwk
    rotated = first.with_refresh_token("rt_next")
    save(path, rotated)
    assert load(path).refresh_token == "rt_next"
    assert [p.name for p in path.parent.iterdir()] == ["agent.json"]  # no temporary file left behind
    assert SECRET not in repr(first) and "rt_secret" not in repr(first)


def test_a_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path / "agent.json", credentials())
    os.chmod(path, 0o644)
    with pytest.raises(CredentialsFileError, match="chmod 600") as caught:
        load(path)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json " + SECRET, "does not hold JSON"),
        ("[1]", "JSON object"),
        (json.dumps({"did": "x", "api_key": SECRET}), "agent_id"),
        (json.dumps({"agent_id": "a"}), "holds no credential"),
        (json.dumps({"agent_id": "a", "api_key": 5}), "api_key must be a string"),
        (json.dumps({"agent_id": "a", "api_key": SECRET, "password": SECRET}), "unknown member"),
        (json.dumps({"agent_id": "a", "private_key_jwk": {"kty": "OKP", "d": SECRET}}), "private_key_jwk"),
    ],
)
def test_bad_files_are_refused_without_quoting_them(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "agent.json"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(CredentialsFileError, match=message) as caught:
        load(path)
    assert SECRET not in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CredentialsFileError, match=r"cannot read .*nothing\.json"):
        load(tmp_path / "nothing.json")


def test_from_quickstart_answer() -> None:
    key = KeyPair.generate()
    answer = {
        "agent": {"id": "a9", "did": "did:key:z6MkExample"}, "api_key": SECRET, "private_key_jwk": key.private_jwk(),
        "refresh_token": "rt_1", "access_token": "eyJ...",
    }  # fmt: skip
    made = Credentials.from_quickstart(answer, "http://127.0.0.1:8000")
    assert (made.agent_id, made.did, made.api_key, made.refresh_token) == ("a9", "did:key:z6MkExample", SECRET, "rt_1")
    with pytest.raises(CredentialsFileError):
        Credentials.from_quickstart({"error": "x"})
