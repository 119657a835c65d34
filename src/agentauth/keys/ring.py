"""The issuer's signing-key ring and its rotation (DESIGN.md "Signing keys").

Lifecycle: ``next`` (published, not yet signing) -> ``active`` (signing) -> ``retired`` (published until every
token it signed has expired) -> removed. A rotation promotes the *already published* next key, so a verifier
that cached the JWKS before the rotation already holds the key of every token signed after it; the old active
key stays published for ``retain_for`` (the longest lifetime of anything it signed).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from agentauth.keys.ed25519 import KeyPair
from agentauth.keys.sealing import KeyEncryptionKey

JWS_ALGORITHM = "EdDSA"


class KeyState(enum.StrEnum):
    NEXT = "next"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One issuer key. ``kid`` is the DID URL ``<issuer-did>#<RFC 7638 thumbprint>``."""

    kid: str
    state: KeyState
    pair: KeyPair
    created_at: datetime
    activated_at: datetime | None = None
    retired_at: datetime | None = None
    remove_after: datetime | None = None

    @classmethod
    def create(cls, issuer_did: str, state: KeyState, now: datetime) -> SigningKey:
        pair = KeyPair.generate()
        activated = now if state is KeyState.ACTIVE else None
        return cls(f"{issuer_did}#{pair.public.thumbprint()}", state, pair, now, activated)

    def public_jwk(self) -> dict[str, str]:
        """The JWKS entry: public members only, with ``kid``, ``alg`` and ``use``."""
        return self.pair.public.jwk() | {"kid": self.kid, "alg": JWS_ALGORITHM, "use": "sig"}

    def to_record(self, kek: KeyEncryptionKey) -> dict[str, Any]:
        """A storable form; the private seed is sealed with the KEK and bound to the ``kid``."""
        return {
            "kid": self.kid,
            "state": self.state.value,
            "public_jwk": self.pair.public.jwk(),
            "sealed_private_key": kek.seal(self.pair.seed(), self.kid.encode()),
            "created_at": self.created_at.isoformat(),
            "activated_at": _iso(self.activated_at),
            "retired_at": _iso(self.retired_at),
            "remove_after": _iso(self.remove_after),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], kek: KeyEncryptionKey) -> SigningKey:
        pair = KeyPair.from_seed(kek.open(record["sealed_private_key"], record["kid"].encode()))
        if pair.public.jwk() != record["public_jwk"]:
            raise ValueError(f"stored key {record['kid']} does not match its public JWK")
        return cls(
            kid=record["kid"],
            state=KeyState(record["state"]),
            pair=pair,
            created_at=datetime.fromisoformat(record["created_at"]),
            activated_at=_parse(record.get("activated_at")),
            retired_at=_parse(record.get("retired_at")),
            remove_after=_parse(record.get("remove_after")),
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class KeyRing:
    """An immutable set of issuer keys: exactly one active, at most one next, any number retired."""

    __slots__ = ("_active", "_by_kid", "issuer_did", "keys")

    def __init__(self, issuer_did: str, keys: Iterable[SigningKey]) -> None:
        self.issuer_did = issuer_did
        self.keys = tuple(keys)
        actives = [k for k in self.keys if k.state is KeyState.ACTIVE]
        if len(actives) != 1:
            raise ValueError(f"a key ring needs exactly one active key, found {len(actives)}")
        if sum(k.state is KeyState.NEXT for k in self.keys) > 1:
            raise ValueError("a key ring holds at most one next key")
        self._by_kid = {k.kid: k for k in self.keys}
        self._active = actives[0]  # asked for on every credential signed

    @classmethod
    def create(cls, issuer_did: str, now: datetime) -> KeyRing:
        """A first ring: an active key and an already published next key."""
        return cls(
            issuer_did,
            [SigningKey.create(issuer_did, KeyState.ACTIVE, now), SigningKey.create(issuer_did, KeyState.NEXT, now)],
        )

    @property
    def active(self) -> SigningKey:
        return self._active

    @property
    def next(self) -> SigningKey | None:
        return next((k for k in self.keys if k.state is KeyState.NEXT), None)

    def get(self, kid: str) -> SigningKey | None:
        return self._by_kid.get(kid)

    def rotate(self, now: datetime, retain_for: timedelta) -> KeyRing:
        """Promote next -> active, active -> retired (kept ``retain_for``), publish a fresh next, drop expired.

        If there is no next key (never the case for rings made here), one is created and promoted at once;
        callers that need the zero-downtime guarantee keep a next key published for a cache period first.
        """
        promoted = self.next or SigningKey.create(self.issuer_did, KeyState.NEXT, now)
        keys: list[SigningKey] = []
        for key in self.keys:
            if key.state is KeyState.ACTIVE:
                keys.append(replace(key, state=KeyState.RETIRED, retired_at=now, remove_after=now + retain_for))
            elif key.state is KeyState.RETIRED and key.remove_after is not None and key.remove_after <= now:
                continue
            elif key.kid != promoted.kid:
                keys.append(key)
        keys.append(replace(promoted, state=KeyState.ACTIVE, activated_at=now))
        keys.append(SigningKey.create(self.issuer_did, KeyState.NEXT, now))
        return KeyRing(self.issuer_did, keys)

    def drop(self, kid: str, now: datetime) -> KeyRing:
        """Remove a (compromised) key at once. If it was active, the published next key takes over now;
        a fresh next key is published so the ring keeps its shape."""
        key = self.get(kid)
        if key is None:
            raise KeyError(kid)
        ring = self.rotate(now, timedelta(0)) if key.state is KeyState.ACTIVE else self
        keys = [k for k in ring.keys if k.kid != kid]
        if not any(k.state is KeyState.NEXT for k in keys):
            keys.append(SigningKey.create(self.issuer_did, KeyState.NEXT, now))
        return KeyRing(self.issuer_did, keys)

    def prune(self, now: datetime) -> KeyRing:
        """Drop retired keys whose every token has expired."""
        kept = [k for k in self.keys if not (k.remove_after is not None and k.remove_after <= now)]
        return self if len(kept) == len(self.keys) else KeyRing(self.issuer_did, kept)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """RFC 7517 JWK Set of every published key (next, active, retired): public parts only."""
        order = {KeyState.ACTIVE: 0, KeyState.NEXT: 1, KeyState.RETIRED: 2}
        return {"keys": [k.public_jwk() for k in sorted(self.keys, key=lambda k: order[k.state])]}
