"""Helpers for the ``agentauth.vc`` tests: one issuer, its status list, agents, delegation chains.

Everything runs at a fixed ``NOW``; the verifier gets the same instant through its ``clock``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agentauth.did import encode_did_key
from agentauth.keys import KeyPair, KeyRing, b64url_decode, b64url_encode
from agentauth.vc import (
    CredentialIssuer,
    StaticStatusLists,
    StatusEntry,
    StatusList,
    Verifier,
    random_free_index,
)

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
ISSUER_URL = "http://localhost:8000"
ISSUER_DID = "did:web:localhost%3A8000"
LIST_URL = f"{ISSUER_URL}/api/v1/status-lists/1"
AUDIENCE = "https://api.example.com"
TOKEN_LIFETIME = timedelta(minutes=15)
LINK_LIFETIME = timedelta(hours=1)


def segment(value: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode())


def forge(header: dict[str, Any], payload: dict[str, Any], key: KeyPair | None) -> str:
    """A compact JWS with any header, signed by ``key`` over the usual signing input (or unsigned)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = b64url_encode(key.sign(signing_input.encode())) if key is not None else ""
    return f"{signing_input}.{signature}"


def split(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The decoded header and payload of a compact JWS (no verification)."""
    header, payload, _ = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


@dataclass(frozen=True)
class Agent:
    """An agent key pair and its did:key."""

    pair: KeyPair
    did: str

    @classmethod
    def generate(cls) -> Agent:
        pair = KeyPair.generate()
        return cls(pair, encode_did_key(pair.public.raw))


@dataclass
class Chain:
    """A delegation chain: agents[0] is the root delegator, link i hands agents[i] -> agents[i + 1]."""

    agents: list[Agent]
    links: list[tuple[str, dict[str, Any]]]

    @property
    def jwts(self) -> list[str]:
        return [jwt for jwt, _ in self.links]

    def act(self) -> dict[str, Any]:
        """RFC 8693 ``act``: the current actor (last delegate) outermost, the first delegate innermost."""
        act: dict[str, Any] | None = None
        for agent in self.agents[1:]:
            act = {"sub": agent.did} if act is None else {"sub": agent.did, "act": act}
        assert act is not None
        return act


@dataclass
class Env:
    """One issuer with a key ring, a published status list and helpers to issue every credential type."""

    now: datetime
    ring: KeyRing = field(init=False)
    issuer: CredentialIssuer = field(init=False)
    status_list: StatusList = field(default_factory=StatusList)
    source: StaticStatusLists = field(default_factory=StaticStatusLists)
    taken: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.ring = KeyRing.create(ISSUER_DID, self.now)
        self.issuer = CredentialIssuer(ISSUER_URL, self.ring)
        self.publish()

    # -- status -----------------------------------------------------------------------------------------

    def entry(self) -> StatusEntry:
        index = random_free_index(self.status_list.size, self.taken)
        self.taken.add(index)
        return StatusEntry(LIST_URL, index)

    def publish(self, list_url: str = LIST_URL, into: str = LIST_URL) -> str:
        """Sign the current list as the credential for ``list_url`` and store it under ``into``."""
        credential = self.issuer.issue_status_list_credential(
            list_url=list_url,
            encoded_list=self.status_list.encode(),
            now=self.now,
            ttl_seconds=300,
            valid_for_seconds=3600,
        )
        self.source.put(into, credential)
        return credential

    def revoke(self, claims: dict[str, Any]) -> None:
        """Set the revocation bit of the credential with these claims and re-publish the list."""
        self.status_list.set(int(claims["vc"]["credentialStatus"]["statusListIndex"]))
        self.publish()

    def verifier(self, **overrides: Any) -> Verifier:
        options: dict[str, Any] = {
            "issuer_url": ISSUER_URL,
            "jwks": self.ring.jwks(),
            "status_source": self.source,
            "clock": lambda: self.now,
        }
        return Verifier(**(options | overrides))

    # -- credentials ------------------------------------------------------------------------------------

    def access_token(
        self,
        subject: Agent | str,
        *,
        scopes: Sequence[str] = ("read", "write"),
        issued_at: datetime | None = None,
        lifetime: timedelta = TOKEN_LIFETIME,
        issuer: CredentialIssuer | None = None,
        **extra: Any,
    ) -> tuple[str, dict[str, Any]]:
        did = subject if isinstance(subject, str) else subject.did
        at = issued_at or self.now
        options: dict[str, Any] = {
            "subject_did": did,
            "client_id": did,
            "scopes": scopes,
            "audience": AUDIENCE,
            "now": at,
            "expires_at": at + lifetime,
            "status": self.entry(),
        }
        return (issuer or self.issuer).issue_access_credential(**(options | extra))

    def identity(self, agent: Agent, *, lifetime: timedelta = timedelta(days=30)) -> tuple[str, dict[str, Any]]:
        return self.issuer.issue_identity_credential(
            subject_did=agent.did,
            agent_id="agent-1",
            tenant_id="tenant-1",
            agent_type="assistant",
            trust_level="verified",
            name="Test agent",
            now=self.now,
            expires_at=self.now + lifetime,
            status=self.entry(),
        )

    def link(
        self,
        delegator: Agent | str,
        delegate: Agent,
        *,
        scopes: Sequence[str],
        depth: int,
        parent: tuple[str, dict[str, Any]] | None = None,
        expires_at: datetime | None = None,
        digest_of: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """One delegation credential; ``digest_of`` replaces the parent JWT whose digest it carries."""
        parent_jwt = parent_id = None
        if parent is not None:
            parent_jwt, parent_id = digest_of or parent[0], parent[1]["jti"]
        return self.issuer.issue_delegation_credential(
            delegate_did=delegate.did,
            delegator_did=delegator if isinstance(delegator, str) else delegator.did,
            scopes=scopes,
            remaining_depth=depth,
            now=self.now,
            expires_at=expires_at or self.now + LINK_LIFETIME,
            status=self.entry(),
            parent_jwt=parent_jwt,
            parent_id=parent_id,
        )

    def chain(self, depth: int, scopes: Sequence[str] = ("read", "write", "delete")) -> Chain:
        """A valid chain of ``depth`` links; the root allows exactly ``depth - 1`` further hops."""
        agents = [Agent.generate() for _ in range(depth + 1)]
        links: list[tuple[str, dict[str, Any]]] = []
        for i in range(depth):
            parent = links[-1] if links else None
            links.append(self.link(agents[i], agents[i + 1], scopes=scopes, depth=depth - 1 - i, parent=parent))
        return Chain(agents, links)

    def delegated_token(
        self, chain: Chain, *, scopes: Sequence[str] = ("read",), **overrides: Any
    ) -> tuple[str, dict[str, Any]]:
        """An access token acting under ``chain``: sub = root delegator, act names the delegates."""
        options: dict[str, Any] = {
            "client_id": chain.agents[-1].did,
            "act": chain.act(),
            "delegation_chain": chain.jwts,
        }
        return self.access_token(chain.agents[0], scopes=scopes, **(options | overrides))
