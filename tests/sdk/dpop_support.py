"""Helpers for the DPoP resource-server tests: an ASGI app under a real uvicorn server on 127.0.0.1 (in a thread
of this process, on a port of 27100-27199), DPoP-bound tokens of the fake issuer, and proofs built by joserfc -
a third party's JOSE library - as well as by ``create_proof``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import uvicorn
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey
from sdk_support import RESOURCE, FakeIssuer

from agentauth.did import encode_did_key
from agentauth.keys import KeyPair
from agentauth.vc.dpop import access_token_hash

PORTS = range(27100, 27200)


def _bound_socket() -> socket.socket:
    """A listening socket on a free port of ``PORTS``, bound here so no other server can take it meanwhile."""
    for port in PORTS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        return sock
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 until the block ends; yields its base URL."""
    sock = _bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="auto"))
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


def bound_token(
    issuer: FakeIssuer,
    jkt: str,
    scopes: tuple[str, ...] = ("api.read",),
    subject_did: str | None = None,
    **extra: Any,
) -> tuple[str, dict[str, Any]]:
    """An access token for ``RESOURCE`` bound to the DPoP key of thumbprint ``jkt`` (``cnf.jkt``); its subject
    ``subject_did``, by default a new did:key of another key."""
    return issuer.issuer.issue_access_credential(
        subject_did=subject_did or encode_did_key(KeyPair.generate().public.raw),
        client_id="agt_dpop",
        scopes=scopes,
        audience=RESOURCE,
        now=issuer.time.now(),
        expires_at=issuer.time.now() + timedelta(minutes=15),
        status=issuer.entry(),
        dpop_jkt=jkt,
        **extra,
    )


def joserfc_proof(
    key: OKPKey | ECKey,
    method: str,
    uri: str,
    token: str | None,
    *,
    nonce: str | None = None,
    iat: float | None = None,
) -> str:
    """A proof built by joserfc (alg ``Ed25519`` for OKP keys: joserfc warns on ``EdDSA``, pytest would fail)."""
    claims: dict[str, Any] = {"jti": str(uuid.uuid4()), "htm": method, "htu": uri, "iat": int(iat or time.time())}
    if token is not None:
        claims["ath"] = access_token_hash(token)
    if nonce is not None:
        claims["nonce"] = nonce
    alg = "Ed25519" if isinstance(key, OKPKey) else "ES256"
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)}
    return jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=[alg])


def dpop_headers(token: str, *proofs: str) -> list[tuple[str, str]]:
    """``Authorization: DPoP <token>`` and one ``DPoP`` header per proof (a list: headers may repeat)."""
    return [("Authorization", f"DPoP {token}"), *(("DPoP", proof) for proof in proofs)]
