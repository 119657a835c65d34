"""DPoP-bound access tokens at a resource server (RFC 9449 sections 7 and 8): the server's DPoP settings and the
request's DPoP inputs, for ``bearer.authenticate``.

A client holding a DPoP-bound token (``cnf.jkt``) sends ``Authorization: DPoP <token>`` and, in a ``DPoP`` header,
a fresh proof signed by the bound key for this very request: method (``htm``), URI (``htu``, without query and
fragment) and the token's hash (``ath``). The resource server checks the proof (``vc.dpop.check_proof``) and that
its key is the token's (``vc.Verifier.verify_access_token(dpop=...)``).

What a server configures here (``DPoPSettings``), once, shared by all its requests:

* ``replay`` - where used proof ``jti``s are remembered (section 11.1). The default is an in-process
  ``vc.nonces.NonceRegistry``: enough for one process. Replicas behind one load balancer plug in a shared store
  with the same ``consume(nonce, *, until, now) -> bool`` signature (False when already seen), atomic across
  them (e.g. Redis ``SET key 1 NX PXAT until``), or a proof accepted by one replica is accepted by the others.
* ``nonces`` - a ``vc.dpop_nonces.DPoPNonces`` to require server nonces (section 8): a proof without the
  current (or previous) one is answered 401 ``use_dpop_nonce`` with ``DPoP-Nonce: <current>``, and the client
  retries with it. Give every replica the same secret.
* ``require_dpop`` - refuse bearer tokens altogether (``Authorization: Bearer``): only DPoP-bound ones pass.
* ``require_agent_key`` - accept only tokens bound to their holder's own did:key (``cnf.jkt`` is the thumbprint
  of the Ed25519 key of ``sub``, or of ``act.sub`` for a delegated token: ``vc.VerifiedToken.bound_to_holder_key``),
  what AgentAuth issues to agents with ``bind_to_agent_key``. The proof then shows the caller holds the key of
  the DID the token names: identity and possession with one key, from the token and the issuer's JWKS alone.
  Implies ``require_dpop``.
* ``public_url`` - the scheme, host and any path prefix clients reach this server under (``https://api.example.com``),
  for a server behind a proxy or load balancer: the proof's ``htu`` names the URL the client used, not the one the
  app sees. Without it the URI is the request's own scheme, ``Host`` header and path - right only when the server
  is reached directly. Set it in production.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from agentauth.vc.dpop import SIGNING_ALGORITHMS, ReplayCache
from agentauth.vc.dpop_nonces import NonceSource
from agentauth.vc.nonces import NonceRegistry

# Section 7.1: the DPoP challenge's ``algs`` lists the proof algorithms this server accepts.
ALGS: Final = " ".join(SIGNING_ALGORITHMS)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class LockedReplay:
    """A replay cache behind a lock: ``NonceRegistry`` checks and records in two steps, and the sync online
    verifier runs in worker threads - two threads must not both find a ``jti`` new."""

    def __init__(self, inner: ReplayCache) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def consume(self, nonce: str, *, until: float, now: float) -> bool:
        with self._lock:
            return self._inner.consume(nonce, until=until, now=now)


def _default_replay() -> ReplayCache:
    return LockedReplay(NonceRegistry())


@dataclass(frozen=True, slots=True)
class DPoPSettings:
    """How a resource server accepts DPoP-bound tokens (see the module docstring for each setting)."""

    replay: ReplayCache = field(default_factory=_default_replay)
    nonces: NonceSource | None = None
    require_dpop: bool = False
    public_url: str | None = None
    clock: Callable[[], float] = time.time
    require_agent_key: bool = False

    @property
    def dpop_only(self) -> bool:
        """Whether bearer tokens are refused (``require_dpop``, or ``require_agent_key`` which implies it)."""
        return self.require_dpop or self.require_agent_key

    def __post_init__(self) -> None:
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                raise ValueError(f"public_url must be an http(s) URL without query or fragment: {self.public_url!r}")

    def current_nonce(self) -> str | None:
        """The value for a ``DPoP-Nonce`` header now, when this server requires nonces."""
        return None if self.nonces is None else self.nonces.current(self.clock())

    def request_uri(self, scope: Mapping[str, Any]) -> str:
        """The URI of an ASGI request as its client addressed it (what its proof's ``htu`` must name; section
        4.3 point 9): ``public_url`` + the path when configured, else the request's scheme, ``Host`` and path."""
        path = str(scope.get("path") or "/")
        if self.public_url is not None:
            return self.public_url.rstrip("/") + path
        scheme = str(scope.get("scheme") or "http")
        host = header_values(scope, b"host")
        if host:
            netloc = host[0]
        else:
            server = scope.get("server") or ("localhost", _DEFAULT_PORTS.get(scheme, 80))
            name, port = str(server[0]), server[1]
            name = f"[{name}]" if ":" in name and not name.startswith("[") else name
            netloc = name if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{name}:{port}"
        return f"{scheme}://{netloc}{path}"


def header_values(scope: Mapping[str, Any], name: bytes) -> list[str]:
    """Every value of header ``name`` (lower case) in an ASGI scope, in order: section 4.3 point 1 refuses a
    request with more than one ``DPoP`` header, so they are counted, not merged."""
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", ())
    return [bytes(value).decode("latin-1") for key, value in headers if key.lower() == name]
