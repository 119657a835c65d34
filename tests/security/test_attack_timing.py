"""Timing-safe comparison of secrets (CWE-208): every comparison of a presented secret with a stored one goes
through ``hmac.compare_digest`` (``SecretHasher.matches``), and no other ``==`` on secret material exists in
``src/`` except the reviewed ones listed below with the reason each is safe."""

from __future__ import annotations

import ast
import hashlib
import hmac
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from security_support import INTROSPECT, TOKEN, World, exchange_data
from sqlalchemy import text

import agentauth
from agentauth.bootstrap import Services
from agentauth.issuer.secrets import API_KEY_LOOKUP_CHARS, API_KEY_PREFIX, SecretHasher
from support import assert_error, bearer, ok

pytestmark = pytest.mark.anyio

SRC = Path(agentauth.__file__).parent


class Spy:
    """Wraps ``hmac.compare_digest``, recording its arguments and results."""

    def __init__(self, real: Callable[..., bool]) -> None:
        self.real, self.calls = real, []  # type: ignore[var-annotated]

    def __call__(self, a: Any, b: Any) -> bool:
        result = self.real(a, b)
        self.calls.append((a, b, result))
        return result


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    recorder = Spy(hmac.compare_digest)
    monkeypatch.setattr(hmac, "compare_digest", recorder)
    return recorder


async def stored_key_hash(services: Services, key_id: str) -> str:
    async with services.engine.connect() as conn:
        return str(
            (await conn.execute(text("SELECT key_hash FROM api_keys WHERE id = :i"), {"i": key_id})).scalar_one()
        )


def test_matches_compares_in_constant_time(spy: Spy) -> None:
    hasher = SecretHasher(b"k" * 32)
    stored = hasher.hash("ak_live_secret")
    assert hasher.matches("ak_live_secret", stored) and not hasher.matches("ak_live_secreT", stored)
    assert [(a, b) for a, b, _ in spy.calls] == [(stored, stored), (hasher.hash("ak_live_secreT"), stored)]
    assert [r for _, _, r in spy.calls] == [True, False]


@pytest.mark.parametrize("path", ["client_credentials", "introspection client_secret", "token exchange client_secret"])
async def test_api_key_authentication_uses_compare_digest(
    client: httpx.AsyncClient, services: Services, world: World, spy: Spy, path: str
) -> None:
    key, key_id = world.child["api_key"], world.child["api_key_id"]
    exchange = exchange_data(world.delegation["credential"])
    grant = {"grant_type": "client_credentials"}
    requests: dict[str, Callable[[str], Any]] = {
        "client_credentials": lambda k: client.post(TOKEN, data=grant | {"client_secret": k}),
        "introspection client_secret": lambda k: client.post(INTROSPECT, data={"token": world.child_token} | {
            "client_secret": k}),
        "token exchange client_secret": lambda k: client.post(TOKEN, data=exchange | {"client_secret": k}),
    }  # fmt: skip
    assert (await requests[path](key)).status_code == 200
    stored = await stored_key_hash(services, key_id)
    assert (stored, stored, True) in spy.calls, "the genuine key was compared with compare_digest"
    # Same lookup prefix, different secret tail: found by prefix, refused by the constant-time comparison.
    spy.calls.clear()
    keep = len(API_KEY_PREFIX) + API_KEY_LOOKUP_CHARS
    forged = key[:keep] + ("A" if key[keep] != "A" else "B") + key[keep + 1 :]
    response = await requests[path](forged)
    assert_error(response, 401, "invalid_client", f"{path} with a forged tail")
    assert any(b == stored and result is False for _, b, result in spy.calls), spy.calls


async def test_registration_token_uses_compare_digest(settings_factory: Any, backend: str, spy: Spy) -> None:
    from agentauth.api.app import create_app
    from agentauth.bootstrap import build_services
    from support import ISSUER_URL, reset_postgres

    if backend == "postgres":
        await reset_postgres()
    services = await build_services(settings_factory(registration="token", registration_token="s3cret-registration"))
    try:
        app = create_app(services=services)
        app.state.services = services
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER_URL) as http:
            body = {"name": "gated", "agent_type": "tool"}
            wrong = await http.post(
                "/api/v1/agents/quickstart", json=body | {"registration_token": "s3cret-registratioN"}
            )
            assert_error(wrong, 403, "access_denied", "wrong registration token")
            right = await http.post(
                "/api/v1/agents/quickstart", json=body | {"registration_token": "s3cret-registration"}
            )
            assert right.status_code == 201, right.text
    finally:
        await services.close()
    assert [r for a, b, r in spy.calls if b"s3cret-registration" in (a, b)] == [False, True]


async def test_refresh_token_lookup_is_by_keyed_hash(
    client: httpx.AsyncClient, services: Services, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh path compares no secret in Python: it looks the row up by ``HMAC-SHA256(server key, token)``
    (an equality in the database index). That is safe against timing attacks because the attacker cannot
    compute the MAC of a guess without the server-side key (derived from the KEK, never stored with the data):
    any timing difference the index lookup leaks is about the MAC of the attacker's own guess, which is
    uncorrelated with any stored token's MAC, so no byte of a real token can be learnt, guess by guess. (The
    same holds for API keys, whose lookup prefix is public by design and whose tail is compared with
    ``compare_digest`` above.) This test shows the premises: the presented token is MACed with the server key,
    the row holds exactly that MAC, and neither the raw token nor its unkeyed SHA-256 is stored."""
    hashed: list[str] = []
    real_hash = SecretHasher.hash

    def spy_hash(self: SecretHasher, secret: str) -> str:
        hashed.append(secret)
        return real_hash(self, secret)

    monkeypatch.setattr(SecretHasher, "hash", spy_hash)
    refresh = world.a["refresh_token"]
    response = await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": refresh})
    assert response.status_code == 200 and refresh in hashed
    mac = real_hash(services.core.hasher, refresh)
    async with services.engine.connect() as conn:
        rows = [tuple(r) for r in await conn.execute(text("SELECT token_hash, status FROM refresh_tokens"))]
    assert (mac, "used") in rows
    assert all(refresh not in str(row) and hashlib.sha256(refresh.encode()).hexdigest() not in row for row in rows)
    assert real_hash(SecretHasher(b"another server key".ljust(32, b"!")), refresh) != mac


# -- code review, as a test ------------------------------------------------------------------------------------

SECRETISH = re.compile(r"secret|hash|digest|password|raw_key|registration_token|api_key|refresh|signature|mac$", re.I)
# Every == / != on secret-looking names in src/, reviewed. Key: (file relative to the package, source text).
REVIEWED = {
    ("sdk/agent_core.py", "token.refresh_token != self.credentials.refresh_token"):
        "the agent's own client comparing the refresh token it just got with the one in its file, to decide "
        "whether to rewrite the file: both are its own, nothing an attacker sends or times",
    ("storage/refresh_tokens.py", "RefreshTokenRow.token_hash == token_hash"):
        "SQL lookup by keyed MAC (see test_refresh_token_lookup_is_by_keyed_hash)",
    ("storage/grant_statements.py", "RefreshTokenRow.token_hash == bindparam('hash')"):
        "SQL lookup and rotation by keyed MAC (see test_refresh_token_lookup_is_by_keyed_hash)",
    ("storage/authorization_statements.py", "AuthorizationCodeRow.code_hash == bindparam('hash')"):
        "SQL lookup and redemption of an authorization code by its keyed MAC, like refresh tokens",
    ("issuer/owners.py", "OwnerSessionRow.token_hash == token_hash"):
        "SQL update of an owner session's idle expiry by the keyed MAC of its cookie, like refresh tokens",
    ("storage/owner_statements.py", "OwnerSessionRow.token_hash == bindparam('hash')"):
        "SQL lookup of an owner session by the keyed MAC of its cookie, like refresh tokens",
    ("issuer/owners.py", "OwnerSessionRow.token_hash == self.core.hasher.hash(token)"):
        "SQL lookup of the session to end at logout by the keyed MAC of its cookie",
    ("issuer/grants/ciba.py", "ApprovalRequestRow.request_hash == self.core.hasher.hash(auth_req_id)"):
        "SQL lookup of an approval request (CIBA auth_req_id) by its keyed MAC, like refresh tokens",
    ("vc/chain.py", "link.parent_digest != jwt_digest(parent.jwt)"):
        "digests of public credentials (the parent JWT is in the chain itself): nothing secret to time",
}  # fmt: skip


def leaf_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        return leaf_name(node.func)
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def secret_comparisons() -> set[tuple[str, str]]:
    found = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare) or not any(isinstance(o, ast.Eq | ast.NotEq) for o in node.ops):
                continue
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) for o in operands):
                continue
            # What each side *is*: an attribute's or variable's own name, a call's function name. Ids and
            # CONSTANTS name no secret.
            leaves = [leaf_name(o) for o in operands]
            if any(SECRETISH.search(n) and not n.isupper() and not n.endswith("_id") for n in leaves):
                found.add((path.relative_to(SRC).as_posix(), ast.unparse(node)))
    return found


def test_no_unreviewed_equality_on_secret_material() -> None:
    """A new ``==`` on anything named like a secret fails here until it is reviewed: use ``hmac.compare_digest``
    (``SecretHasher.matches``) or add it to REVIEWED with the reason it is safe."""
    found = secret_comparisons()
    assert found - set(REVIEWED) == set(), "unreviewed comparisons of secret material"
    assert set(REVIEWED) - found == set(), "REVIEWED lists comparisons that no longer exist"
    uses = [p for p in SRC.rglob("*.py") if "compare_digest" in p.read_text()]
    assert {p.relative_to(SRC).as_posix() for p in uses} >= {"issuer/secrets.py", "issuer/agents.py"}


async def test_bearer_authentication_compares_no_secret(client: httpx.AsyncClient, world: World, spy: Spy) -> None:
    assert ok(await client.get("/api/v1/agents", headers=bearer(world.a_token)))["total"] >= 2
    assert spy.calls == [], "a signed access token is verified, not compared"
