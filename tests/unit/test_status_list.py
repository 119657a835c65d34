"""Bitstring Status List v1.0 codec (section 3.1) and random index allocation (section 3.2)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentauth.keys import b64url_encode
from agentauth.vc import MIN_LIST_SIZE, StatusList, StatusListError, random_free_index
from agentauth.vc.status_list import MAX_DECODED_BYTES

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "bitstring_status_list_v1.json").read_text())
SPEC_LIST = VECTORS["credential"]["credentialSubject"]["encodedList"]
MIN_BYTES = MIN_LIST_SIZE // 8


def encoded(raw: bytes, prefix: str = "u") -> str:
    """``encodedList`` of raw bitstring bytes, built without the code under test."""
    return prefix + b64url_encode(gzip.compress(raw))


# -- the specification's example ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [SPEC_LIST, SPEC_LIST[1:]], ids=["multibase", "bare-base64url"])
def test_spec_example_decodes_to_an_all_zero_minimum_list(value: str) -> None:
    bits = StatusList.decode(value)

    assert bits.size == VECTORS["expected"]["size_bits"] == MIN_LIST_SIZE
    assert bits.to_bytes() == bytes(VECTORS["expected"]["size_bytes"])
    assert bits.set_indexes() == VECTORS["expected"]["set_indexes"]


def test_a_fresh_list_has_the_minimum_size_and_no_bit_set() -> None:
    bits = StatusList()

    assert bits.size == MIN_LIST_SIZE
    assert StatusList.decode(bits.encode()).to_bytes() == bytes(MIN_BYTES)


def test_encoded_list_is_multibase_base64url_without_padding() -> None:
    value = StatusList().encode()

    assert value[0] == "u"
    assert "=" not in value
    assert set(value[1:]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# -- round trip -----------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.sets(st.integers(0, MIN_LIST_SIZE - 1), max_size=64))
def test_round_trip_keeps_exactly_the_set_bits(indexes: set[int]) -> None:
    bits = StatusList()
    for index in indexes:
        bits.set(index)

    decoded = StatusList.decode(bits.encode())

    assert decoded.set_indexes() == sorted(indexes)
    assert all(decoded.get(i) for i in indexes)
    assert decoded.to_bytes() == bits.to_bytes()


def test_clearing_a_bit_survives_the_round_trip() -> None:
    bits = StatusList()
    bits.set(42)
    bits.set(43)
    bits.set(42, False)

    decoded = StatusList.decode(bits.encode())

    assert decoded.get(42) is False
    assert decoded.get(43) is True


# -- bit order: index 0 is the most significant bit of byte 0 -------------------------------------------


@pytest.mark.parametrize(
    ("index", "byte_index", "byte"),
    [(0, 0, 0x80), (1, 0, 0x40), (7, 0, 0x01), (8, 1, 0x80), (15, 1, 0x01), (MIN_LIST_SIZE - 1, MIN_BYTES - 1, 0x01)],
)
def test_bit_order_is_msb_first(index: int, byte_index: int, byte: int) -> None:
    bits = StatusList()
    bits.set(index)

    raw = bits.to_bytes()

    assert raw[byte_index] == byte
    assert raw.count(0) == MIN_BYTES - 1


def test_to_bytes_matches_hand_computed_bytes() -> None:
    bits = StatusList()
    for index in (0, 9, 131_071):
        bits.set(index)

    # 0 -> byte 0 bit 7 (0x80); 9 -> byte 1 bit 6 (0x40); 131071 -> byte 16383 bit 0 (0x01).
    expected = b"\x80\x40" + bytes(MIN_BYTES - 3) + b"\x01"

    assert bits.to_bytes() == expected
    assert StatusList.decode(encoded(expected)).set_indexes() == [0, 9, 131_071]


def test_decodes_a_hand_built_list_msb_first() -> None:
    bits = StatusList.decode(encoded(b"\x80" + bytes(MIN_BYTES - 1)))

    assert bits.get(0) is True
    assert bits.get(7) is False
    assert bits.get(8) is False
    assert bits.set_indexes() == [0]


def test_accepts_a_list_longer_than_the_minimum() -> None:
    bits = StatusList.decode(encoded(bytes(2 * MIN_BYTES - 1) + b"\x01"))

    assert bits.size == 2 * MIN_LIST_SIZE
    assert bits.set_indexes() == [2 * MIN_LIST_SIZE - 1]


# -- errors ---------------------------------------------------------------------------------------------


def test_rejects_a_decoded_list_shorter_than_the_minimum() -> None:
    with pytest.raises(StatusListError, match="fewer than 131072"):
        StatusList.decode(encoded(bytes(MIN_BYTES - 1)))


@pytest.mark.parametrize("size", [8, MIN_LIST_SIZE - 8, MIN_LIST_SIZE + 1])
def test_rejects_creating_a_list_below_the_minimum_or_in_partial_bytes(size: int) -> None:
    with pytest.raises(StatusListError):
        StatusList(size)


@pytest.mark.parametrize("index", [-1, MIN_LIST_SIZE, MIN_LIST_SIZE + 8, 2**40])
def test_rejects_an_out_of_range_index(index: int) -> None:
    bits = StatusList()

    with pytest.raises(StatusListError, match="outside the list"):
        bits.get(index)
    with pytest.raises(StatusListError, match="outside the list"):
        bits.set(index)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "u!!!!",
        "u" + "@" * 40,
        # Valid base64url with characters outside the alphabet spliced in: must not be silently skipped.
        SPEC_LIST[:12] + "!*" + SPEC_LIST[12:],
        SPEC_LIST[:12] + " " + SPEC_LIST[12:],
    ],
)
def test_rejects_garbage_base64(value: str) -> None:
    with pytest.raises(StatusListError, match=r"empty|not base64url"):
        StatusList.decode(value)


@pytest.mark.parametrize(
    "raw",
    [b"not gzip at all", b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 16, bytes(MIN_BYTES)],
    ids=["text", "gzip-magic-then-garbage", "uncompressed-zeros"],
)
def test_rejects_data_that_is_not_gzip(raw: bytes) -> None:
    with pytest.raises(StatusListError, match="gzip"):
        StatusList.decode("u" + b64url_encode(raw))


@pytest.mark.parametrize("cut", [4, 8], ids=["without-length", "without-crc-and-length"])
def test_rejects_a_truncated_gzip_stream(cut: int) -> None:
    complete = gzip.compress(bytes(MIN_BYTES))

    with pytest.raises(StatusListError, match="truncated"):
        StatusList.decode("u" + b64url_encode(complete[:-cut]))


def test_rejects_a_gzip_bomb_beyond_the_decode_cap() -> None:
    bomb = gzip.compress(bytes(MAX_DECODED_BYTES + 1024 * 1024))
    assert len(bomb) < 64 * 1024  # tiny on the wire, 17 MiB inflated

    with pytest.raises(StatusListError, match="beyond the size limit"):
        StatusList.decode("u" + b64url_encode(bomb))


# -- random index allocation ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 64),
    data=st.data(),
)
def test_random_free_index_never_returns_a_taken_index(size: int, data: st.DataObject) -> None:
    taken = data.draw(st.sets(st.integers(0, size - 1), max_size=size - 1))

    index = random_free_index(size, taken)

    assert 0 <= index < size
    assert index not in taken


def test_random_free_index_finds_the_last_free_index_by_scanning() -> None:
    taken = set(range(1024)) - {777}

    assert random_free_index(1024, taken) == 777
    assert random_free_index(1024, list(taken)) == 777  # any iterable of taken indexes


def test_random_free_index_raises_when_the_list_is_full() -> None:
    with pytest.raises(StatusListError, match="full"):
        random_free_index(size=16, taken=set(range(16)))


def test_random_free_index_spreads_allocations() -> None:
    # Section 3.2 advises random, not sequential, allocation: 50 draws on a full-size list are not 0..49.
    taken: set[int] = set()
    for _ in range(50):
        taken.add(random_free_index(MIN_LIST_SIZE, taken))

    assert len(taken) == 50
    assert taken != set(range(50))
