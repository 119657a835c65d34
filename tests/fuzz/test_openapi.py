"""Schemathesis against ``/openapi.json`` (issue 8 item 4): every operation of the REST API is fuzzed, bounded in
examples and time, with a valid bearer token of a fresh quickstart agent, and three checks are judged per
operation: no 5xx (``not_a_server_error``), responses match their documented schema
(``response_schema_conformance``), and every status code answered is documented (``status_code_conformance``).

How it runs. Schemathesis' ASGI transport drives the app from its own event-loop thread and runs its lifespan
there (its pytest plugin ends every lifespan after each test). So each test builds its app from settings with
``create_app(settings)``, and the app's real lifespan builds the services (the composition root sets
``app.state.services``) on that loop: services made on pytest's loop, as the ``services`` fixture makes them,
could not be used from there (asyncpg connections belong to the loop that opened them). The database - a SQLite
file, or PostgreSQL reset once - is shared by the module's tests, as replicas share it; each operation gets a
fresh quickstart agent, so what one operation did (a deny-all policy, a revoked key) cannot change what the next
one sees. Each operation is fuzzed three ways - positive data, negative data (which also drops the bearer
token: the security requirement is negated), and positive data with path parameters bound to the agent's real
objects, so 2xx answers are reached and checked, not only 404s - and every response is judged by every check.
Failures are collected, not raised, so one failing check hides no other and Hypothesis does not shrink.

A known documentation defect (fuzz_support.py) is a strict ``xfail(raises=DocumentationDefect)``: a server error,
a schema mismatch that is not the known one, or a status code beyond the known undocumented ones still fails the
test for real; only the known defects are expected, and once they are fixed the strict xfail says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import schemathesis
from fuzz_support import KNOWN_SCHEMA_DEFECTS, KNOWN_UNDOCUMENTED, bind_objects
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from agentauth.api.app import create_app
from agentauth.keys import generate_kek
from agentauth.settings import Settings
from support import BACKENDS, ISSUER_URL, POSTGRES_URL, reset_postgres

EXAMPLES = 40  # per operation and mode: up to 3 x 40 cases x 39 operations, about 35 s per backend
CHECKS: dict[str, Callable[..., Any]] = {
    "not_a_server_error": not_a_server_error,
    "response_schema_conformance": response_schema_conformance,
    "status_code_conformance": status_code_conformance,
}
HTTP_METHODS = {"get", "put", "post", "patch", "delete"}
DOCUMENT = create_app(Settings(issuer_url=ISSUER_URL, data_dir=Path("unused"))).openapi()
OPERATIONS = sorted((m.upper(), p) for p, item in DOCUMENT["paths"].items() for m in item if m in HTTP_METHODS)


class DocumentationDefect(AssertionError):
    """The operation behaves as known, but its OpenAPI document does not say so (see fuzz_support.py)."""


@dataclass
class Verdicts:
    """What fuzzing one operation found: cases sent, statuses seen, failures per check (first few, with curl)."""

    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    undocumented: set[int] = field(default_factory=set)
    seconds: float = 0.0


TOTALS: dict[str, dict[tuple[str, str], Verdicts]] = {}


@dataclass
class Fuzzer:
    backend: str
    app: Any
    schema: Any

    def fuzz(self, method: str, path: str) -> Verdicts:
        started = time.monotonic()
        operation = self.schema[path][method]
        with asgi.get_client(self.app) as http:
            headers, objects = bind_objects(http)
        verdicts = Verdicts()
        modes = [
            ("positive", operation.as_strategy(schemathesis.GenerationMode.POSITIVE)),
            ("negative", operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)),
        ]
        names = [p.name for p in operation.path_parameters]
        if names:
            bound = {n: objects[n] for n in names}
            modes.append(("bound", operation.as_strategy(schemathesis.GenerationMode.POSITIVE, path_parameters=bound)))
        for mode, strategy in modes:
            try:
                self._examples(strategy, headers, verdicts)
            except Unsatisfiable:
                # An operation with nothing to negate (no parameters, no body) has no negative data.
                assert mode == "negative", f"{method} {path}: no {mode} data could be generated"
        verdicts.seconds = time.monotonic() - started
        TOTALS.setdefault(self.backend, {})[method, path] = verdicts
        return verdicts

    @staticmethod
    def _examples(strategy: Any, headers: dict[str, str], verdicts: Verdicts) -> None:
        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def one(case: Any) -> None:
            response = case.call(headers=headers)
            verdicts.cases += 1
            verdicts.statuses[response.status_code] = verdicts.statuses.get(response.status_code, 0) + 1
            for name, check in CHECKS.items():
                try:
                    case.validate_response(response, checks=[check], headers=headers)
                except FailureGroup as group:
                    if name == "status_code_conformance":
                        verdicts.undocumented.add(response.status_code)
                    found = verdicts.failures.setdefault(name, [])
                    if len(found) < 3:
                        title = "; ".join(f.title for f in group.exceptions)
                        found.append(f"{response.status_code} {title}\n{case.as_curl_command(headers=headers)}")

        one()


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    backend = str(request.param)
    values: dict[str, Any] = {
        "issuer_url": ISSUER_URL,
        "data_dir": tmp_path_factory.mktemp(f"fuzz-{backend}") / "data",
        "key_encryption_key": generate_kek(),
        "quickstart_rate_per_ip": 100_000,
        "token_rate_per_ip": 100_000,
        "token_rate_per_client": 100_000,
        # Fuzzed webhooks may name any 127.0.0.1 port (the database's too): nothing is ever delivered here.
        "webhook_allow_loopback": True,
        "webhooks_enabled": False,
    }
    if backend == "postgres":
        anyio.run(reset_postgres)
        values["database_url"] = POSTGRES_URL
    return Settings(**values)


@pytest.fixture
def fuzzer(fuzz_settings: Settings) -> Iterator[Fuzzer]:
    app = create_app(fuzz_settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan: services built
    backend = "postgres" if fuzz_settings.database_url else "sqlite"
    try:
        yield Fuzzer(backend, app, schema)
    finally:
        asgi.shutdown_lifespans()  # the services close with the lifespan


def test_every_operation_is_fuzzed() -> None:
    assert len(OPERATIONS) >= 30
    assert ("POST", "/api/v1/auth/token") in OPERATIONS and ("PUT", "/api/v1/policies/{policy_id}") in OPERATIONS


def operations() -> list[Any]:
    params = []
    for method, path in OPERATIONS:
        known = sorted(KNOWN_UNDOCUMENTED.get((method, path), set()))
        schema = KNOWN_SCHEMA_DEFECTS.get((method, path))
        marks = []
        if known or schema:
            reason = f"DOC: {method} {path}" + (f" answers {known} undeclared in its responses" if known else "")
            reason += f"; {schema}" if schema else ""
            marks.append(pytest.mark.xfail(strict=True, raises=DocumentationDefect, reason=reason))
        params.append(pytest.param(method, path, id=f"{method} {path}", marks=marks))
    return params


@pytest.mark.parametrize(("method", "path"), operations())
def test_operation(fuzzer: Fuzzer, method: str, path: str) -> None:
    verdicts = fuzzer.fuzz(method, path)
    seen = f"(seen {verdicts.statuses})"
    # An operation without inputs (GET /health) has one distinct case; Hypothesis stops when it has tried it.
    assert verdicts.cases >= 1, "the operation was exercised"
    server_errors = verdicts.failures.get("not_a_server_error", [])
    assert not server_errors, f"5xx on {method} {path} {seen}:\n" + "\n\n".join(server_errors)
    schema_failures = verdicts.failures.get("response_schema_conformance", [])
    known_schema = KNOWN_SCHEMA_DEFECTS.get((method, path))
    assert known_schema or not schema_failures, f"schema mismatch on {method} {path} {seen}:\n" + "\n\n".join(
        schema_failures
    )
    new_codes = verdicts.undocumented - KNOWN_UNDOCUMENTED.get((method, path), set())
    assert not new_codes, f"{method} {path} answers undocumented {sorted(new_codes)} {seen}:\n" + "\n".join(
        verdicts.failures.get("status_code_conformance", [])
    )
    expected = [f"undocumented {sorted(verdicts.undocumented)} {seen}"] if verdicts.undocumented else []
    expected += [f"schema: {known_schema}"] if schema_failures else []
    if expected:
        raise DocumentationDefect(f"{method} {path}: " + "; ".join(expected))


def test_zz_totals() -> None:
    """Reports what this run fuzzed (shown with -s or -rA) and holds the line on server errors."""
    lines = []
    for backend, verdicts in TOTALS.items():
        total = sum(v.cases for v in verdicts.values())
        errors = sum(n for v in verdicts.values() for s, n in v.statuses.items() if s >= 500)
        seconds = sum(v.seconds for v in verdicts.values())
        lines.append(f"fuzz[{backend}]: {len(verdicts)} operations, {total} cases, {errors} 5xx, {seconds:.0f}s")
        assert errors == 0, lines[-1]
    print("\n".join(lines))
