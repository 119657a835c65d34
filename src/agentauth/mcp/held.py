"""Secrets out of the model's context (issue 16 item 4): the MCP server holds the agent's credential and keeps
the secrets tools hand out.

``HeldCredential``: ``agentauth-mcp`` started with ``AGENTAUTH_CREDENTIALS_FILE`` (the 0600 file the agent SDK
writes) authenticates as that agent itself - the agent SDK's token flow (``sdk.agent_core``: the stored refresh
token first, else the API key or the did:key), driven through the server's backend (embedded or remote) - and
renews the token before ``refresh_before``. A tool called without ``access_token`` then acts as that agent; the
rotated refresh token is written back to the file.

``SecretKeeper``: with a credentials file, the secrets in a tool's result (``SECRETS``: what ``quickstart``,
``authenticate``, ``refresh_token``, ``exchange_delegation``, ``create_credential``, ``rotate_credential`` and
``create_webhook`` return) are written to files only the user can read - quickstart's new agent into the
credentials file itself when it holds none yet, everything else into ``<file>.secrets/`` - and the result says
where they went instead of holding them (the field keeps its type: a string or an object naming the file).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

from agentauth.errors import AgentAuthError, InvalidToken
from agentauth.issuer.context import RequestContext
from agentauth.mcp.backend import Backend
from agentauth.sdk import credentials as credentials_file
from agentauth.sdk.agent_core import AgentClientError, AgentCore, TokenError
from agentauth.sdk.credentials import Credentials

# tool -> the fields of its result that are secrets
SECRETS: Mapping[str, tuple[str, ...]] = {
    "quickstart": ("access_token", "refresh_token", "api_key", "private_key_jwk"),
    "authenticate": ("access_token", "refresh_token"),
    "refresh_token": ("access_token", "refresh_token"),
    "exchange_delegation": ("access_token", "refresh_token"),
    "create_credential": ("raw_key",),
    "rotate_credential": ("raw_key",),
    "create_webhook": ("secret",),
    "approval_status": ("token",),
}
STORED = "<secret stored in {path}>"


def is_placeholder(value: str | None) -> bool:
    """Whether ``value`` is what a kept secret was replaced with (a model may pass it back as a token)."""
    return value is not None and value.startswith("<secret stored in ")


class HeldCredential:
    """The agent credential of a credentials file, authenticated through a backend."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.credentials = credentials_file.load(path) if path.exists() and path.stat().st_size else None
        self._core: AgentCore | None = None
        self._first: dict[str, Any] | None = None
        self.last_answer: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    @property
    def holds(self) -> bool:
        return self.credentials is not None

    def adopt(self, credentials: Credentials, first: dict[str, Any] | None = None) -> None:
        """Hold ``credentials`` from now on (quickstart's new agent), seeded with its first token pair."""
        credentials_file.save(self.path, credentials)
        self.credentials, self._core = credentials, None
        self._first = first

    async def renew(self, backend: Backend, ctx: RequestContext) -> dict[str, Any]:
        """A new token pair now (the ``refresh_token`` tool without a value): the token endpoint's answer."""
        if self.credentials is None:
            return await self.access_token(backend, ctx)  # type: ignore[return-value]  # raises: nothing held
        async with self._lock:
            core = await self._core_for(backend)
            core.expire(core.default)
        await self.access_token(backend, ctx)
        return dict(self.last_answer)

    async def access_token(self, backend: Backend, ctx: RequestContext) -> str:
        if self.credentials is None:
            raise InvalidToken(
                f"no access token: pass access_token, or call quickstart first - this server keeps the new agent's "
                f"credentials in {self.path}"
            )
        async with self._lock:
            core = await self._core_for(backend)
            held = core.fresh(core.default)
            if held is not None:
                return held.access_token
            flow = core.obtain(core.default)
            request = next(flow)
            while True:
                response = await self._send(backend, request, ctx)
                if response.status_code == 200:
                    self.last_answer = response.json()
                try:
                    request = flow.send(response)
                except StopIteration as done:
                    token = done.value
                    break
                except TokenError as refused:
                    raise InvalidToken(f"the credentials in {self.path} did not get a token: {refused.error}") from None
                except AgentClientError as exc:
                    raise InvalidToken(f"the credentials in {self.path} cannot authenticate: {exc}") from None
            if core.pending_save is not None:
                credentials_file.save(self.path, core.pending_save)
                self.credentials, core.pending_save = core.pending_save, None
            return str(token.access_token)

    async def _core_for(self, backend: Backend) -> AgentCore:
        if self._core is None:
            assert self.credentials is not None
            configuration = await backend.discover()
            issuer = str(configuration.get("issuer") or self.credentials.issuer or "")
            self._core = AgentCore(
                self.credentials, issuer=issuer, token_endpoint=str(configuration.get("token_endpoint") or "") or None
            )
            if self._first is not None:
                self._core.seed(self._core.default, self._first)
                self._first = None
        return self._core

    @staticmethod
    async def _send(backend: Backend, request: httpx.Request, ctx: RequestContext) -> httpx.Response:
        """One token request of the SDK's flow, through the backend (in process or over HTTP)."""
        form = dict(parse_qsl(request.content.decode("ascii")))
        try:
            answer = await backend.token(form, ctx)
        except AgentAuthError as exc:
            return httpx.Response(exc.status_code, json={"error": exc.error, "error_description": exc.description})
        return httpx.Response(200, json=answer.model_dump(mode="json", exclude_none=True))


class SecretKeeper:
    """Moves the secrets of tool results into 0600 files beside the credentials file."""

    def __init__(self, held: HeldCredential) -> None:
        self.held = held
        self.directory = held.path.with_name(held.path.name + ".secrets")

    def keep(self, tool: str, result: dict[str, Any]) -> dict[str, Any]:
        fields = [f for f in SECRETS.get(tool, ()) if result.get(f) is not None and not _kept(result[f])]
        if not fields:
            return result
        if tool == "quickstart" and not self.held.holds:
            path = self.held.path
            self.held.adopt(Credentials.from_quickstart(result), first=result)
        else:
            path = self._write(tool, result, fields)
        return result | {f: _placeholder(result[f], path) for f in fields}

    def _write(self, tool: str, result: dict[str, Any], fields: list[str]) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        named = result.get("id") or (result.get("agent") or {}).get("id") or result.get("agent_id")
        path = self.directory / f"{tool}-{named or int(time.time())}-{secrets.token_hex(3)}.json"
        content: dict[str, Any] = {f: result[f] for f in fields}
        for context in ("id", "agent_id", "api_key_id", "expires_at", "refresh_before", "url"):
            if context in result:
                content[context] = result[context]
        if "agent" in result and isinstance(result["agent"], dict):
            content["agent_id"] = result["agent"].get("id")
        if "raw_key" in content:  # usable as a credentials file of that agent as it is
            content["api_key"] = content.pop("raw_key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2, sort_keys=True)
            handle.write("\n")
        return path


def _kept(value: Any) -> bool:
    return (isinstance(value, str) and is_placeholder(value)) or (isinstance(value, dict) and "stored_in" in value)


def _placeholder(value: Any, path: Path) -> Any:
    if isinstance(value, dict):
        return {"stored_in": str(path)}
    return STORED.format(path=path)
