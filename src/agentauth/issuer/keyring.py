"""The issuer's key ring, persisted sealed in the database: created on first start, rotated on schedule or command.

Every process holds the ring in memory for signing and serves its JWKS; ``reload`` picks up a rotation made by
another replica or by ``agentauth keys rotate``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentauth.issuer import audit
from agentauth.issuer.context import RequestContext
from agentauth.keys import KeyEncryptionKey, KeyRing, SigningKey
from agentauth.storage import signing_keys

log = logging.getLogger("agentauth.keys")


class IssuerKeys:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        kek: KeyEncryptionKey,
        issuer_did: str,
        reads: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self._sessions = sessions
        self._reads = reads or sessions
        self._kek = kek
        self.issuer_did = issuer_did
        self._ring: KeyRing | None = None

    @property
    def ring(self) -> KeyRing:
        if self._ring is None:
            raise RuntimeError("key ring not loaded; call load_or_create() first")
        return self._ring

    def _decode(self, records: list[dict[str, object]]) -> KeyRing:
        keys = [SigningKey.from_record(dict(r), self._kek) for r in records]
        foreign = [k.kid for k in keys if not k.kid.startswith(self.issuer_did + "#")]
        if foreign:
            raise RuntimeError(
                f"stored keys belong to another issuer DID ({foreign[0]}); AGENTAUTH_ISSUER_URL changed? "
                "Rotate keys after changing the issuer URL."
            )
        return KeyRing(self.issuer_did, keys)

    async def load_or_create(self, now: datetime) -> KeyRing:
        async with self._sessions.begin() as session:
            await signing_keys.lock_key_ring(session)
            records = await signing_keys.load_records(session)
            if records:
                self._ring = self._decode(list(records))
            else:
                self._ring = KeyRing.create(self.issuer_did, now)
                await signing_keys.replace_records(session, [k.to_record(self._kek) for k in self._ring.keys])
                log.info("created issuer key ring, active kid %s", self._ring.active.kid)
        return self._ring

    async def reload(self) -> KeyRing:
        async with self._reads() as session:
            records = await signing_keys.load_records(session)
        self._ring = self._decode(list(records))
        return self._ring

    async def rotate(
        self, now: datetime, retain_for: timedelta, *, due_before: datetime | None = None, actor: str = "operator"
    ) -> KeyRing:
        """One atomic rotation step (see ``KeyRing.rotate``), persisted before it takes effect, and audited in the
        same transaction (``signing_key.rotated``, issuer-wide: every tenant's ``key.*`` webhooks get it).

        With ``due_before``, rotate only if the active key was activated before it - checked under the lock, so
        replicas that find rotation due at the same moment rotate once, not once each.
        """
        async with self._sessions.begin() as session:
            await signing_keys.lock_key_ring(session)
            current = self._decode(list(await signing_keys.load_records(session)))
            activated = current.active.activated_at or current.active.created_at
            if due_before is not None and activated >= due_before:
                self._ring = current
                return current
            rotated = current.rotate(now, retain_for)
            await signing_keys.replace_records(session, [k.to_record(self._kek) for k in rotated.keys])
            audit.record(
                session, RequestContext(), now, action="signing_key.rotated", tenant_id=None, actor=actor,
                target_type="signing_key", target_id=rotated.active.kid,
                details={"active_kid": rotated.active.kid, "previous_kid": current.active.kid},
            )  # fmt: skip
        self._ring = rotated
        log.info("rotated issuer keys, active kid now %s", rotated.active.kid)
        return rotated

    async def drop(self, kid: str, now: datetime) -> KeyRing:
        """Remove a compromised key from the ring (and so from the JWKS and DID document) at once."""
        async with self._sessions.begin() as session:
            await signing_keys.lock_key_ring(session)
            current = self._decode(list(await signing_keys.load_records(session)))
            dropped = current.drop(kid, now)
            await signing_keys.replace_records(session, [k.to_record(self._kek) for k in dropped.keys])
        self._ring = dropped
        log.warning("dropped issuer key %s; active kid now %s", kid, dropped.active.kid)
        return dropped

    async def rotate_if_due(self, now: datetime, every: timedelta, retain_for: timedelta) -> bool:
        activated = self.ring.active.activated_at or self.ring.active.created_at
        if now - activated < every:
            return False
        before = self.ring.active.kid
        return (await self.rotate(now, retain_for, due_before=now - every, actor="schedule")).active.kid != before
