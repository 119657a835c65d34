"""Shared dependencies of the use cases, and the steps several of them take (minting token pairs)."""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentauth.issuer.agent_snapshots import AgentSnapshots
from agentauth.issuer.audience import AudienceResolver
from agentauth.issuer.schemas import AgentOut, TokenResponse
from agentauth.issuer.secrets import SecretHasher, new_refresh_token
from agentauth.issuer.status import StatusRegistry
from agentauth.settings import Settings
from agentauth.storage import credentials
from agentauth.storage.ports import StoragePorts
from agentauth.storage.records import Agent, DPoPRequirement, RefreshTokenStatus
from agentauth.vc import CredentialIssuer, StatusEntry
from agentauth.vc.dpop_nonces import DPoPNonces

# Clients are told to refresh once this share of the access token's lifetime has passed.
REFRESH_BEFORE_FRACTION = 0.8


def new_id(prefix: str) -> str:
    """``prefix_`` + 12 hex digits of Unix milliseconds + 64 random bits: unique, and time-ordered so inserts
    append to the primary-key index (and to every index whose entries end with it) instead of touching a
    random page of each."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def agent_out(agent: Agent) -> AgentOut:
    return AgentOut(
        id=agent.id,
        did=agent.did,
        name=agent.name,
        agent_type=agent.agent_type,
        description=agent.description,
        trust_level=agent.trust_level,
        status=agent.status,
        parent_id=agent.parent_id,
        tenant_id=agent.tenant_id,
        scopes=list(agent.scopes),
        created_at=agent.created_at,
        updated_at=agent.updated_at,
        is_root=agent.parent_id is None,
        is_active=agent.is_active,
        require_dpop=agent.dpop_requirement >= DPoPRequirement.REQUIRED,
        bind_to_agent_key=agent.dpop_requirement >= DPoPRequirement.AGENT_KEY,
        backchannel_token_delivery_mode="poll" if agent.notification_endpoint is None else "ping",
        backchannel_client_notification_endpoint=agent.notification_endpoint,
    )


@dataclass
class IssuerCore:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    reads: async_sessionmaker[AsyncSession]
    credentials: CredentialIssuer
    status: StatusRegistry
    hasher: SecretHasher
    clock: Callable[[], datetime]
    # The storage ports of the backend (``storage.factory.storage_ports``, chosen once in ``bootstrap``).
    ports: StoragePorts
    # The token endpoint's URL, an audience of jwt-bearer assertions (RFC 7523 section 3); the REST adapter
    # says where it lives (``agentauth.paths``), bootstrap hands it in.
    token_endpoint: str
    # RFC 8707 identifiers of AgentAuth's own API besides the issuer URL (its REST API and /mcp): a ``resource``
    # naming one gets a token for our own API (``audience.AudienceResolver``); bootstrap names them.
    own_resources: tuple[str, ...] = ()
    # RFC 9449 section 8: the DPoP nonces of the token endpoint and our own API, from a key every replica derives
    # alike (bootstrap: from the KEK), so a nonce one replica gave is accepted by all.
    dpop_nonces: DPoPNonces = field(default_factory=lambda: DPoPNonces(secrets.token_bytes(32)))

    @property
    def is_postgres(self) -> bool:
        bind = self.sessions.kw.get("bind")
        return bind is not None and bind.dialect.name == "postgresql"

    @property
    def issuer_url(self) -> str:
        return self.settings.issuer_url

    @functools.cached_property
    def audience(self) -> AudienceResolver:
        """The RFC 8707 ``resource`` resolution of every grant, with its per-process cache of resource servers."""
        return AudienceResolver(self.ports.reads, self.issuer_url, self.own_resources)

    @functools.cached_property
    def agent_snapshots(self) -> AgentSnapshots:
        """Agents authenticating with their own key, as read a moment ago (``agent_snapshots.py``)."""
        return AgentSnapshots(self.ports.reads)

    def subject_claims(self, agent: Agent) -> dict[str, str]:
        return {
            "agentId": agent.id,
            "tenantId": agent.tenant_id,
            "agentType": agent.agent_type,
            "trustLevel": agent.trust_level,
        }

    def access_token_row(
        self,
        agent: Agent,
        scopes: Sequence[str],
        *,
        status: StatusEntry,
        now: datetime,
        client_id: str,
        api_key_id: str | None,
        family_id: str | None,
        subject_did: str | None = None,
        act: dict[str, Any] | None = None,
        delegation_chain: Sequence[str] | None = None,
        delegation_id: str | None = None,
        expires_at: datetime | None = None,
        extra_subject_claims: dict[str, Any] | None = None,
        audience: str | Sequence[str] | None = None,
        dpop_jkt: str | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        single_use: bool = False,
    ) -> tuple[str, datetime, dict[str, Any]]:
        """Sign an access token: (jwt, exp, the ``credentials`` row that records it with its status slot).
        ``audience``: the ``aud`` claim (``audience.Target.audience``); None: the issuer URL (our own API).
        ``dpop_jkt``: bound to that DPoP key (RFC 9449 section 6, ``cnf.jkt``). ``authorization_details``: what
        an owner approved (RFC 9396 section 9.1, the claim of that name); ``single_use``: spent at its first use."""
        default_exp = now + timedelta(seconds=self.settings.access_token_ttl_seconds)
        exp = min(default_exp, expires_at) if expires_at else default_exp
        kid = self.credentials.active_kid
        jwt, claims = self.credentials.issue_access_credential(
            subject_did=subject_did or agent.did,
            client_id=client_id,
            scopes=scopes,
            audience=self.issuer_url if audience is None else audience,
            now=now,
            expires_at=exp,
            status=self.status.entries(status),
            subject_claims=self.subject_claims(agent) | (extra_subject_claims or {}),
            act=act,
            delegation_chain=delegation_chain,
            dpop_jkt=dpop_jkt,
            authorization_details=authorization_details,
            single_use=single_use,
        )
        list_id, index = StatusRegistry.parse_entry(status)
        row = {
            "jti": claims["jti"],
            "kind": "access",
            "agent_id": agent.id,
            "tenant_id": agent.tenant_id,
            "client_id": client_id,
            "api_key_id": api_key_id,
            "refresh_family_id": family_id,
            "delegation_id": delegation_id,
            "scopes": list(scopes),
            "status_list_id": list_id,
            "status_index": index,
            "kid": kid,
            "issued_at": now,
            "expires_at": exp,
            "revoked_at": None,
        }
        return jwt, exp, row

    async def mint_access_token(
        self, session: AsyncSession, agent: Agent, scopes: Sequence[str], **kw: Any
    ) -> tuple[str, datetime]:
        """Sign an access token and durably record it, in the caller's transaction.

        ``status`` comes from ``StatusRegistry.allocate`` *before* the transaction opens: reserving a block
        is its own short transaction, which must not nest inside (SQLite has one writer).
        """
        jwt, exp, row = self.access_token_row(agent, scopes, **kw)
        await credentials.insert(session, **row)
        return jwt, exp

    def token_pair_rows(
        self,
        agent: Agent,
        scopes: Sequence[str],
        *,
        status: StatusEntry,
        now: datetime,
        api_key_id: str | None,
        family_id: str | None = None,
        resources: Sequence[str] | None = None,
        client_id: str | None = None,
        subject: str | None = None,
        agent_acts: bool = False,
        dpop_jkt: str | None = None,
    ) -> tuple[TokenResponse, dict[str, Any], dict[str, Any]]:
        """An access token plus a refresh token of ``family_id`` (a new family when None), with their rows;
        ``resources``: what the token is for (RFC 8707, its ``aud``; None: our own API), kept by the family.
        ``client_id``: the OAuth client (default: the agent itself); ``subject``: the ``sub`` when it is not the
        agent's DID - an owner who consented (the authorization code grant) -, with the agent as ``act`` when
        ``agent_acts``; all three kept by the family, so a refresh issues the same kind of token. ``dpop_jkt``:
        the request's DPoP key - the access token is bound to it (``token_type`` DPoP) and so is the family
        (RFC 9449 section 5: its refreshes need a proof by that key)."""
        family = family_id or new_id("rtf")
        audience = None
        if resources is not None:
            audience = resources[0] if len(resources) == 1 else list(resources)
        client = client_id or agent.id
        extra: dict[str, Any] = {}
        if subject is not None:
            extra = {"ownerId": subject} | ({"actingAgent": agent.did} if agent_acts else {})
        access, exp, credential_row = self.access_token_row(
            agent, scopes, status=status, now=now, client_id=client, api_key_id=api_key_id, family_id=family,
            audience=audience, subject_did=subject, act={"sub": agent.did} if subject and agent_acts else None,
            extra_subject_claims=extra or None, dpop_jkt=dpop_jkt,
        )  # fmt: skip
        refresh = new_refresh_token()
        refresh_row = {
            "id": new_id("rt"),
            "token_hash": self.hasher.hash(refresh),
            "family_id": family,
            "agent_id": agent.id,
            "tenant_id": agent.tenant_id,
            "api_key_id": api_key_id,
            "client_id": client,
            "scopes": list(scopes),
            "status": RefreshTokenStatus.ACTIVE,
            "created_at": now,
            "expires_at": now + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
            "used_at": None,
            "resources": list(resources) if resources is not None else None,
            "subject": subject,
            "agent_acts": agent_acts if subject is not None else None,
            "dpop_jkt": dpop_jkt,
        }
        tokens = token_response(access, exp, now, scopes, refresh, bound=dpop_jkt is not None)
        return tokens, credential_row, refresh_row

    def identity_credential_row(self, agent: Agent, now: datetime, status: StatusEntry) -> tuple[str, dict[str, Any]]:
        """Sign a new ``AgentIdentityCredential`` for ``agent``: (jwt, the ``credentials`` row that records it)."""
        exp = now + timedelta(seconds=self.settings.identity_credential_ttl_seconds)
        jwt, claims = self.credentials.issue_identity_credential(
            subject_did=agent.did,
            agent_id=agent.id,
            tenant_id=agent.tenant_id,
            agent_type=agent.agent_type,
            trust_level=agent.trust_level,
            name=agent.name,
            now=now,
            expires_at=exp,
            status=self.status.entries(status),
        )
        list_id, index = StatusRegistry.parse_entry(status)
        return jwt, {
            "jti": claims["jti"],
            "kind": "identity",
            "agent_id": agent.id,
            "tenant_id": agent.tenant_id,
            "scopes": [],
            "status_list_id": list_id,
            "status_index": index,
            "kid": self.credentials.active_kid,
            "issued_at": now,
            "expires_at": exp,
        }


def token_response(
    access: str, exp: datetime, now: datetime, scopes: Sequence[str], refresh: str | None, *, bound: bool = False
) -> TokenResponse:
    """``bound``: a DPoP-bound access token - RFC 9449 section 5: "token_type ... the value DPoP"."""
    lifetime = (exp - now).total_seconds()
    return TokenResponse(
        access_token=access,
        token_type="DPoP" if bound else "Bearer",
        expires_in=int(lifetime),
        refresh_token=refresh,
        scope=" ".join(scopes),
        expires_at=exp,
        refresh_before=now + timedelta(seconds=int(lifetime * REFRESH_BEFORE_FRACTION)),
    )
