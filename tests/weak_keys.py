"""Weak Ed25519 public keys for the tests (issue 12 item 2), derived here from the curve itself, and the forger.

The 8 points of order dividing 8 are found by arithmetic on edwards25519 (RFC 8032 section 5.1), not copied
from ``agentauth.keys.weak``, so the tests check the product's list instead of repeating it. Each point's
encodings: the canonical one, the one with the sign bit flipped when x = 0 ("if x = 0, and x_0 = 1, decoding
fails", section 5.1.3) and the one with y + p when that still fits in 255 bits ("If the y-coordinate is >= p,
decoding fails") - the rows of table 1 of "Taming the many EdDSAs" (Chalkias et al., 2020).

``forge`` makes the signature R = identity, S = 0, which verifies under a small-order key A whenever [k]A is
the identity, k = SHA-512(R || A || M) mod L: always for the identity key, and after a few tries of a fresh
nonce in the message for the others.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from agentauth.keys import b64url_encode
from agentauth.vc.presentation import holder_kid

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1)

Point = tuple[int, int]


def _add(a: Point, b: Point) -> Point:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P, (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P


def _times(k: int, a: Point) -> Point:
    result = IDENTITY
    while k:
        if k & 1:
            result = _add(result, a)
        a, k = _add(a, a), k >> 1
    return result


def _x_of(y: int) -> int | None:
    """The even x with (x, y) on the curve (RFC 8032 section 5.1.3 steps 2-3), or None."""
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, P - 2, P) % P
    root = pow(x, (P + 3) // 8, P)
    if (root * root - x) % P:
        root = root * SQRT_M1 % P
    if (root * root - x) % P:
        return None
    return P - root if root & 1 else root


def _encode(x: int, y: int) -> bytes:
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _small_order_points() -> list[Point]:
    """The torsion subgroup: [L]Q of a curve point Q lies in it; it is cyclic of order 8, so one generator T of
    order 8 gives all eight points as [i]T."""
    for y in range(2, 1000):
        x = _x_of(y)
        if x is None:
            continue
        torsion = _times(L, (x, y))
        if _times(4, torsion) != IDENTITY:  # order 8
            return [_times(i, torsion) for i in range(8)]
    raise AssertionError("no point of order 8 found")


SMALL_ORDER_POINTS = _small_order_points()
assert len(set(SMALL_ORDER_POINTS)) == 8 and all(_times(8, p) == IDENTITY for p in SMALL_ORDER_POINTS)


def point_order(point: Point) -> int:
    return next(n for n in (1, 2, 4, 8) if _times(n, point) == IDENTITY)


def _encodings(x: int, y: int) -> list[tuple[str, bytes]]:
    """(label, encoding) of every 32-byte string that names the point (x, y): canonical, then the others."""
    found = [("canonical", _encode(x, y))]
    if x == 0:
        found.append(("x0-sign-set", _encode(1, y)))
    if y + P < 2**255:  # y + p with the point's sign, and for x = 0 with the sign set too
        found += [
            (f"y+p-sign{sign}", ((y + P) | sign << 255).to_bytes(32, "little"))
            for sign in sorted({x & 1} | ({1} if x == 0 else set()))
        ]
    order = point_order((x, y))
    return [(f"order{order}-{kind}-{raw[:2].hex()}..{raw[31:].hex()}", raw) for kind, raw in found]


WEAK_ENCODINGS: list[tuple[str, bytes]] = sorted(enc for x, y in SMALL_ORDER_POINTS for enc in _encodings(x, y))
CANONICAL_SMALL_ORDER = [raw for label, raw in WEAK_ENCODINGS if "-canonical-" in label]
NON_CANONICAL_SMALL_ORDER = [raw for label, raw in WEAK_ENCODINGS if "-canonical-" not in label]
assert len(CANONICAL_SMALL_ORDER) == 8 and len(NON_CANONICAL_SMALL_ORDER) == 6

# Every y >= p encoding (19 values of y, either sign), whatever point it names: not canonical, so refused.
NON_CANONICAL_ANY = [((P + i) | s << 255).to_bytes(32, "little") for i in range(19) for s in (0, 1)]

IDENTITY_KEY = _encode(*IDENTITY)
WEAK_IDS = [label for label, _ in WEAK_ENCODINGS]


def did_of(raw: bytes) -> str:
    """The did:key of any 32 bytes (the codec is plain base58: no key check)."""
    import base58

    return "did:key:z" + base58.b58encode(b"\xed\x01" + raw).decode("ascii")


def jwk_of(raw: bytes) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}


FORGED_SIGNATURE = IDENTITY_KEY + bytes(32)  # R = identity, S = 0


def forged_signature_verifies(public: bytes, message: bytes) -> bool:
    """Whether R = identity, S = 0 passes RFC 8032 section 5.1.7 under ``public`` for ``message``: [k]A = identity."""
    k = int.from_bytes(hashlib.sha512(IDENTITY_KEY + public + message).digest(), "little") % L
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    point = next(p for p in SMALL_ORDER_POINTS if p[1] == y % P and (p[0] & 1) == (public[31] >> 7 if p[0] else 0))
    return k % point_order(point) == 0


def forge(public: bytes, make_input: Callable[[int], str]) -> str:
    """A compact JWS "signed" by the small-order key ``public``: ``make_input(attempt)`` gives the signing input
    (header.payload) for a nonce; tries nonces until the forged signature verifies, and appends it."""
    for attempt in range(1000):
        signing_input = make_input(attempt)
        if forged_signature_verifies(public, signing_input.encode()):
            return f"{signing_input}.{b64url_encode(FORGED_SIGNATURE)}"
    raise AssertionError("no forgery found in 1000 tries")


def _segment(value: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode())


def forged_assertion(raw: bytes, audience: str, now: datetime) -> str:
    """An RFC 7523 jwt-bearer assertion "signed" by the weak key ``raw`` (iss = sub = its did:key)."""
    did, iat = did_of(raw), int(now.timestamp())
    header = _segment({"alg": "EdDSA", "typ": "JWT", "kid": holder_kid(did)})

    def payload(n: int) -> str:
        return _segment(
            {"iss": did, "sub": did, "aud": audience, "jti": f"urn:forged:{n}", "iat": iat, "exp": iat + 60}
        )

    return forge(raw, lambda n: f"{header}.{payload(n)}")


def forged_presentation(raw: bytes, audience: str, nonce: str, now: datetime) -> str:
    """A VP JWT "signed" by the weak holder key ``raw`` for ``audience`` and ``nonce``."""
    did, iat = did_of(raw), int(now.timestamp())
    header = _segment({"alg": "EdDSA", "typ": "JWT", "kid": holder_kid(did)})

    def payload(n: int) -> str:
        vp = {"@context": ["https://www.w3.org/2018/credentials/v1"], "type": ["VerifiablePresentation"]}
        claims = {
            "iss": did,
            "aud": audience,
            "nonce": nonce,
            "jti": f"urn:forged:{n}",
            "iat": iat,
            "exp": iat + 60,
        }
        return _segment(claims | {"vp": vp | {"holder": did, "verifiableCredential": []}})

    return forge(raw, lambda n: f"{header}.{payload(n)}")
