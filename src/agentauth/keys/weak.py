"""Ed25519 public keys that must be refused: non-canonical encodings and points of small order.

RFC 8032 section 5.1.3 decodes a point from 32 bytes: y is the low 255 bits, x_0 the top bit. "If the
y-coordinate is >= p, decoding fails", and "if x = 0, and x_0 = 1, decoding fails" -- without these rules one
key has several encodings (several did:keys). A point whose order divides the cofactor 8 (the identity, one
point of order 2, two of order 4, four of order 8) binds no one: [k]A is the identity whenever the order divides
k, so the forged signature R = identity, S = 0 passes the section 5.1.7 check for such messages -- for every
message under the identity key -- and OpenSSL's verifier accepts it. Chalkias, Garillot and Nikolaenko,
"Taming the many EdDSAs" (SSR 2020), table 1, list these encodings.

The rule is byte arithmetic only (a field square root costs ~100 us in pure Python, as much as a signature
verification), so every decode runs it. It does not check that the point is on the curve: OpenSSL refuses
every signature under an off-curve encoding, so no one can sign for one, forger included.
"""

from __future__ import annotations

from typing import Final

WEAK_KEY: Final = "weak_key"
"""Error code for every refusal below (did:key decode reason and JWK error code alike)."""

ED25519_P: Final = 2**255 - 19

# The canonical encodings of the 8 points of order 1, 2, 4 and 8 (y little-endian, sign of x in bit 255).
SMALL_ORDER_ENCODINGS: Final = frozenset(
    bytes.fromhex(encoding)
    for encoding in (
        "0100000000000000000000000000000000000000000000000000000000000000",  # identity (0, 1)
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2: (0, -1)
        "0000000000000000000000000000000000000000000000000000000000000000",  # order 4: (+sqrt(-1), 0)
        "0000000000000000000000000000000000000000000000000000000000000080",  # order 4: (-sqrt(-1), 0)
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    )
)

_Y_MASK: Final = (1 << 255) - 1


def weak_key_reason(raw: bytes) -> str | None:
    """Why ``raw`` must be refused as an Ed25519 public key (code ``weak_key``), or None when it may be used."""
    if len(raw) != 32:
        return f"an Ed25519 public key is 32 bytes, got {len(raw)}"
    y = int.from_bytes(raw, "little") & _Y_MASK
    if y >= ED25519_P:
        return "weak key: non-canonical encoding, y >= p (RFC 8032 section 5.1.3)"
    # x = 0 exactly when y^2 = 1; the sign bit set on it is the second encoding of the same point.
    if raw[31] & 0x80 and y in (1, ED25519_P - 1):
        return "weak key: non-canonical encoding, x = 0 with the sign bit set (RFC 8032 section 5.1.3)"
    if bytes(raw) in SMALL_ORDER_ENCODINGS:
        return "weak key: a point of small order, under which signatures can be forged"
    return None
