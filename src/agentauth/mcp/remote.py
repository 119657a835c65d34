"""The REST-backed backend: ``agentauth-mcp`` with ``AGENTAUTH_URL`` serves the tools by calling that AgentAuth.

It knows no URL of that API: the endpoints come from the server's agent configuration document (fetched once,
as ``discover`` returns it) and the route of each operation from the server's OpenAPI description, where every
route names the operation it runs (``issuer/operations.py: OPENAPI_EXTENSION``).

Responses parse into the same pydantic models the server produced them from; RFC 6749 error bodies turn back
into the ``AgentAuthError`` of the same code, so a tool fails with the same text in both modes.

DPoP (RFC 9449), given the agent's key (``agent_key``; ``AGENTAUTH_AGENT_KEY`` of ``agentauth-mcp``): every token
request carries a proof signed by it (section 5), so the tokens ``authenticate``, ``refresh_token`` and
``exchange_delegation`` return are bound to it (``token_type: DPoP``); every call with a bound token sends
``Authorization: DPoP <token>`` and a proof of that request (section 7.1); a ``use_dpop_nonce`` refusal is
retried once with the server's nonce (section 8). ``sdk.client.DPoPAuth`` does all of that; this module only
chooses when. A token without ``cnf`` (``quickstart``'s, or one obtained elsewhere) is still sent as a bearer
token - a proof with it would be refused. Proofs name the issuer's public URL of the request, which is what the
server checks, also when this client reaches it under another URL.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from agentauth import __version__, errors
from agentauth.errors import AgentAuthError, RateLimited, TemporarilyUnavailable, UseDPoPNonce
from agentauth.issuer.context import RequestContext
from agentauth.issuer.operations import OPENAPI_EXTENSION
from agentauth.issuer.schemas import QuickstartRequest, QuickstartResponse, TokenResponse
from agentauth.keys import KeyPair, b64url_decode
from agentauth.mcp.backend import Operation, R, VerificationMaterial
from agentauth.paths import SUSPENSION_SUFFIX
from agentauth.sdk.client import DPoPAuth

log = logging.getLogger("agentauth.mcp")
CONFIGURATION_PATH = "/.well-known/agent-configuration"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


# The hierarchy of agentauth.errors by RFC error code (the base class answers for server_error). A subclass that
# shares its parent's code (InvalidClientMetadataDocument is an invalid_client) does not take the code over: the
# most general class of each code answers for it.
_BY_CODE: dict[str, type[AgentAuthError]] = {}
for _cls in vars(errors).values():
    if isinstance(_cls, type) and issubclass(_cls, AgentAuthError) and _cls.__module__ == errors.__name__:
        _known = _BY_CODE.get(_cls.error)
        if _known is None or issubclass(_known, _cls):
            _BY_CODE[_cls.error] = _cls


class RemoteError(AgentAuthError):
    """An error code this client has no class for (e.g. ``request_too_large``): kept as the server said it."""

    def __init__(self, error: str, status_code: int, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.status_code = status_code


def error_from_response(response: httpx.Response) -> AgentAuthError:
    try:
        body = response.json()
    except ValueError:
        body = None
    code = body.get("error") if isinstance(body, dict) else None
    description = body.get("error_description") if isinstance(body, dict) else None
    if not isinstance(code, str) or not isinstance(description, str):
        return RemoteError("server_error", response.status_code, f"AgentAuth answered HTTP {response.status_code}")
    cls = _BY_CODE.get(code)
    if cls is RateLimited:
        retry = response.headers.get("retry-after", "")
        return RateLimited(int(retry) if retry.isdigit() else 5, description)
    if cls is UseDPoPNonce:
        nonce = response.headers.get("dpop-nonce", "")
        return UseDPoPNonce(nonce, description, status_code=response.status_code)
    if cls is None or cls is AgentAuthError:
        return RemoteError(code, response.status_code, description)
    return cls(description)


def is_bound(token: str) -> bool:
    """Whether ``token`` is a JWT with a ``cnf`` claim (RFC 9449 section 6.1): DPoP-bound, to be sent with the
    DPoP scheme and a proof. A client is told so by ``token_type`` of the token response; tokens reach the tools
    as bare strings, so the claim is looked at instead (unverified: the server decides, this only picks the
    scheme it will accept)."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        claims = orjson.loads(b64url_decode(parts[1], canonical=False))
    except (ValueError, orjson.JSONDecodeError):
        return False
    return isinstance(claims, dict) and isinstance(claims.get("cnf"), dict)


class RestBackend:
    def __init__(
        self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None, agent_key: KeyPair | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._configuration: dict[str, Any] | None = None
        self._routes: dict[str, tuple[str, str]] | None = None
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=TIMEOUT,
            transport=transport,
            headers={"User-Agent": f"agentauth-mcp/{__version__}", "Accept": "application/json"},
        )
        # Token-less: the token requests' proofs. Calls with a bound token use a copy holding it (with_token),
        # which shares the nonces the server handed out.
        self._dpop = DPoPAuth(agent_key, htu=self._proof_uri) if agent_key is not None else None

    async def aclose(self) -> None:
        await self._http.aclose()

    def _proof_uri(self, url: httpx.URL) -> str:
        """The URI a proof names for a request to ``url``: the issuer's public URL of its path, which the server
        checks ``htu`` against (RFC 9449 section 4.3), not the URL this client was configured with."""
        if self._configuration is None:
            return str(url)
        base_path = urlsplit(self.base_url).path
        path = url.path[len(base_path) :] if base_path and url.path.startswith(base_path + "/") else url.path
        return str(self._configuration["issuer"]).rstrip("/") + path

    async def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        proof: bool = False,
        json: Any = None,
        data: dict[str, str] | None = None,
        params: dict[str, str | int] | None = None,
    ) -> httpx.Response:
        """One request; with ``token`` as its credential (DPoP-bound: with a proof), ``proof``: a token request,
        with a proof when an agent key is configured."""
        headers: dict[str, str] = {}
        auth: httpx.Auth | None = None
        if token and self._dpop is not None and is_bound(token):
            auth = self._dpop.with_token(token)
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        elif proof:
            auth = self._dpop
        try:
            response = await self._http.request(
                method, path, headers=headers, json=json, data=data, params=params, auth=auth
            )
        except httpx.TransportError as exc:
            # The URL is configuration, not a secret; the request itself (tokens) is never logged.
            log.warning("cannot reach AgentAuth at %s: %s", self.base_url, type(exc).__name__)
            raise TemporarilyUnavailable(f"cannot reach AgentAuth at {self.base_url}") from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    async def _endpoint(self, name: str) -> str:
        """The path, below the configured URL, of endpoint ``name`` of the agent configuration document."""
        configuration = self._configuration or await self.discover()
        url = str(configuration["endpoints"][name])
        issuer = str(configuration["issuer"]).rstrip("/")
        # The document names public URLs (the issuer's); this client talks to the URL it was configured with.
        return url[len(issuer) :] if url.startswith(issuer + "/") else urlsplit(url).path

    async def _route(self, name: str) -> tuple[str, str]:
        """(method, path template) of the route that runs operation ``name``, from the server's OpenAPI."""
        if self._routes is None:
            document = (await self._send("GET", await self._endpoint("openapi"))).json()
            routes: dict[str, tuple[str, str]] = {}
            for path, item in document.get("paths", {}).items():
                for method, described in item.items():
                    declared = described.get(OPENAPI_EXTENSION) if isinstance(described, dict) else None
                    if isinstance(declared, dict) and isinstance(declared.get("name"), str):
                        routes.setdefault(declared["name"], (method.upper(), path))  # twins: either will do
            self._routes = routes
        route = self._routes.get(name)
        if route is None:
            raise RemoteError("server_error", 501, f"AgentAuth at {self.base_url} does not offer {name}")
        return route

    async def call(self, name: str, operation: Operation[R], access_token: str, ctx: RequestContext) -> R:
        method, template = await self._route(name)
        path = template.format_map({k: quote(v, safe="") for k, v in operation.ids.items()})
        params = {k: v for k, v in operation.query.items() if v is not None}
        body = operation.body.model_dump(mode="json", exclude_none=True) if operation.body is not None else None
        response = await self._send(method, path, token=access_token, json=body, params=params)
        return operation.response.model_validate(response.json() if response.content else {})

    async def discover(self) -> dict[str, Any]:
        document: dict[str, Any] = (await self._send("GET", CONFIGURATION_PATH)).json()
        self._configuration = document
        return document

    async def quickstart(self, request: QuickstartRequest, ctx: RequestContext) -> QuickstartResponse:
        body = request.model_dump(mode="json", exclude_none=True)
        response = await self._send("POST", await self._endpoint("quickstart_endpoint"), json=body)
        return QuickstartResponse.model_validate(response.json())

    async def token(self, params: dict[str, str], ctx: RequestContext) -> TokenResponse:
        response = await self._send("POST", await self._endpoint("token_endpoint"), proof=True, data=params)
        return TokenResponse.model_validate(response.json())

    async def backchannel(self, params: dict[str, str], ctx: RequestContext) -> dict[str, Any]:
        path = await self._endpoint("backchannel_authentication_endpoint")
        answer: dict[str, Any] = (await self._send("POST", path, data=params)).json()
        return answer

    @staticmethod
    def _token_form(caller: str | None, token: str) -> dict[str, str]:
        # No caller: RFC 7009/7662 with the refresh token as the only credential.
        return {"token": token} if caller is not None else {"token": token, "token_type_hint": "refresh_token"}

    async def introspect(self, caller: str | None, token: str, ctx: RequestContext) -> dict[str, Any]:
        data = self._token_form(caller, token)
        response = await self._send("POST", await self._endpoint("introspection_endpoint"), token=caller, data=data)
        result: dict[str, Any] = response.json()
        return result

    async def revoke(self, caller: str | None, token: str, ctx: RequestContext) -> None:
        path = await self._endpoint("revocation_endpoint")
        await self._send("POST", path, token=caller, data=self._token_form(caller, token))

    async def verification_material(self) -> VerificationMaterial:
        document = await self.discover()
        jwks = (await self._send("GET", await self._endpoint("jwks_uri"))).json()
        return VerificationMaterial(str(document["issuer"]), str(document["issuer_did"]), jwks)

    async def status_list(self, url: str) -> str | None:
        # Only this issuer's lists, fetched from the configured server: a token cannot make us fetch other URLs.
        configuration = self._configuration or await self.discover()
        prefix = str(configuration["endpoints"]["status_lists_endpoint"]) + "/"
        list_id = url[len(prefix) :] if url.startswith(prefix) else ""
        suffix = SUSPENSION_SUFFIX if list_id.endswith(SUSPENSION_SUFFIX) else ""
        list_id = list_id.removesuffix(suffix)
        if not list_id.isdigit() or len(list_id) > 10:
            return None
        try:
            path = await self._endpoint("status_lists_endpoint") + "/" + list_id + suffix
            response = await self._send("GET", path)
        except AgentAuthError as exc:
            if exc.error == "not_found":
                return None
            raise
        return response.text.strip()
