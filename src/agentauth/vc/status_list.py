"""Bitstring Status List v1.0 (W3C Recommendation): the bitstring codec and index allocation.

Section 3.1: bit 0 is the most significant (left-most) bit of byte 0; the list is at least 131,072 bits
(16 KB) for group privacy; ``encodedList`` is the Multibase base64url (``u`` prefix, no padding) of the
GZIP-compressed bitstring. Section 3.2 advises allocating indexes at random, not sequentially.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import secrets
import zlib
from collections.abc import Iterable

from agentauth.keys import b64url_encode

MIN_LIST_SIZE = 131_072
# Decompression cap: a gzip bomb must not exhaust memory (16 MiB = 134M entries, far above any list of ours).
MAX_DECODED_BYTES = 16 * 1024 * 1024
# gzip level 6: level 9 costs ~8 ms on a sparse 16 KB list for a negligible size gain (DESIGN.md).
_GZIP_LEVEL = 6


class StatusListError(ValueError):
    """An encoded list is malformed, too short, or an index is out of range."""


class StatusList:
    """A mutable bitstring; ``True`` at an index means the status (e.g. revoked) is set."""

    __slots__ = ("_bits",)

    def __init__(self, size: int = MIN_LIST_SIZE, bits: bytes | None = None) -> None:
        if bits is not None:
            self._bits = bytearray(bits)
        else:
            if size < MIN_LIST_SIZE or size % 8:
                raise StatusListError(f"a status list holds at least {MIN_LIST_SIZE} bits, in whole bytes")
            self._bits = bytearray(size // 8)

    @property
    def size(self) -> int:
        return len(self._bits) * 8

    def _check(self, index: int) -> None:
        if not 0 <= index < self.size:
            raise StatusListError(f"index {index} outside the list (size {self.size})")

    def get(self, index: int) -> bool:
        bits = self._bits
        if not 0 <= index < len(bits) << 3:  # _check's test, inline: every verification asks
            self._check(index)
        return bool(bits[index >> 3] & (0x80 >> (index & 7)))

    def set(self, index: int, value: bool = True) -> None:
        self._check(index)
        mask = 0x80 >> (index & 7)
        if value:
            self._bits[index >> 3] |= mask
        else:
            self._bits[index >> 3] &= ~mask & 0xFF

    def set_indexes(self) -> list[int]:
        """Every index whose bit is set, ascending."""
        out: list[int] = []
        for byte_index, byte in enumerate(self._bits):
            if byte:
                out.extend(byte_index * 8 + bit for bit in range(8) if byte & (0x80 >> bit))
        return out

    def to_bytes(self) -> bytes:
        return bytes(self._bits)

    def encode(self) -> str:
        """``u`` + base64url(gzip(bits)), the ``encodedList`` value (section 3.1, Generate Algorithm)."""
        return "u" + b64url_encode(gzip.compress(bytes(self._bits), compresslevel=_GZIP_LEVEL, mtime=0))

    @classmethod
    def decode(cls, encoded: str, min_size: int = MIN_LIST_SIZE) -> StatusList:
        """Inverse of ``encode``; also accepts the value without the ``u`` multibase prefix and with padding
        (lists produced under the earlier Status List 2021 draft and by some libraries)."""
        if not isinstance(encoded, str) or not encoded:
            raise StatusListError("encodedList is empty")
        body = encoded[1:] if encoded[0] == "u" else encoded
        try:
            # validate=True: urlsafe_b64decode would silently drop characters outside the alphabet.
            compressed = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
            decompressor = zlib.decompressobj(wbits=31)  # 31 = gzip container
            bits = decompressor.decompress(compressed, MAX_DECODED_BYTES)
        except (binascii.Error, ValueError, zlib.error) as exc:
            raise StatusListError("encodedList is not base64url(gzip(bits))") from exc
        if decompressor.unconsumed_tail:
            raise StatusListError("encodedList decompresses beyond the size limit")
        # A stream cut short (e.g. without its trailer) decompresses without error but its CRC-32 and
        # length were never checked: only a complete gzip member is a valid list.
        if not decompressor.eof:
            raise StatusListError("encodedList is a truncated gzip stream")
        # Section 3.2 Validate Algorithm: a list shorter than the minimum MUST raise an error.
        if len(bits) * 8 < min_size:
            raise StatusListError(f"decoded list has {len(bits) * 8} bits, fewer than {min_size}")
        return cls(bits=bits)


def random_free_index(size: int, taken: Iterable[int] | set[int], attempts: int = 64) -> int:
    """A uniformly random index not in ``taken`` (section 3.2 privacy advice: random, not sequential).

    Falls back to a scan when the list is nearly full. Raises ``StatusListError`` when it is full.
    """
    taken_set = taken if isinstance(taken, set) else set(taken)
    for _ in range(attempts):
        candidate = secrets.randbelow(size)
        if candidate not in taken_set:
            return candidate
    free = [i for i in range(size) if i not in taken_set]
    if not free:
        raise StatusListError("status list is full")
    return secrets.choice(free)
