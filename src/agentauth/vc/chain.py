"""Delegation-chain rules (DESIGN.md "Verification (offline)"), enforced offline on verified links.

For links L0 (root) .. Ln, each already signature- and status-checked:
* L0 has no parent; Li names L(i-1) by credential id and by SHA-256 of its compact JWT;
* Li's delegator is L(i-1)'s delegate (the subject);
* scopes only narrow: scopes(Li) is a subset of scopes(L(i-1));
* depth only shrinks: remainingDepth(Li) <= remainingDepth(L(i-1)) - 1, never negative;
* expiries nest: exp(Li) <= exp(L(i-1)).
A token acting under the chain has ``sub`` = the root delegator, ``act`` naming the delegates (RFC 8693
section 4.1, the current actor outermost), scopes within the last link's, and an expiry within it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from agentauth.vc import errors as e
from agentauth.vc.credentials import jwt_digest
from agentauth.vc.errors import VerificationError

MAX_CHAIN_LENGTH = 11  # a root grant with max_chain_depth 10 plus ten hops


@dataclass(frozen=True, slots=True)
class DelegationLink:
    """One verified delegation credential, reduced to what the chain rules need."""

    jwt: str
    id: str
    delegator: str
    delegate: str
    scopes: frozenset[str]
    remaining_depth: int
    exp: float
    parent_id: str | None
    parent_digest: str | None

    @classmethod
    def from_claims(cls, compact: str, claims: Mapping[str, Any]) -> DelegationLink:
        # This runs for every link of every delegated token verified: members are read by indexing and types
        # tested with type() first, as in verifier.py (no builtin call); the isinstance tests decide the rest.
        subject = claims["vc"]["credentialSubject"]
        try:
            scopes, depth, delegator = subject["scopes"], subject["remainingDepth"], subject["delegator"]
        except KeyError:
            scopes, depth, delegator = subject.get("scopes"), subject.get("remainingDepth"), subject.get("delegator")
        if (type(scopes) is not list and not isinstance(scopes, list)) or not all(map(isinstance, scopes, repeat(str))):
            raise VerificationError(e.MALFORMED, "delegation scopes must be a list of strings")
        if (type(depth) is not int and (isinstance(depth, bool) or not isinstance(depth, int))) or depth < 0:
            raise VerificationError(e.MALFORMED, "remainingDepth must be a non-negative integer")
        if type(delegator) is not str and not isinstance(delegator, str):
            raise VerificationError(e.MISSING_CLAIM, "delegation without a delegator")
        try:
            parent = subject["parent"]
        except KeyError:
            parent = None
        parent_id = parent_digest = None
        if parent is not None:
            if type(parent) is dict or isinstance(parent, dict):
                try:
                    parent_id, parent_digest = parent["id"], parent["digest"]
                except KeyError:
                    parent_id, parent_digest = parent.get("id"), parent.get("digest")
            if (type(parent_id) is not str and not isinstance(parent_id, str)) or (
                type(parent_digest) is not str and not isinstance(parent_digest, str)
            ):
                raise VerificationError(e.MALFORMED, "parent must carry id and digest")
        # Positional, in field order.
        return cls(
            compact,
            str(claims["jti"]),
            delegator,
            str(claims["sub"]),
            frozenset(scopes),
            depth,
            float(claims["exp"]),
            parent_id,
            parent_digest,
        )


def check_chain(links: Sequence[DelegationLink]) -> None:
    """Raise ``VerificationError`` with a ``chain_*`` code at the first rule a chain breaks."""
    count = len(links)
    if not count:
        raise VerificationError(e.CHAIN_BROKEN, "empty delegation chain")
    if count > MAX_CHAIN_LENGTH:
        raise VerificationError(e.CHAIN_DEPTH_EXCEEDED, f"chain of {count} links exceeds {MAX_CHAIN_LENGTH}")
    root = links[0]
    if root.parent_id is not None:
        raise VerificationError(e.CHAIN_BROKEN, "the first link must be a root grant (no parent)")
    if root.delegator == root.delegate:
        raise VerificationError(e.CHAIN_BROKEN, "self-delegation")
    delegates = [link.delegate for link in links]  # cycles: a delegate seen before, or the root delegator
    for i in range(1, count):
        parent, link = links[i - 1], links[i]
        where = f"link {i}"
        if link.parent_id != parent.id:
            raise VerificationError(e.CHAIN_BROKEN, f"{where} names parent {link.parent_id!r}, not {parent.id!r}")
        if link.parent_digest != jwt_digest(parent.jwt):
            raise VerificationError(e.CHAIN_DIGEST_MISMATCH, f"{where}: parent digest does not match")
        if link.delegator != parent.delegate:
            raise VerificationError(e.CHAIN_DELEGATOR_MISMATCH, f"{where}: delegator is not the parent's delegate")
        if not link.scopes <= parent.scopes:
            widened = sorted(link.scopes - parent.scopes)
            raise VerificationError(e.CHAIN_SCOPE_WIDENED, f"{where} adds scopes {widened}")
        if link.remaining_depth > parent.remaining_depth - 1:
            raise VerificationError(
                e.CHAIN_DEPTH_EXCEEDED,
                f"{where}: parent allows {parent.remaining_depth} more hops, link claims {link.remaining_depth}",
            )
        if link.exp > parent.exp:
            raise VerificationError(e.CHAIN_EXPIRY_EXCEEDS_PARENT, f"{where} outlives its parent")
        if link.delegate == root.delegator or link.delegate in delegates[:i]:
            raise VerificationError(e.CHAIN_BROKEN, f"{where}: cycle, {link.delegate} already in the chain")


def _acts_for(act: Any, links: Sequence[DelegationLink]) -> bool:
    """Whether ``act`` names exactly the chain's delegates, current actor (the last link's) outermost; ``_actors``,
    walked in step with the links instead of building a list. False is not an error by itself: the caller then
    lets ``_actors`` tell a malformed ``act`` from one naming someone else."""
    for link in reversed(links):
        if type(act) is not dict or "sub" not in act or act["sub"] != link.delegate:
            return False
        act = act["act"] if "act" in act else None  # noqa: SIM401 - act.get, without the call
    return act is None


def _actors(act: Any) -> list[str]:
    """The ``act`` claim's subjects, current actor first (RFC 8693 section 4.1 nesting)."""
    out = []
    while act is not None:
        if not isinstance(act, dict) or not isinstance(act.get("sub"), str):
            raise VerificationError(e.MALFORMED, "act must be an object with sub")
        out.append(act["sub"])
        act = act.get("act")
    return out


def check_token_against_chain(claims: Mapping[str, Any], links: Sequence[DelegationLink]) -> None:
    """A delegated access token must match the chain it carries."""
    root, last = links[0], links[-1]
    try:
        sub, act, scope = claims["sub"], claims["act"], claims["scope"]
    except KeyError:
        sub, act, scope = claims.get("sub"), claims.get("act"), claims.get("scope", "")
    if sub != root.delegator:
        raise VerificationError(e.CHAIN_DELEGATOR_MISMATCH, "token sub is not the chain's root delegator")
    if not _acts_for(act, links) and _actors(act) != [link.delegate for link in reversed(links)]:
        raise VerificationError(e.CHAIN_BROKEN, "act claim does not name the chain's delegates")
    scopes = frozenset(str(scope).split())
    if not scopes <= last.scopes:
        raise VerificationError(e.CHAIN_SCOPE_WIDENED, f"token scopes {sorted(scopes - last.scopes)} not delegated")
    if float(claims["exp"]) > last.exp:
        raise VerificationError(e.CHAIN_EXPIRY_EXCEEDS_PARENT, "token outlives its delegation")
