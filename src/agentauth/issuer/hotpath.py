"""The two request paths that carry most traffic, run set-at-a-time (see ``storage/batch.py``):

* issuing tokens for API keys (``client_credentials``), as a two-stage pipeline so that signing never waits
  for the database writer and the writer never waits for signing:

  1. *prepare* (no write lock): one ``IN`` query on the read engine finds every waiting request's key and
     agent; each secret is checked, each token signed and its rows built;
  2. *commit* (the writer): one query re-reads which of those keys and agents are still active - FOR SHARE on
     PostgreSQL, and on SQLite inside the single writer's transaction - so a revocation that landed since
     stage 1 refuses the request instead of letting a token out that its cascade did not see; then one insert
     per table (tokens, refresh tokens, audit events) and one commit for the whole round.

  While one round commits, the next one is being prepared (on SQLite, by another worker process too): the
  writer lock is held only for the re-check and the inserts. ``private_key_jwt`` requests take the same two
  stages (their agent from a snapshot, re-checked unchanged; their assertion's single use recorded by the
  round), and ``authorization_code`` redemptions, signed by their grant, join stage 2 (``SignedRedemption``:
  the round spends their codes).
* looking up the state of presented tokens (every authenticated request, introspection): one joined query
  gives revocation, expiry, the owning agent and its tenant's policy version for every waiting request.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agentauth.errors import AgentAuthError, InvalidClient, InvalidDPoPProof, InvalidGrant, TemporarilyUnavailable
from agentauth.issuer import audit
from agentauth.issuer.client_auth import REFUSED, check_api_key
from agentauth.issuer.context import RequestContext
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.dpop import require_binding
from agentauth.issuer.schemas import TokenResponse
from agentauth.issuer.secrets import api_key_lookup_prefix, looks_like_api_key
from agentauth.storage.batch import MicroBatcher
from agentauth.storage.ports import AssertionUse, CodeRedemption, IssuedRows, RoundView
from agentauth.storage.records import Agent, ApiKey, AuditOutcome, Revoked, RevokedFamily, TokenState
from agentauth.vc import StatusEntry

log = logging.getLogger("agentauth.tokens")

LAST_USED_RESOLUTION = timedelta(seconds=60)
# Stage 1 may sign from a snapshot of a key and its agent read this recently (stage 2 re-checks it).
SNAPSHOT_SECONDS = 5.0
SNAPSHOT_ENTRIES = 10_000
STALE_RETRIES = 3


class _StaleSnapshot(Exception):
    """Stage 2 found the agent changed since the snapshot stage 1 signed from: sign again from fresh data."""


@dataclass(frozen=True, slots=True)
class ClientAssertion:
    """``private_key_jwt`` (RFC 7523 section 2.2) instead of an API key: the agent the assertion names (its id or
    DID) and how to check the assertion against that agent's did:key - its claims, or ``InvalidClient``."""

    named: str
    verify: Callable[[Agent], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ClientCredentialsRequest:
    api_key: str  # "" with an assertion
    client_id: str | None
    scope: str | None  # the ``scope`` parameter, judged with the resources (``audience.AudienceResolver``)
    resources: tuple[str, ...]  # RFC 8707 ``resource`` parameters (``audience.resource_param``)
    slot: StatusEntry
    ctx: RequestContext
    assertion: ClientAssertion | None = None


@dataclass(frozen=True, slots=True)
class _Signed:
    """Stage 1's outcome for one request: a signed token pair waiting to be recorded, or a refusal waiting for
    its audit event to be recorded."""

    request: ClientCredentialsRequest
    now: datetime
    refusal: AgentAuthError | None = None
    tokens: TokenResponse | None = None
    key: ApiKey | None = None
    agent: Agent | None = None
    credential_row: dict[str, Any] | None = None
    refresh_row: dict[str, Any] | None = None
    use: AssertionUse | None = None  # an assertion's single use, with the agent state it was signed from
    proof: AssertionUse | None = None  # the DPoP proof's single use, likewise (``issuer/dpop.py``)


@dataclass(frozen=True, slots=True)
class SignedRedemption:
    """An ``authorization_code`` redemption its grant judged and signed (``grants/authorization_code.py``), for
    the issuing round to record: the code spent (``CodeRedemption``) only if its agent is still active and the
    code still unused, the pair and its audit event recorded with it. ``inactive``/``spent`` are what the round
    answers when the agent was deactivated meanwhile / when the code was used (or expired) meanwhile; the grant
    records refusals itself."""

    redemption: CodeRedemption
    tokens: TokenResponse
    credential_row: dict[str, Any]
    refresh_row: dict[str, Any]
    event: dict[str, Any]
    inactive: InvalidGrant
    spent: InvalidGrant
    proof: AssertionUse | None = None  # the request's DPoP proof, used once with the code (``issuer/dpop.py``)

    @property
    def now(self) -> datetime:
        return self.redemption.at


class ClientCredentialsIssuer:
    def __init__(self, core: IssuerCore) -> None:
        self.core = core
        batch = core.settings.batch_max_size
        self._prepare: MicroBatcher[ClientCredentialsRequest, _Signed] = MicroBatcher(self._prepare_round, batch)
        self._commit: MicroBatcher[_Signed | SignedRedemption, TokenResponse] = MicroBatcher(self._commit_round, batch)
        # prefix -> (monotonic time read, key, agent). Only found keys are kept; stage 2 decides with fresh data.
        self._snapshots: OrderedDict[str, tuple[float, ApiKey, Agent]] = OrderedDict()

    async def issue(self, request: ClientCredentialsRequest) -> TokenResponse:
        for _ in range(STALE_RETRIES):
            try:
                return await self._commit.submit(await self._prepare.submit(request))
            except _StaleSnapshot:
                if request.assertion is not None:
                    self.core.agent_snapshots.drop(request.assertion.named)
                else:
                    self._snapshots.pop(api_key_lookup_prefix(request.api_key), None)
        raise TemporarilyUnavailable("the client is being updated; retry")

    async def redeem(self, signed: SignedRedemption) -> TokenResponse:
        """Record an ``authorization_code`` redemption with the next issuing round (one statement spends the
        round's codes, one reads their agents live, one insert per table)."""
        return await self._commit.submit(signed)

    async def _lookup(self, prefixes: Sequence[str]) -> dict[str, tuple[ApiKey, Agent]]:
        """Keys and agents by prefix: recent snapshots, the rest in one query on the read engine. Measured: the
        query cost more than signing the whole round; a snapshot is safe because stage 2 re-reads, in the write
        transaction, whether each key is still live and whether its agent changed (``agents.updated_at``)."""
        now = time.monotonic()
        found: dict[str, tuple[ApiKey, Agent]] = {}
        missing: list[str] = []
        for prefix in set(prefixes):
            hit = self._snapshots.get(prefix)
            if hit is not None and now - hit[0] < SNAPSHOT_SECONDS:
                found[prefix] = (hit[1], hit[2])
            else:
                missing.append(prefix)
        if missing:
            fresh = await self.core.ports.client_keys.api_keys_with_agents(missing)
            for prefix, (key, agent) in fresh.items():
                self._snapshots[prefix] = (now, key, agent)
                self._snapshots.move_to_end(prefix)
            while len(self._snapshots) > SNAPSHOT_ENTRIES:
                self._snapshots.popitem(last=False)
            found.update(fresh)
        return found

    async def _prepare_round(self, requests: Sequence[ClientCredentialsRequest]) -> list[_Signed | BaseException]:
        now = self.core.clock()
        prefixes = [api_key_lookup_prefix(r.api_key) for r in requests if looks_like_api_key(r.api_key)]
        found = await self._lookup(prefixes) if prefixes else {}
        results: list[_Signed | BaseException] = []
        for request in requests:
            try:
                if request.assertion is not None:
                    results.append(await self._sign_assertion(request, request.assertion, now))
                    continue
                results.append(await self._sign(request, found, now))
            except InvalidClient as exc:
                results.append(_Signed(request, now, refusal=exc))
            except AgentAuthError as exc:
                results.append(exc)
        return results

    async def _sign(
        self, request: ClientCredentialsRequest, found: Mapping[str, tuple[ApiKey, Agent]], now: datetime
    ) -> _Signed:
        pair = found.get(api_key_lookup_prefix(request.api_key)) if looks_like_api_key(request.api_key) else None
        check_api_key(request.api_key, pair, self.core.hasher, now)
        assert pair is not None
        key, agent = pair
        if request.client_id is not None and request.client_id not in (agent.id, agent.did):
            raise InvalidClient(REFUSED, debug="client_id does not own this API key")
        try:
            require_binding(agent, request.ctx.dpop)
        except InvalidDPoPProof as refusal:  # recorded by the round, in the agent's tenant's audit log
            return _Signed(request, now, refusal, key=key, agent=agent)
        allowed = [s for s in key.scopes if s in agent.scopes]
        # No resource (the common case): no I/O; a registered one: the resolver's cache, else one indexed read.
        target = await self.core.audience.resolve(agent.tenant_id, request.resources, request.scope, allowed)
        dpop = request.ctx.dpop
        tokens, credential_row, refresh_row = self.core.token_pair_rows(
            agent, target.scopes, status=request.slot, now=now, api_key_id=key.id, resources=target.resources,
            dpop_jkt=request.ctx.dpop_jkt,
        )  # fmt: skip
        proof = dpop.use(agent, agent.updated_at) if dpop else None
        return _Signed(request, now, None, tokens, key, agent, credential_row, refresh_row, proof=proof)

    async def _sign_assertion(
        self, request: ClientCredentialsRequest, assertion: ClientAssertion, now: datetime
    ) -> _Signed:
        """A client assertion's request: its agent from a recent snapshot (``agent_snapshots.py``; the round
        re-checks it unchanged), the assertion checked against the agent's did:key, the pair signed."""
        agent, _ = await self.core.agent_snapshots.get(assertion.named)
        if agent is None or not agent.is_active:
            raise InvalidClient(REFUSED, debug=f"client_assertion names no active agent: {assertion.named[:80]}")
        claims = assertion.verify(agent)
        exp = datetime.fromtimestamp(float(claims["exp"]), tz=now.tzinfo)
        use = AssertionUse(agent.id, agent.updated_at, agent.did, str(claims["jti"]), exp)
        try:
            require_binding(agent, request.ctx.dpop)
        except InvalidDPoPProof as refusal:  # recorded by the round; the assertion stays unused
            return _Signed(request, now, refusal, agent=agent, use=use)
        target = await self.core.audience.resolve(agent.tenant_id, request.resources, request.scope, agent.scopes)
        dpop = request.ctx.dpop
        tokens, credential_row, refresh_row = self.core.token_pair_rows(
            agent, target.scopes, status=request.slot, now=now, api_key_id=None, resources=target.resources,
            dpop_jkt=request.ctx.dpop_jkt,
        )  # fmt: skip
        proof = dpop.use(agent, agent.updated_at) if dpop else None
        return _Signed(request, now, None, tokens, None, agent, credential_row, refresh_row, use, proof)

    async def _commit_round(self, signed: Sequence[_Signed | SignedRedemption]) -> list[TokenResponse | BaseException]:
        results: list[TokenResponse | BaseException] = []
        issued = [s for s in signed if isinstance(s, _Signed)]
        redemptions = [s.redemption for s in signed if isinstance(s, SignedRedemption)]

        def plan(view: RoundView) -> IssuedRows:
            # Runs inside the write transaction, once SQL has said which keys and agents are still live (with the
            # time each agent was last changed), which assertions this round recorded as used, which codes it spent.
            results.clear()
            rows = IssuedRows(now=signed[-1].now)
            live = view.keys
            spent: set[tuple[str, str]] = set()
            codes: set[str] = set()
            for item in signed:
                if isinstance(item, SignedRedemption):
                    results.append(self._redeemed(item, view, codes, spent, rows))
                    continue
                request, now, key, agent, refusal = item.request, item.now, item.key, item.agent, item.refusal
                if refusal is None:
                    judged = self._single_uses(item, view, spent)
                    if isinstance(judged, _StaleSnapshot):
                        results.append(judged)
                        continue
                    refusal = judged
                if refusal is None and key is not None and key.id not in live:
                    refusal = InvalidClient(REFUSED, debug=f"API key {key.id} or its agent was revoked during issuance")
                elif refusal is None and key is not None and agent is not None and live[key.id] != agent.updated_at:
                    results.append(_StaleSnapshot())
                    continue
                if refusal is not None:
                    results.append(refusal)
                    reason = refusal.debug or refusal.description
                    # A key (or an assertion's agent) we identified: its tenant sees the attempt in its own audit log.
                    owner: dict[str, Any] = {}
                    if agent is not None and (key is not None or item.use is not None):
                        owner = {"tenant_id": agent.tenant_id, "actor": agent.id, "agent_id": agent.id,
                                 "key_id": key.id if key else None}  # fmt: skip
                    rows.audit_events.append(self._audit(request, now, AuditOutcome.FAILURE, reason, **owner))
                    continue
                assert agent is not None and item.tokens is not None
                assert item.credential_row is not None and item.refresh_row is not None
                rows.credentials.append(item.credential_row)
                rows.refresh_tokens.append(item.refresh_row)
                rows.audit_events.append(
                    self._audit(
                        request, now, AuditOutcome.SUCCESS, None, tenant_id=agent.tenant_id, actor=agent.id,
                        key_id=key.id if key else None, agent_id=agent.id,
                    )
                )  # fmt: skip
                if key is not None and (key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION):
                    rows.touched.add(key.id)
                results.append(item.tokens)
            return rows

        keys = sorted({s.key.id for s in issued if s.key})
        assertions = [u for s in issued if not s.refusal for u in (s.use, s.proof) if u]
        assertions += [s.proof for s in signed if isinstance(s, SignedRedemption) and s.proof]
        await self.core.ports.issuance.record_round(keys, plan, assertions, redemptions)
        return results

    @staticmethod
    def _single_uses(
        item: _Signed, view: RoundView, spent: set[tuple[str, str]]
    ) -> InvalidClient | InvalidDPoPProof | _StaleSnapshot | None:
        """Whether the round recorded the single use of the request's client assertion and DPoP proof: None (it
        did), the refusal, or ``_StaleSnapshot`` when the agent changed since the request was signed."""
        for use in (item.use, item.proof):
            if use is None:
                continue
            if use.agent_id not in view.agents:
                return InvalidClient(REFUSED, debug=f"agent {use.agent_id} deactivated during issuance")
            if view.agents[use.agent_id] != use.agent_seen:
                return _StaleSnapshot()
            if (use.issuer, use.jti) not in view.claimed or (use.issuer, use.jti) in spent:
                if use is item.proof:
                    return InvalidDPoPProof("the DPoP proof was used before", debug="DPoP proof jti replayed")
                return InvalidClient(REFUSED, debug="client_assertion jti replayed")
            spent.add((use.issuer, use.jti))
        return None

    @staticmethod
    def _redeemed(
        item: SignedRedemption, view: RoundView, codes: set[str], spent: set[tuple[str, str]], rows: IssuedRows
    ) -> TokenResponse | BaseException:
        """A redemption's outcome in the round's plan: its rows added, or the refusal (the grant records it)."""
        code, proof = item.redemption, item.proof
        if code.agent_id not in view.agents:
            return item.inactive
        if code.code_hash not in view.redeemed or code.code_hash in codes:
            return item.spent  # used before (or by an earlier request of this round), or expired meanwhile
        codes.add(code.code_hash)
        if proof is not None:
            if (proof.issuer, proof.jti) not in view.claimed or (proof.issuer, proof.jti) in spent:
                # The code is spent all the same: a stolen code with a replayed proof must not stay usable.
                return InvalidDPoPProof("the DPoP proof was used before", debug="DPoP proof jti replayed")
            spent.add((proof.issuer, proof.jti))
        rows.credentials.append(item.credential_row)
        rows.refresh_tokens.append(item.refresh_row)
        rows.audit_events.append(item.event)
        return item.tokens

    @staticmethod
    def _audit(
        request: ClientCredentialsRequest,
        now: datetime,
        outcome: AuditOutcome,
        reason: str | None,
        *,
        tenant_id: str | None = None,
        actor: str | None = None,
        key_id: str | None = None,
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        # An API key's request names the key; a client assertion's (no key) names its agent.
        target_type, target_id = ("api_key", key_id) if key_id else ("agent", agent_id) if agent_id else (None, None)
        return audit.event(
            request.ctx, now, action="token.issued" if outcome == AuditOutcome.SUCCESS else "token.denied",
            tenant_id=tenant_id, actor=actor, target_type=target_type, target_id=target_id,
            outcome=outcome, reason=f"client_credentials: {reason}" if reason else None,
            details={"grant_type": "client_credentials"},
        )  # fmt: skip


class TokenStateLookup:
    """Batched ``jti -> TokenState`` reads on the read engine (SQLite: no write lock taken)."""

    def __init__(self, core: IssuerCore) -> None:
        self.core = core
        self._batcher: MicroBatcher[str, TokenState | None] = MicroBatcher(self._round, core.settings.batch_max_size)

    async def get(self, jti: str) -> TokenState | None:
        return await self._batcher.submit(jti)

    async def _round(self, jtis: Sequence[str]) -> list[TokenState | BaseException | None]:
        states = await self.core.ports.token_states.token_states(jtis)
        return [states.get(jti) for jti in jtis]


@dataclass(frozen=True, slots=True)
class _Revocation:
    jti: str
    actor: str
    ctx: RequestContext


class Revocations:
    """Batched revocation of single credentials whose revoker was already authorized (RFC 7009 on an access or
    identity token): whatever accumulated while the previous round wrote is revoked in one write transaction,
    with one audit event per credential in the revoking request's name. An access token is revoked with the
    refresh half of its pair: every refresh token of the family it was minted with (RFC 7009 section 2.1).
    Measured alone (an ORM transaction each) a revocation cost ~5 ms of CPU on SQLite, and revocations queued
    behind each other on the single writer."""

    def __init__(self, core: IssuerCore) -> None:
        self.core = core
        self._batcher: MicroBatcher[_Revocation, None] = MicroBatcher(self._round, core.settings.batch_max_size)

    async def revoke(self, jti: str, actor: str, ctx: RequestContext) -> None:
        """Returns once the revocation is committed (a no-op if the credential was already revoked or expired)."""
        await self._batcher.submit(_Revocation(jti, actor, ctx))

    async def _round(self, requests: Sequence[_Revocation]) -> list[BaseException | None]:
        first: dict[str, _Revocation] = {}
        for request in requests:
            first.setdefault(request.jti, request)
        now = self.core.clock()

        def events(revoked: Sequence[Revoked], families: Sequence[RevokedFamily]) -> list[dict[str, Any]]:
            # Inside the write transaction: one event per credential this round did revoke, in its revoker's name;
            # the refresh family revoked with an access token is named in its event (or has an event of its own
            # when that access token was already dead).
            families_named = set()
            rows = []
            for credential in revoked:
                request = first[credential.jti]
                details: dict[str, Any] = {"cause": "revoked by request"}
                if credential.refresh_family_id is not None:
                    details["refresh_family_id"] = credential.refresh_family_id
                    families_named.add(credential.refresh_family_id)
                rows.append(
                    audit.event(
                        request.ctx, now, action=f"{credential.kind}_credential.revoked",
                        tenant_id=credential.tenant_id, actor=request.actor, target_type="credential",
                        target_id=credential.jti, details=details,
                    )
                )  # fmt: skip
            for family in families:
                if family.family_id not in families_named:
                    request = first[family.via_jti]
                    rows.append(
                        audit.event(
                            request.ctx, now, action="refresh_token.revoked", tenant_id=family.tenant_id,
                            actor=request.actor, target_type="refresh_family", target_id=family.family_id,
                            details={"cause": "token pair revoked"},
                        )
                    )  # fmt: skip
            return rows

        await self.core.ports.revocation.revoke_round(list(first), now, events)
        return [None] * len(requests)
