"""The README's 5-minute walkthrough runs as written: every ``sh`` and ``python`` block of that section, in order, in
one shell (the variables one step sets are the next step's), in a fresh directory, against a live server. Two
things are changed: the server's address (``http://127.0.0.1:8000`` in the README) and ``.venv/bin/`` (this test's
interpreter's directory). What the README says a step prints is checked.

Needs curl and jq (``.ci/run`` installs them where missing); skipped without them, except under CI, where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from live_server import BIN, LiveServer, start_issuer

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = re.compile(r"^## A 5-minute walkthrough\n(.*?)^## ", re.DOTALL | re.MULTILINE)
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
README_SERVER = "http://127.0.0.1:8000"


def walkthrough_blocks() -> list[tuple[str, str]]:
    section = SECTION.search(README.read_text(encoding="utf-8"))
    assert section is not None, "README.md has no '## A 5-minute walkthrough' section"
    blocks = BLOCK.findall(section.group(1))
    assert len(blocks) >= 6, blocks
    return blocks


def script(server: str) -> str:
    """The walkthrough as one bash script: python blocks run by this interpreter from a here-document."""
    lines = []
    for number, (language, written) in enumerate(walkthrough_blocks()):
        code = written.replace(README_SERVER, server).replace(".venv/bin/", f"{BIN}/")
        lines.append(f"echo '--- block {number} ({language})'")
        if language == "python":
            lines.append(f"{sys.executable} - <<'PYTHON'\n{code}PYTHON")
        else:
            lines.append(code)
    return "\n".join(lines)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    missing = [tool for tool in ("curl", "jq") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} missing: .ci/run installs them")
        pytest.skip(f"needs {', '.join(missing)}")
    (tmp_path / "issuer").mkdir()
    live = start_issuer(tmp_path / "issuer")
    try:
        yield live
    finally:
        live.stop()


def test_the_walkthrough_runs_as_written(server: LiveServer, tmp_path: Path) -> None:
    work = tmp_path / "checkout"
    work.mkdir()
    run = subprocess.run(
        ["bash", "-c", script(server.url)], cwd=work, capture_output=True, text=True, timeout=180, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    blocks = output.split("--- block ")[1:]
    assert len(blocks) == len(walkthrough_blocks()), output
    register, token, use, _fetch, verify_in_code, revoke, child = blocks[:7]
    assert '"did": "did:key:z6Mk' in register, register
    assert '"token_type": "Bearer"' in token and '"refresh_before"' in token, token
    assert '"did:key:z6Mk' in use and '"active": true' in use, use
    assert "did:key:z6Mk" in verify_in_code and "'agents.read'" in verify_in_code, verify_in_code
    assert '"invalid_token"' in revoke and "REVOKED" in revoke and revoke.rstrip().endswith("exit 2"), revoke
    assert '"scope": "api.read"' in child, child
    # What the walkthrough wrote stays in files the checkout's .gitignore covers.
    ignored = {line.strip().lstrip("/") for line in (README.parent / ".gitignore").read_text().splitlines()}
    written = {path.name + ("/" if path.is_dir() else "") for path in work.iterdir()}
    assert written <= ignored, written - ignored
