"""The agent's side of DPoP (RFC 9449): ``DPoPAuth``, an ``httpx.Auth`` that signs a proof for every request.

::

    key = KeyPair.from_jwk(private_jwk)          # the agent's own did:key
    auth = DPoPAuth(key)
    with httpx.Client(auth=auth) as http:        # or httpx.AsyncClient: the flow does no I/O of its own
        tokens = http.post(token_url, data={"grant_type": "client_credentials", "client_secret": api_key}).json()
        auth.token = tokens["access_token"]       # token_type "DPoP": bound to the key (cnf.jkt)
        http.get(f"{issuer}/api/v1/agents/{agent_id}")

Per request it adds, in a ``DPoP`` header, a fresh proof (section 4: new ``jti``, ``htm`` and ``htu`` of this
request - the URL without query and fragment -, ``iat`` now, ``nonce`` when the server gave one) signed by the key,
and, once a token is set, ``Authorization: DPoP <token>`` with the proof's ``ath`` (section 7.1). Without a token
it leaves ``Authorization`` alone: that is the token request, whose client authentication is in the form.

Nonces (section 8): the server may send a new ``DPoP-Nonce`` in any response (section 8.2); the last one of each
origin is remembered and put into the next proof for that origin. A request refused for want of the current nonce -
``400`` with ``error: use_dpop_nonce`` in the JSON body (the token endpoint, section 8) or ``401`` with
``WWW-Authenticate: DPoP error="use_dpop_nonce"`` (a resource server, section 9) - is sent once more with a new
proof carrying the nonce that answer brought; a second refusal is returned as it is. So the request body is read
before sending, to be sent twice (``requires_request_body``), and responses are read before the flow looks at them
(``requires_response_body``: a streamed response arrives buffered).

Proofs name one URL: do not let the client follow redirects with it (the proof would name the old URL).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from typing import Final

import httpx

from agentauth.keys import KeyPair
from agentauth.vc.dpop import USE_DPOP_NONCE, create_proof

NONCE_HEADER: Final = "DPoP-Nonce"
# RFC 9449 section 9: the resource server's challenge ``DPoP error="use_dpop_nonce"``; auth-param values may be
# quoted or not (RFC 9110 section 11.2).
_USE_NONCE_CHALLENGE: Final = re.compile(r'\berror\s*=\s*"?' + USE_DPOP_NONCE + r'\b"?')
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class DPoPAuth(httpx.Auth):
    """DPoP proofs signed by ``key`` on every request, and ``Authorization: DPoP <token>`` while ``token`` is set
    (see the module docstring). ``token`` may be set or changed at any time (``auth.token = ...``).

    ``htu``: for a client that reaches the server under another URL than the one the server checks proofs
    against (its public URL, e.g. from inside a container network), a function giving the URI to name for a
    request's URL; by default the request's own URL.
    """

    requires_request_body = True  # a refused request is sent again: its body must be at hand
    requires_response_body = True  # a 400 says use_dpop_nonce only in its JSON body

    def __init__(
        self,
        key: KeyPair,
        token: str | None = None,
        *,
        htu: Callable[[httpx.URL], str] | None = None,
    ) -> None:
        self.key = key
        self.token = token
        self._htu = htu
        self._nonces: dict[str, str] = {}  # origin -> the last DPoP-Nonce it sent

    def __repr__(self) -> str:
        # Neither the key nor the token: only which key it is.
        return f"DPoPAuth(jkt={self.key.public.thumbprint()!r}, token={'set' if self.token else 'none'})"

    def with_token(self, token: str | None) -> DPoPAuth:
        """Another ``DPoPAuth`` with the same key, the same remembered nonces and ``token``: one per token, e.g.
        a client that holds several tokens, or a token-less one for token requests."""
        other = DPoPAuth(self.key, token, htu=self._htu)
        other._nonces = self._nonces  # one server's nonces serve every token sent there
        return other

    def nonce(self, url: httpx.URL | str) -> str | None:
        """The nonce the next proof for ``url``'s origin will carry, if that origin sent one."""
        return self._nonces.get(_origin(httpx.URL(url)))

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        origin = _origin(request.url)
        token = self.token  # one value for the request and its retry, whatever another task sets meanwhile
        self._sign(request, origin, token)
        response = yield request
        nonce = self._remember(origin, response)
        if nonce is None or not _asks_for_nonce(response):
            return
        # Section 8: the client retries "with a DPoP proof that includes the nonce"; once - a server refusing
        # that too is answered by its own response.
        self._sign(request, origin, token)
        response = yield request
        self._remember(origin, response)

    def _sign(self, request: httpx.Request, origin: str, token: str | None) -> None:
        uri = self._htu(request.url) if self._htu is not None else str(request.url)
        request.headers["DPoP"] = create_proof(
            self.key, request.method, uri, access_token=token, nonce=self._nonces.get(origin)
        )
        if token is not None:
            request.headers["Authorization"] = f"DPoP {token}"

    def _remember(self, origin: str, response: httpx.Response) -> str | None:
        nonce = response.headers.get(NONCE_HEADER)
        if nonce:
            self._nonces[origin] = nonce
        return nonce or None


def _origin(url: httpx.URL) -> str:
    scheme = url.scheme.lower()
    port = url.port or _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{url.host.lower()}:{port}"


def _asks_for_nonce(response: httpx.Response) -> bool:
    """Whether ``response`` refuses the request for want of the current nonce (RFC 9449 sections 8 and 9)."""
    if response.status_code == 401:
        return any(_USE_NONCE_CHALLENGE.search(value) for value in response.headers.get_list("WWW-Authenticate"))
    if response.status_code == 400:
        try:
            body = response.json()
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("error") == USE_DPOP_NONCE
    return False
