"""The agent client SDK: an agent's tokens, kept fresh, attached to its HTTP calls (sync and async).

::

    agent = AgentClient.quickstart("https://auth.example.com", "research-bot", credentials_file="agent.json")
    # later runs: AgentClient("agent.json")  - or AgentClient.from_api_key(issuer, api_key),
    #             AgentClient.from_key(issuer, agent_id, private_jwk)  (its did:key: private_key_jwt)
    with httpx.Client(auth=agent.auth()) as http:            # or requests: auth=agent.requests_auth()
        http.get(f"{issuer}/api/v1/agents/{agent.agent_id}")
    reports = agent.auth(scope="api.read", resource="https://api.example.com")  # a token for that server
    helper = agent.auth(delegation=delegation_jwt)          # acting under a delegation (RFC 8693)
    vp = agent.present(audience=..., nonce=...)              # a presentation of its identity credential

``AsyncAgentClient`` is the same with ``await`` (``await agent.token()``, ``httpx.AsyncClient(auth=agent.auth())``,
``await AsyncAgentClient.quickstart(...)``). Both drive the sans-I/O flows of ``agentauth.sdk.agent_core``.

* Tokens are renewed once ``refresh_before`` is reached (before ``expires_at``), by the refresh token - rotated,
  the new one written back to the credentials file atomically (``agentauth.sdk.credentials.save``) - and, if the
  issuer refuses that, by the primary credential (API key, or the did:key: ``method="private_key_jwt"`` or
  ``"jwt_bearer"``). Single flight: callers that find a token due at the same time share one renewal.
  One process per credentials file: two processes refreshing one family would spend each other's tokens.
* A renewal that fails for a transient reason (network, 5xx, 429) while the current token is still valid keeps
  that token; a 401 ``invalid_token`` from a server renews once and sends the request again.
* ``dpop=True`` (RFC 9449): every token is bound to the agent's did:key and every request carries a proof
  (``agentauth.sdk.DPoPAuth``, which also answers nonce challenges).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import httpx

from agentauth.keys import KeyPair
from agentauth.sdk import credentials as credentials_file
from agentauth.sdk.agent_auth import AgentAuth
from agentauth.sdk.agent_core import (
    QUICKSTART_PATH,
    AgentClientError,
    AgentCore,
    AuthMethod,
    TokenError,
    TokenFlow,
    TokenKey,
    TokenSet,
    error_of,
)
from agentauth.sdk.client import DPoPAuth
from agentauth.sdk.credentials import Credentials

if TYPE_CHECKING:
    from agentauth.sdk.agent_requests import AgentRequestsAuth

PathLike = str | os.PathLike[str]


class _AgentBase:
    """What the sync and the async client share: construction, the cache's core, presentations, auth objects."""

    def __init__(
        self,
        credentials: Credentials | PathLike,
        *,
        issuer: str | None = None,
        credentials_file: PathLike | None = None,
        scope: str | None = None,
        resource: str | None = None,
        method: AuthMethod | None = None,
        dpop: bool = False,
        dpop_htu: Callable[[httpx.URL], str] | None = None,
        identity_credential: str | None = None,
        clock: Callable[[], float] = time.time,
        token_endpoint: str | None = None,
    ) -> None:
        """``credentials``: a ``Credentials`` or the path of a credentials file (then also where rotated refresh
        tokens are written, unless ``credentials_file`` says otherwise). ``scope``/``resource``: the default
        token's (the one ``token()`` and ``auth()`` give without arguments, whose refresh token the file keeps)."""
        if not isinstance(credentials, Credentials):
            credentials_file = credentials if credentials_file is None else credentials_file
            credentials = credentials_file_load(credentials)
        issuer = issuer or credentials.issuer
        if not issuer:
            raise AgentClientError("no issuer: give issuer= or a credentials file with an issuer member")
        self._file = Path(credentials_file) if credentials_file is not None else None
        self._core = AgentCore(
            credentials, issuer=issuer, method=method, default=TokenKey(scope, resource), clock=clock,
            token_endpoint=token_endpoint,
        )  # fmt: skip
        self._dpop: DPoPAuth | None = None
        if dpop:
            if self._core.key is None:
                raise AgentClientError("dpop=True needs the agent's private key (private_key_jwk)")
            self._dpop = DPoPAuth(self._core.key, htu=dpop_htu)
        self.identity_credential = identity_credential

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(agent_id={self.agent_id!r}, issuer={self.issuer!r}, "
            f"method={self._core.method!r}, dpop={self._dpop is not None})"
        )

    # -- constructors ------------------------------------------------------------------------------------

    @classmethod
    def from_api_key(cls, issuer: str, api_key: str, agent_id: str | None = None, **options: Any) -> Self:
        """Authenticate with an API key (``client_credentials``, the key as ``client_secret``)."""
        return cls(Credentials(agent_id=agent_id or "", issuer=issuer, api_key=api_key), **options)

    @classmethod
    def from_key(cls, issuer: str, agent_id: str, key: KeyPair | Mapping[str, Any], **options: Any) -> Self:
        """Authenticate with the agent's did:key (``private_key_jwt``, or ``method="jwt_bearer"``)."""
        jwk = key.private_jwk() if isinstance(key, KeyPair) else dict(key)
        return cls(Credentials(agent_id=agent_id, issuer=issuer, private_key_jwk=jwk), **options)

    @staticmethod
    def _registered(answer: Any, issuer: str, credentials_file: PathLike | None) -> Credentials:
        credentials = Credentials.from_quickstart(answer, issuer=issuer)
        if credentials_file is not None:
            credentials_file_save(credentials_file, credentials)
        return credentials

    @staticmethod
    def _quickstart_body(name: str, agent_type: str, extra: Mapping[str, Any]) -> dict[str, Any]:
        return {"name": name, "agent_type": agent_type} | {k: v for k, v in extra.items() if v is not None}

    def _adopt(self, answer: dict[str, Any]) -> None:
        """Quickstart's token pair is for AgentAuth's own API with every scope: the default token when that is
        what the default key asks for (and no DPoP binding is wanted: its refresh token binds the family on
        first use); else the client starts with its primary credential and the file gets that family's token."""
        if self._core.default != TokenKey():
            self._core.forget_stored_refresh()
        elif self._dpop is None:
            self._core.seed(TokenKey(), answer)

    # -- what it is --------------------------------------------------------------------------------------

    @property
    def agent_id(self) -> str:
        return self._core.credentials.agent_id

    @property
    def did(self) -> str | None:
        return self._core.credentials.did

    @property
    def issuer(self) -> str:
        return self._core.issuer

    @property
    def key(self) -> KeyPair | None:
        return self._core.key

    @property
    def credentials(self) -> Credentials:
        """The current credentials (with the newest refresh token of the default family)."""
        return self._core.credentials

    @property
    def token_requests(self) -> dict[str, int]:
        """Token requests sent so far, by grant (``refresh_token``, ``api_key``, ``private_key_jwt``, ...)."""
        return dict(self._core.counts)

    def _key(self, scope: str | None, resource: str | None, delegation: str | None) -> TokenKey:
        if scope is None and resource is None and delegation is None:
            return self._core.default
        return TokenKey(scope, resource, delegation)

    # -- presentations -----------------------------------------------------------------------------------

    def present(
        self, *, audience: str, nonce: str, credentials: Sequence[str] = (), include_identity: bool = True
    ) -> str:
        """A Verifiable Presentation (VP JWT, signed by the agent's did:key) for a verifier's ``audience`` and
        ``nonce``, of the agent's identity credential (the one quickstart returned, or ``identity_credential=``)
        and any further ``credentials`` (e.g. delegation credentials)."""
        from agentauth.vc import create_presentation

        if self._core.key is None:
            raise AgentClientError("a presentation is signed by the agent's private key (private_key_jwk)")
        presented = list(credentials)
        if include_identity:
            if self.identity_credential is None:
                raise AgentClientError(
                    "no identity credential to present: give identity_credential= (quickstart returns it) or "
                    "include_identity=False with credentials="
                )
            presented.insert(0, self.identity_credential)
        now = datetime.fromtimestamp(self._core.clock(), tz=UTC)
        return create_presentation(self._core.key, presented, audience=audience, nonce=nonce, now=now)

    # -- auth objects ------------------------------------------------------------------------------------

    def auth(self, scope: str | None = None, resource: str | None = None, delegation: str | None = None) -> AgentAuth:
        """An ``httpx.Auth`` attaching this agent's current token for (``scope``, ``resource``, ``delegation``)
        - and a DPoP proof when the token is bound - to every request; on a 401 ``invalid_token`` it renews
        the token once and sends the request again."""
        return AgentAuth(self, self._key(scope, resource, delegation))

    def _dpop_for_token_requests(self) -> DPoPAuth | None:
        return self._dpop.with_token(None) if self._dpop is not None else None

    def _actor_key(self, key: TokenKey) -> TokenKey | None:
        """Under a delegation, the agent's own token authenticates it as the delegate (RFC 8693 actor_token)."""
        return TokenKey() if key.delegation is not None else None


def credentials_file_load(path: PathLike) -> Credentials:
    return credentials_file.load(path)


def credentials_file_save(path: PathLike, credentials: Credentials) -> Path:
    return credentials_file.save(path, credentials)


class AgentClient(_AgentBase):
    """The sync agent client (see the module docstring). Thread-safe; ``http``: an ``httpx.Client`` of yours
    for the token requests (it must not follow redirects with a DPoP proof), else one of its own."""

    def __init__(self, credentials: Credentials | PathLike, *, http: httpx.Client | None = None, **options: Any):
        super().__init__(credentials, **options)
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=10)
        self._locks: dict[TokenKey, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @classmethod
    def quickstart(
        cls,
        issuer: str,
        name: str,
        agent_type: str = "assistant",
        *,
        credentials_file: PathLike | None = None,
        description: str | None = None,
        registration_token: str | None = None,
        http: httpx.Client | None = None,
        **options: Any,
    ) -> AgentClient:
        """Register a new root agent (``POST /api/v1/agents/quickstart``), save what it returned - API key,
        private key, refresh token: shown only once - to ``credentials_file`` (0600), and return its client."""
        issuer = issuer.rstrip("/")
        extra = {"description": description, "registration_token": registration_token}
        body = cls._quickstart_body(name, agent_type, extra)
        sender = http if http is not None else httpx.Client(timeout=10)
        try:
            response = sender.post(issuer + QUICKSTART_PATH, json=body)
            if response.status_code != 201:
                raise error_of(response, "quickstart")
            answer = response.json()
        except BaseException:
            if http is None:
                sender.close()
            raise
        credentials = cls._registered(answer, issuer, credentials_file)
        client = cls(
            credentials, http=sender, credentials_file=credentials_file,
            identity_credential=answer.get("identity_credential"), **options,
        )  # fmt: skip
        client._own_http = http is None
        client._adopt(answer)
        return client

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def token(self, scope: str | None = None, resource: str | None = None, delegation: str | None = None) -> TokenSet:
        """A token for (``scope``, ``resource``, ``delegation``) that is not yet due, renewed if it was."""
        return self._token(self._key(scope, resource, delegation))

    def access_token(self, scope: str | None = None, resource: str | None = None) -> str:
        return self.token(scope, resource).access_token

    def exchange(self, delegation: str, scope: str | None = None, resource: str | None = None) -> TokenSet:
        """A token acting under ``delegation`` (a delegation credential naming this agent as its delegate)."""
        return self.token(scope, resource, delegation)

    def requests_auth(
        self, scope: str | None = None, resource: str | None = None, delegation: str | None = None
    ) -> AgentRequestsAuth:
        """``auth()`` for ``requests`` (a ``requests.auth.AuthBase``; needs ``requests`` installed)."""
        from agentauth.sdk.agent_requests import AgentRequestsAuth

        return AgentRequestsAuth(self.auth(scope, resource, delegation))

    def _lock(self, key: TokenKey) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _token(self, key: TokenKey) -> TokenSet:
        current = self._core.fresh(key)
        if current is not None:
            return current
        with self._lock(key):  # single flight: whoever waited here finds the token the first caller got
            current = self._core.fresh(key)
            if current is not None:
                return current
            return self._renew_locked(key)

    def _renew(self, key: TokenKey, stale: TokenSet | None) -> TokenSet:
        """After a server refused ``stale``: a new token (or the one another caller got meanwhile)."""
        with self._lock(key):
            current = self._core.replaced(key, stale)
            if current is not None:
                return current
            self._core.expire(key)
            return self._renew_locked(key)

    def _renew_locked(self, key: TokenKey) -> TokenSet:
        actor_key = self._actor_key(key)
        actor = self._token(actor_key) if actor_key is not None else None
        try:
            return self._run(self._core.obtain(key, actor))
        except (httpx.TransportError, TokenError) as failed:
            if isinstance(failed, TokenError) and not failed.transient:
                raise
            held = self._core.still_usable(key)
            if held is None:
                raise
            return held  # still valid: the next call after this one tries again
        finally:
            self._persist()

    def _run(self, flow: TokenFlow) -> TokenSet:
        auth = self._dpop_for_token_requests()
        request = next(flow)
        while True:
            response = self._http.send(request, auth=auth)
            try:
                request = flow.send(response)
            except StopIteration as done:
                token: TokenSet = done.value
                return token

    def _persist(self) -> None:
        pending, self._core.pending_save = self._core.pending_save, None
        if pending is not None and self._file is not None:
            credentials_file_save(self._file, pending)


class AsyncAgentClient(_AgentBase):
    """The async agent client (see the module docstring): ``await`` its methods; safe for concurrent tasks of
    one event loop. ``http``: an ``httpx.AsyncClient`` of yours for the token requests, else one of its own."""

    def __init__(self, credentials: Credentials | PathLike, *, http: httpx.AsyncClient | None = None, **options: Any):
        super().__init__(credentials, **options)
        self._own_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=10)
        self._locks: dict[TokenKey, asyncio.Lock] = {}

    @classmethod
    async def quickstart(
        cls,
        issuer: str,
        name: str,
        agent_type: str = "assistant",
        *,
        credentials_file: PathLike | None = None,
        description: str | None = None,
        registration_token: str | None = None,
        http: httpx.AsyncClient | None = None,
        **options: Any,
    ) -> AsyncAgentClient:
        """``AgentClient.quickstart``, async."""
        issuer = issuer.rstrip("/")
        extra = {"description": description, "registration_token": registration_token}
        body = cls._quickstart_body(name, agent_type, extra)
        sender = http if http is not None else httpx.AsyncClient(timeout=10)
        try:
            response = await sender.post(issuer + QUICKSTART_PATH, json=body)
            if response.status_code != 201:
                raise error_of(response, "quickstart")
            answer = response.json()
            credentials = await asyncio.to_thread(cls._registered, answer, issuer, credentials_file)
        except BaseException:
            if http is None:
                await sender.aclose()
            raise
        client = cls(
            credentials, http=sender, credentials_file=credentials_file,
            identity_credential=answer.get("identity_credential"), **options,
        )  # fmt: skip
        client._own_http = http is None
        client._adopt(answer)
        return client

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def token(
        self, scope: str | None = None, resource: str | None = None, delegation: str | None = None
    ) -> TokenSet:
        return await self._token(self._key(scope, resource, delegation))

    async def access_token(self, scope: str | None = None, resource: str | None = None) -> str:
        return (await self.token(scope, resource)).access_token

    async def exchange(self, delegation: str, scope: str | None = None, resource: str | None = None) -> TokenSet:
        return await self.token(scope, resource, delegation)

    def _lock(self, key: TokenKey) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def _token(self, key: TokenKey) -> TokenSet:
        current = self._core.fresh(key)
        if current is not None:
            return current
        async with self._lock(key):
            current = self._core.fresh(key)
            if current is not None:
                return current
            return await self._renew_locked(key)

    async def _renew(self, key: TokenKey, stale: TokenSet | None) -> TokenSet:
        async with self._lock(key):
            current = self._core.replaced(key, stale)
            if current is not None:
                return current
            self._core.expire(key)
            return await self._renew_locked(key)

    async def _renew_locked(self, key: TokenKey) -> TokenSet:
        actor_key = self._actor_key(key)
        actor = await self._token(actor_key) if actor_key is not None else None
        try:
            return await self._run(self._core.obtain(key, actor))
        except (httpx.TransportError, TokenError) as failed:
            if isinstance(failed, TokenError) and not failed.transient:
                raise
            held = self._core.still_usable(key)
            if held is None:
                raise
            return held
        finally:
            await self._persist()

    async def _run(self, flow: TokenFlow) -> TokenSet:
        auth = self._dpop_for_token_requests()
        request = next(flow)
        while True:
            response = await self._http.send(request, auth=auth)
            try:
                request = flow.send(response)
            except StopIteration as done:
                token: TokenSet = done.value
                return token

    async def _persist(self) -> None:
        pending, self._core.pending_save = self._core.pending_save, None
        if pending is not None and self._file is not None:
            await asyncio.to_thread(credentials_file_save, self._file, pending)
