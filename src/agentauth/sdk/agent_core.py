"""The agent client's sans-I/O core: which token request to make, what its answer means, when a token is due.

``AgentClient`` and ``AsyncAgentClient`` (``agentauth.sdk.agent``) drive the same generators with a sync or an
async ``httpx`` client: a flow yields the ``httpx.Request`` to send and is sent the ``httpx.Response``, so the
grant logic is written once and does no I/O of its own.

Tokens are held per ``TokenKey`` - (scope, resource, delegation) - because a token for one resource server
(RFC 8707: its ``aud``) or under one delegation is no token for another. A token is *due* once the local clock
reaches its ``refresh_before`` (the issuer's hint: 80 % of the lifetime), measured from when the answer arrived
(``expires_in``), so a skewed local clock does not make it late.

Getting a token for a key (``obtain``):

1. its refresh token (RFC 6749 section 6; rotated on every use) when it holds one - for the default key, the one
   in the credentials file at first;
2. if that is refused (``invalid_grant``: spent, revoked, expired) or there is none: the primary credential -
   ``client_credentials`` with the API key as ``client_secret``, or the agent's did:key in a ``private_key_jwt``
   client assertion or a ``jwt-bearer`` grant assertion (RFC 7523; a fresh ``jti`` each time, since the server
   accepts each once); under a delegation, token exchange (RFC 8693) with the agent's own token as actor.

Errors the server answers become ``TokenError`` with its RFC 6749 section 5.2 ``error`` code; neither they nor any
repr here carries a token, key or API key.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import httpx

from agentauth.keys import KeyPair
from agentauth.sdk.credentials import Credentials
from agentauth.vc import VerificationError
from agentauth.vc.jws import parse_compact

TOKEN_PATH: Final = "/api/v1/auth/token"
QUICKSTART_PATH: Final = "/api/v1/agents/quickstart"
GRANT_JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_TYPE_JWT: Final = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_ACCESS: Final = "urn:ietf:params:oauth:token-type:access_token"
# Answers a retry may cure (RFC 6749 section 5.2 has no such code; RFC 6749 section 4.1.2.1 and our 503s use it).
TRANSIENT_ERRORS: Final = frozenset({"temporarily_unavailable", "server_error", "slow_down"})

AuthMethod = Literal["api_key", "private_key_jwt", "jwt_bearer"]
TokenFlow = Generator[httpx.Request, httpx.Response, "TokenSet"]


class AgentClientError(Exception):
    """The agent client cannot do what was asked (no credential for it, a bad answer); never holds a secret."""


class TokenError(AgentClientError):
    """The token endpoint refused: ``error`` is the RFC 6749 section 5.2 code (``invalid_grant``,
    ``invalid_client``, ``invalid_scope``, ...), ``description`` the server's ``error_description``."""

    def __init__(self, error: str, description: str | None, status_code: int, grant: str) -> None:
        self.error = error
        self.description = description
        self.status_code = status_code
        self.grant = grant
        detail = f": {description}" if description else ""
        super().__init__(f"{grant} refused ({status_code} {error}){detail}")

    @property
    def transient(self) -> bool:
        """A refusal a later attempt may not get (rate limit, server trouble), not a verdict on the credential."""
        return self.status_code == 429 or self.status_code >= 500 or self.error in TRANSIENT_ERRORS

    def __repr__(self) -> str:
        return f"TokenError(error={self.error!r}, status_code={self.status_code}, grant={self.grant!r})"


@dataclass(frozen=True, slots=True)
class TokenKey:
    """What a token is for: its ``scope`` (space-separated, None = all the agent holds), ``resource`` (RFC 8707,
    None = AgentAuth's own API) and ``delegation`` (a delegation credential it acts under, RFC 8693)."""

    scope: str | None = None
    resource: str | None = None
    delegation: str | None = None

    def __repr__(self) -> str:  # a delegation credential is a bearer of sorts: only its digest
        under = hashlib.sha256(self.delegation.encode()).hexdigest()[:12] if self.delegation else None
        return f"TokenKey(scope={self.scope!r}, resource={self.resource!r}, delegation={under!r})"


@dataclass(frozen=True, slots=True)
class TokenSet:
    """One token answer. ``refresh_at`` and ``expires_at`` are local clock times (seconds since the epoch)."""

    access_token: str = field(repr=False)
    token_type: str
    scope: str
    refresh_token: str | None = field(repr=False)
    received_at: float
    refresh_at: float
    expires_at: float
    grant: str

    @property
    def bound(self) -> bool:
        """DPoP-bound (RFC 9449 section 5: ``token_type`` DPoP): sent with a proof by the agent's key."""
        return self.token_type.lower() == "dpop"

    def due(self, now: float) -> bool:
        return now >= self.refresh_at

    def usable(self, now: float, margin: float = 2.0) -> bool:
        """Still accepted for a moment: a renewal that failed for a transient reason may wait for the next call."""
        return now < self.expires_at - margin

    @classmethod
    def parse(cls, body: Any, received_at: float, grant: str) -> TokenSet:
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise AgentClientError(f"{grant}: the token endpoint's answer has no access_token")
        try:
            lifetime = max(0.0, float(body.get("expires_in", 0)))
        except (TypeError, ValueError):
            raise AgentClientError(f"{grant}: expires_in is not a number") from None
        expires_at = received_at + lifetime
        refresh_at = received_at + lifetime * 0.8
        # refresh_before is an absolute time on the server's clock; what counts here is how long before expiry
        # it lies, applied to our own clock (a skewed clock would otherwise refresh early or too late).
        hint = _seconds_before_expiry(body.get("refresh_before"), body.get("expires_at"))
        if hint is not None:
            refresh_at = min(expires_at, max(received_at, expires_at - hint))
        refresh = body.get("refresh_token")
        return cls(
            access_token=body["access_token"],
            token_type=str(body.get("token_type") or "Bearer"),
            scope=str(body.get("scope") or ""),
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            received_at=received_at,
            refresh_at=refresh_at,
            expires_at=expires_at,
            grant=grant,
        )


def _seconds_before_expiry(refresh_before: object, expires_at: object) -> float | None:
    try:
        before = datetime.fromisoformat(str(refresh_before))
        expires = datetime.fromisoformat(str(expires_at))
    except ValueError:
        return None
    return max(0.0, (expires - before).total_seconds())


def _client_id(access_token: str) -> str:
    try:
        claims = parse_compact(access_token).payload
    except VerificationError:
        return ""
    value = claims.get("client_id") or claims.get("sub")
    return value if isinstance(value, str) else ""


def error_of(response: httpx.Response, grant: str) -> TokenError:
    """The ``TokenError`` an error answer means (RFC 6749 section 5.2 body; anything else by its status)."""
    error, description = "server_error" if response.status_code >= 500 else "invalid_request", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        error = body["error"][:100]
        if isinstance(body.get("error_description"), str):
            description = body["error_description"][:300]
    elif response.status_code == 429:
        error = "slow_down"
    return TokenError(error, description, response.status_code, grant)


def quickstart_request(issuer: str, body: dict[str, Any]) -> httpx.Request:
    return httpx.Request("POST", issuer + QUICKSTART_PATH, json=body)


class AgentCore:
    """The state of one agent client - its credentials, tokens by key, the clock - and its token flows."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        issuer: str,
        method: AuthMethod | None = None,
        default: TokenKey = TokenKey(),
        clock: Callable[[], float] = time.time,
        token_endpoint: str | None = None,
    ) -> None:
        self.credentials = credentials
        self.issuer = issuer.rstrip("/")
        self.token_endpoint = token_endpoint or self.issuer + TOKEN_PATH
        self.key: KeyPair | None = credentials.key()
        self.method: AuthMethod | None = method or (
            "api_key" if credentials.api_key else "private_key_jwt" if self.key is not None else None
        )
        if self.method == "api_key" and not credentials.api_key:
            raise AgentClientError("the api_key method needs credentials holding an api_key")
        if self.method in ("private_key_jwt", "jwt_bearer") and self.key is None:
            raise AgentClientError(f"the {self.method} method needs credentials holding private_key_jwk")
        self.default = default
        self.clock = clock
        self.tokens: dict[TokenKey, TokenSet] = {}
        # The credentials file's refresh token belongs to the default key's family; tried once, first.
        self._stored_refresh: str | None = credentials.refresh_token
        self.pending_save: Credentials | None = None
        self.counts: dict[str, int] = {}  # grant -> token requests sent, for callers that watch what happened

    def __repr__(self) -> str:
        return f"AgentCore(agent_id={self.credentials.agent_id!r}, issuer={self.issuer!r}, method={self.method!r})"

    # -- the cache ---------------------------------------------------------------------------------------

    def fresh(self, key: TokenKey) -> TokenSet | None:
        """The key's token if it is not yet due."""
        held = self.tokens.get(key)
        return held if held is not None and not held.due(self.clock()) else None

    def still_usable(self, key: TokenKey) -> TokenSet | None:
        held = self.tokens.get(key)
        return held if held is not None and held.usable(self.clock()) else None

    def replaced(self, key: TokenKey, stale: TokenSet | None) -> TokenSet | None:
        """After a 401 with ``stale``: the token another caller has got meanwhile, if any."""
        held = self.tokens.get(key)
        if held is not None and stale is not None and held.access_token != stale.access_token:
            return held if held.usable(self.clock()) else None
        return None

    def expire(self, key: TokenKey) -> None:
        """The server refused the access token: keep the refresh token, make the access token due now."""
        held = self.tokens.get(key)
        if held is not None:
            self.tokens[key] = TokenSet(
                held.access_token, held.token_type, held.scope, held.refresh_token,
                held.received_at, held.received_at, held.received_at, held.grant,
            )  # fmt: skip

    def forget_stored_refresh(self) -> None:
        """The credentials' refresh token is of another family than the default key's: do not send it."""
        self._stored_refresh = None

    def seed(self, key: TokenKey, body: dict[str, Any]) -> TokenSet:
        """A token answer got elsewhere (quickstart's first pair)."""
        token = TokenSet.parse(body, self.clock(), "quickstart")
        self._store(key, token)
        return token

    def _store(self, key: TokenKey, token: TokenSet) -> None:
        self.tokens[key] = token
        if key == self.default and key.delegation is None and token.refresh_token != self.credentials.refresh_token:
            # The newest refresh token of the default family goes to the credentials file (the driver saves it):
            # the one it replaced is spent, so a restart must find this one.
            self.credentials = self.credentials.with_refresh_token(token.refresh_token)
            self.pending_save = self.credentials
        if key == self.default:
            # Superseded: that one is spent now or belongs to a family this client no longer follows; sending it
            # again would be a refresh-token reuse, which revokes the whole family (RFC 9700 section 4.14.2).
            self._stored_refresh = None
        if not self.credentials.agent_id:  # authenticated by an API key alone: the token names the agent
            self.credentials = replace(self.credentials, agent_id=_client_id(token.access_token))

    # -- the flows ---------------------------------------------------------------------------------------

    def obtain(self, key: TokenKey, actor_token: TokenSet | None = None) -> TokenFlow:
        """A new token for ``key``: its refresh token, else the primary credential (see the module docstring).
        Under a delegation, ``actor_token`` is the agent's own token for the exchange (None: its API key)."""
        held = self.tokens.get(key)
        refresh = held.refresh_token if held is not None else None
        if refresh is None and key == self.default:
            refresh, self._stored_refresh = self._stored_refresh, None
        if refresh is not None:
            try:
                response = yield self._request(self.refresh_form(key, refresh), "refresh_token")
                return self._accept(key, response, "refresh_token")
            except TokenError as refused:
                if refused.transient:
                    raise
                # Spent, revoked or expired: the family is gone; drop it and authenticate afresh below.
                self.tokens.pop(key, None)
                if key.delegation is None and self.method is None:
                    raise
        if key.delegation is not None:
            form, grant = self.exchange_form(key, actor_token), "token_exchange"
        else:
            form, grant = self.primary_form(key), self.method or "none"
        response = yield self._request(form, grant)
        return self._accept(key, response, grant)

    def _request(self, form: dict[str, str | list[str]], grant: str) -> httpx.Request:
        self.counts[grant] = self.counts.get(grant, 0) + 1
        return httpx.Request("POST", self.token_endpoint, data=form, headers={"Accept": "application/json"})

    def _accept(self, key: TokenKey, response: httpx.Response, grant: str) -> TokenSet:
        if response.status_code != 200:
            raise error_of(response, grant)
        try:
            body = response.json()
        except ValueError:
            raise AgentClientError(f"{grant}: the token endpoint did not answer JSON") from None
        token = TokenSet.parse(body, self.clock(), grant)
        self._store(key, token)
        return token

    # -- the forms (RFC 6749 section 4.4 and 6, RFC 7523, RFC 8693, RFC 8707) ------------------------------

    @staticmethod
    def _narrowing(key: TokenKey) -> dict[str, str | list[str]]:
        form: dict[str, str | list[str]] = {}
        if key.scope is not None:
            form["scope"] = key.scope
        if key.resource is not None:
            form["resource"] = key.resource
        return form

    def refresh_form(self, key: TokenKey, refresh_token: str) -> dict[str, str | list[str]]:
        return {"grant_type": "refresh_token", "refresh_token": refresh_token, **self._narrowing(key)}

    def primary_form(self, key: TokenKey) -> dict[str, str | list[str]]:
        agent_id = self.credentials.agent_id
        if self.method == "api_key":
            assert self.credentials.api_key is not None
            form: dict[str, str | list[str]] = {"grant_type": "client_credentials"}
            if agent_id:  # an API key alone names its agent; the id is optional (RFC 6749 section 2.3.1)
                form["client_id"] = agent_id
            form["client_secret"] = self.credentials.api_key
        elif self.method == "private_key_jwt":
            # RFC 7523 section 2.2: iss = sub = the client_id (the agent id; without one, its did:key).
            form = {
                "grant_type": "client_credentials",
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": self.assertion(client_id=agent_id or None),
            }
            if agent_id:
                form["client_id"] = agent_id
        elif self.method == "jwt_bearer":
            form = {"grant_type": GRANT_JWT_BEARER, "assertion": self.assertion()}
        else:
            raise AgentClientError(
                "no credential left to authenticate with: the refresh token was refused and the credentials hold "
                "neither an api_key nor a private_key_jwk"
            )
        return form | self._narrowing(key)

    def exchange_form(self, key: TokenKey, actor_token: TokenSet | None) -> dict[str, str | list[str]]:
        assert key.delegation is not None
        form: dict[str, str | list[str]] = {
            "grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": key.delegation, "subject_token_type": TOKEN_TYPE_JWT,
        }  # fmt: skip
        if actor_token is not None:
            form |= {"actor_token": actor_token.access_token, "actor_token_type": TOKEN_TYPE_ACCESS}
        elif self.credentials.api_key:
            form["client_secret"] = self.credentials.api_key
        else:
            raise AgentClientError("token exchange needs the agent's own access token or its api_key")
        return form | self._narrowing(key)

    def assertion(self, *, client_id: str | None = None) -> str:
        """An RFC 7523 assertion signed by the agent's did:key, for the token endpoint, with a new ``jti``."""
        from agentauth.vc import create_agent_assertion

        if self.key is None:
            raise AgentClientError("an assertion needs the agent's private key (private_key_jwk)")
        now = datetime.fromtimestamp(self.clock(), tz=UTC)
        return create_agent_assertion(
            self.key, audience=self.token_endpoint, now=now, lifetime=timedelta(seconds=60), client_id=client_id
        )
