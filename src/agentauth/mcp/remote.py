"""The REST-backed backend: ``agentauth-mcp`` with ``AGENTAUTH_URL`` serves the tools by calling that AgentAuth.

Responses parse into the same pydantic models the server produced them from; RFC 6749 error bodies turn back
into the ``AgentAuthError`` of the same code, so a tool fails with the same text in both modes.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from agentauth import __version__, errors
from agentauth.errors import AgentAuthError, RateLimited, TemporarilyUnavailable
from agentauth.issuer.context import RequestContext
from agentauth.issuer.schemas import QuickstartRequest, QuickstartResponse, TokenResponse
from agentauth.mcp.backend import Operation, R, VerificationMaterial

log = logging.getLogger("agentauth.mcp")
STATUS_LIST_PATH = "/api/v1/status-lists/"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


# The hierarchy of agentauth.errors by RFC error code (the base class answers for server_error).
_BY_CODE: dict[str, type[AgentAuthError]] = {
    cls.error: cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, AgentAuthError) and cls.__module__ == errors.__name__
}


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
    if cls is None or cls is AgentAuthError:
        return RemoteError(code, response.status_code, description)
    return cls(description)


class RestBackend:
    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._issuer: str | None = None
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=TIMEOUT,
            transport=transport,
            headers={"User-Agent": f"agentauth-mcp/{__version__}", "Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
        params: dict[str, str | int] | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = await self._http.request(method, path, headers=headers, json=json, data=data, params=params)
        except httpx.TransportError as exc:
            # The URL is configuration, not a secret; the request itself (tokens) is never logged.
            log.warning("cannot reach AgentAuth at %s: %s", self.base_url, type(exc).__name__)
            raise TemporarilyUnavailable(f"cannot reach AgentAuth at {self.base_url}") from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    async def call(self, operation: Operation[R], access_token: str, ctx: RequestContext) -> R:
        params = {k: v for k, v in operation.query.items() if v is not None}
        body = operation.body.model_dump(mode="json", exclude_none=True) if operation.body is not None else None
        response = await self._send(operation.method, operation.url_path, token=access_token, json=body, params=params)
        return operation.response.model_validate(response.json())

    async def discover(self) -> dict[str, Any]:
        document: dict[str, Any] = (await self._send("GET", "/.well-known/agent-configuration")).json()
        return document

    async def quickstart(self, request: QuickstartRequest, ctx: RequestContext) -> QuickstartResponse:
        body = request.model_dump(mode="json", exclude_none=True)
        response = await self._send("POST", "/api/v1/agents/quickstart", json=body)
        return QuickstartResponse.model_validate(response.json())

    async def token(self, params: dict[str, str], ctx: RequestContext) -> TokenResponse:
        response = await self._send("POST", "/api/v1/auth/token", data=params)
        return TokenResponse.model_validate(response.json())

    @staticmethod
    def _token_form(caller: str | None, token: str) -> dict[str, str]:
        # No caller: RFC 7009/7662 with the refresh token as the only credential.
        return {"token": token} if caller is not None else {"token": token, "token_type_hint": "refresh_token"}

    async def introspect(self, caller: str | None, token: str, ctx: RequestContext) -> dict[str, Any]:
        data = self._token_form(caller, token)
        response = await self._send("POST", "/api/v1/auth/introspect", token=caller, data=data)
        result: dict[str, Any] = response.json()
        return result

    async def revoke(self, caller: str | None, token: str, ctx: RequestContext) -> None:
        await self._send("POST", "/api/v1/auth/revoke", token=caller, data=self._token_form(caller, token))

    async def verification_material(self) -> VerificationMaterial:
        document = await self.discover()
        jwks = (await self._send("GET", "/.well-known/jwks.json")).json()
        self._issuer = str(document["issuer"])
        return VerificationMaterial(self._issuer, str(document["issuer_did"]), jwks)

    async def status_list(self, url: str) -> str | None:
        # Only this issuer's lists, fetched from the configured server: a token cannot make us fetch other URLs.
        if self._issuer is None:
            self._issuer = str((await self.discover())["issuer"])
        prefix = self._issuer + STATUS_LIST_PATH
        list_id = url[len(prefix) :] if url.startswith(prefix) else ""
        if not list_id.isdigit() or len(list_id) > 10:
            return None
        try:
            response = await self._send("GET", STATUS_LIST_PATH + list_id)
        except AgentAuthError as exc:
            if exc.error == "not_found":
                return None
            raise
        return response.text.strip()
