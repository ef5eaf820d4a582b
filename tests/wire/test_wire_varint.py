"""Varints and zigzag: the integer encodings inside the envelope."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import DecodeError
from ganglion.wire._varint import (
    encode_varint,
    read_varint,
    unzigzag,
    varint_size,
    zigzag,
)

u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),  # the protobuf documentation's example
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (2**64 - 1, b"\xff" * 9 + b"\x01"),
    ],
)
def test_known_varints(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert varint_size(value) == len(encoded)
    assert read_varint(encoded, 0, len(encoded)) == (value, len(encoded))


@pytest.mark.parametrize(
    ("signed", "unsigned"), [(0, 0), (-1, 1), (1, 2), (-2, 3), (2**63 - 1, 2**64 - 2),
                             (-(2**63), 2**64 - 1)],
)
def test_known_zigzags(signed: int, unsigned: int) -> None:
    assert zigzag(signed) == unsigned
    assert unzigzag(unsigned) == signed


@settings(max_examples=300, deadline=None)
@given(u64, st.binary(max_size=4), st.binary(max_size=4))
def test_varint_round_trips_in_context(value: int, before: bytes, after: bytes) -> None:
    data = before + encode_varint(value) + after
    got, pos = read_varint(data, len(before), len(data))
    assert got == value
    assert pos == len(data) - len(after)
    assert varint_size(value) == pos - len(before)


@settings(max_examples=300, deadline=None)
@given(i64)
def test_zigzag_round_trips_and_stays_in_u64(value: int) -> None:
    z = zigzag(value)
    assert 0 <= z < 2**64
    assert unzigzag(z) == value
    assert varint_size(z) <= 10


def test_small_magnitudes_of_either_sign_take_one_byte() -> None:
    assert all(varint_size(zigzag(d)) == 1 for d in range(-64, 64))
    assert varint_size(zigzag(64)) == 2 and varint_size(zigzag(-65)) == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x80", "truncated"),
        (b"\xff\xff", "truncated"),
        (b"\x80" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\xff" * 9 + b"\x02", "64 bits"),
        (b"\xff" * 9 + b"\x7f", "64 bits"),
    ],
)
def test_bad_varints_raise_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        read_varint(data, 0, len(data))


def test_read_stops_at_the_given_end_not_the_buffer_end() -> None:
    data = b"\x80\x01"
    with pytest.raises(DecodeError, match="truncated"):
        read_varint(data, 0, 1)
    assert read_varint(data, 0, 2) == (128, 2)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12))
def test_any_bytes_read_or_raise_decode_error(data: bytes) -> None:
    try:
        value, pos = read_varint(data, 0, len(data))
    except DecodeError:
        return
    assert 0 <= value < 2**64 and 1 <= pos <= min(len(data), 10)
