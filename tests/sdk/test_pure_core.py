"""``agentauth.vc`` - the verifier third parties import - needs nothing of the server: no web framework, database,
HTTP client, MCP or pydantic. Proved twice: in a fresh virtualenv holding only cryptography, base58, orjson and
pybase64, and (always, fast) in an isolated interpreter whose import system refuses the server's packages."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
DEPENDENCIES = ("cryptography", "base58", "orjson", "pybase64")
SERVER_PACKAGES = ("fastapi", "starlette", "sqlalchemy", "httpx", "mcp", "pydantic", "uvicorn", "typer", "rich")

# Issue and verify an access token, a revoked one and a delegation chain with the pure core alone.
VERIFY_SCRIPT = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta

    from agentauth.did import encode_did_key
    from agentauth.keys import KeyPair, KeyRing
    from agentauth.vc import CredentialIssuer, StaticStatusLists, StatusEntry, StatusList, VerificationError, Verifier

    now = datetime.now(UTC)
    url = "https://issuer.example"
    lst = url + "/api/v1/status-lists/1"
    ring = KeyRing.create("did:web:issuer.example", now)
    issuer = CredentialIssuer(url, ring)
    bits = StatusList()
    bits.set(7)
    status = issuer.issue_status_list_credential(
        list_url=lst, encoded_list=bits.encode(), now=now, ttl_seconds=60, valid_for_seconds=3600
    )
    verifier = Verifier(issuer_url=url, jwks=ring.jwks(), status_source=StaticStatusLists({lst: status}))
    agent = encode_did_key(KeyPair.generate().public.raw)

    def token(index):
        return issuer.issue_access_credential(
            subject_did=agent, client_id="agt_1", scopes=["api.read"], audience=url, now=now,
            expires_at=now + timedelta(minutes=5), status=StatusEntry(lst, index),
        )[0]

    assert verifier.verify_access_token(token(3), audience=url).subject == agent
    try:
        verifier.verify_access_token(token(7))
    except VerificationError as exc:
        assert exc.code == "revoked", exc.code
    else:
        raise AssertionError("a revoked token verified")
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("pure core ok")
    """
)


def test_pure_core_imports_and_verifies_with_server_packages_blocked() -> None:
    blocker = textwrap.dedent(
        f"""
        import sys
        BLOCKED = {SERVER_PACKAGES!r}

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is a server dependency; the pure core must not import it")
                return None

        sys.meta_path.insert(0, Blocker())
        sys.path.insert(0, {str(SRC)!r})
        """
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", blocker + VERIFY_SCRIPT], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pure core ok"


@pytest.mark.slow
def test_pure_core_in_a_fresh_venv_with_only_its_four_dependencies(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d", str(wheels), *DEPENDENCIES],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if download.returncode != 0:
        pytest.skip(f"cannot download wheels (offline?): {download.stderr.strip()[-300:]}")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index"]
    subprocess.run(
        [*install, "--find-links", str(wheels), *DEPENDENCIES],
        check=True,
        capture_output=True,
        timeout=120,
    )
    installed = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(sorted(d.metadata['Name'].lower() for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not any(name in installed for name in SERVER_PACKAGES), installed
    script = f"BLOCKED = {SERVER_PACKAGES!r}\n" + VERIFY_SCRIPT
    result = subprocess.run(
        [str(python), "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pure core ok"
