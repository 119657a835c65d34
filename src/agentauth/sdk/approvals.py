"""A resource server's check of an owner's approval (CIBA + RFC 9396): ``require_authorization_details``.

It passes when the verified token's ``authorization_details`` cover the action asked of the server
(``agentauth.vc.authorization_details.permits``: same type, every field approved, ``amount`` at most the approved
one). A token whose approval was asked as single-use carries ``single_use: true``; for it the check also spends
the token's ``jti`` in ``spent`` - the same ``consume(key, *, until, now) -> bool`` store DPoP proofs use
(``DPoPSettings.replay``: in-process by default, a shared atomic one such as Redis ``SET NX PXAT`` across
replicas) - so a second use is refused. Without a store such a token is refused outright: a server that cannot
remember a use cannot honour "once".
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from agentauth.sdk.dpop import LockedReplay
from agentauth.vc.authorization_details import LIMITS, AuthorizationDetailsError
from agentauth.vc.authorization_details import require as _require
from agentauth.vc.dpop import ReplayCache
from agentauth.vc.nonces import NonceRegistry

__all__ = ["SpentTokens", "require_authorization_details"]


def SpentTokens() -> ReplayCache:
    """An in-process store of spent single-use tokens, safe across threads (one per process; replicas share a
    store of their own)."""
    return LockedReplay(NonceRegistry())


def require_authorization_details(
    claims: Mapping[str, Any],
    requested: Mapping[str, Any],
    *,
    at_most: Iterable[str] = LIMITS,
    spent: ReplayCache | None = None,
    now: float | None = None,
) -> None:
    """Raise ``AuthorizationDetailsError`` unless the verified token ``claims`` approve ``requested`` - and, for a
    single-use token, unless this is its first use (``spent``)."""
    _require(claims, requested, at_most=at_most)
    if claims.get("single_use") is not True:
        return
    if spent is None:
        raise AuthorizationDetailsError(
            "the token is single-use: pass spent= (SpentTokens(), or a store shared by every replica) to accept it"
        )
    at = time.time() if now is None else now
    exp = claims.get("exp")
    until = float(exp) if isinstance(exp, int | float) else at
    if not spent.consume(f"single-use:{claims.get('jti')}", until=until, now=at):
        raise AuthorizationDetailsError("the token is single-use and was used before")
