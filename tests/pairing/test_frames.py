"""Framing: kind, u16 length, body; the reader never holds more than one frame."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ganglion.errors import PairingProtocolError
from ganglion.pairing.frames import HEADER, MAX_BODY, FrameKind, FrameReader, encode_frame

ANY = frozenset(FrameKind)


def test_a_frame_is_kind_then_big_endian_length_then_body() -> None:
    assert encode_frame(FrameKind.CONFIRM, b"\xaa" * 3) == b"\x03\x00\x03\xaa\xaa\xaa"
    assert encode_frame(FrameKind.REFUSED, b"\x01") == b"\x06\x00\x01\x01"


@given(st.sampled_from(list(FrameKind)), st.binary(max_size=300))
def test_a_frame_fed_one_byte_at_a_time_comes_out_whole_once(kind: FrameKind, body: bytes) -> None:
    reader = FrameReader()
    wire = encode_frame(kind, body)
    results = [reader.feed(wire[i:i + 1], ANY) for i in range(len(wire))]
    assert results[-1] == (kind, body)
    assert all(r is None for r in results[:-1])
    assert reader.buffered == 0


def test_an_unknown_kind_is_refused_as_soon_as_the_header_is_in() -> None:
    with pytest.raises(PairingProtocolError, match="unknown frame kind 255"):
        FrameReader().feed(b"\xff\x00\x01", ANY)


def test_a_kind_out_of_turn_is_refused() -> None:
    with pytest.raises(PairingProtocolError, match="got a KEY frame, expected HELLO"):
        FrameReader().feed(encode_frame(FrameKind.KEY, b"x"), frozenset({FrameKind.HELLO}))


def test_an_oversized_length_is_refused_before_its_body_is_read() -> None:
    reader = FrameReader()
    with pytest.raises(PairingProtocolError, match="over the 4200 limit"):
        reader.feed(bytes([FrameKind.HELLO]) + (MAX_BODY + 1).to_bytes(2, "big"), ANY)


def test_bytes_beyond_one_frame_break_the_lock_step_and_are_refused() -> None:
    with pytest.raises(PairingProtocolError, match="1 bytes sent after a HELLO frame"):
        FrameReader().feed(encode_frame(FrameKind.HELLO, b"ab") + b"\x03", ANY)


def test_the_largest_body_round_trips_and_a_larger_one_cannot_be_encoded() -> None:
    body = bytes(MAX_BODY)
    assert FrameReader().feed(encode_frame(FrameKind.KEY, body), ANY) == (FrameKind.KEY, body)
    with pytest.raises(ValueError):
        encode_frame(FrameKind.KEY, body + b"x")


@given(st.lists(st.binary(max_size=600), max_size=20))
def test_any_bytes_give_a_frame_nothing_or_a_protocol_error_and_stay_bounded(
        chunks: list[bytes]) -> None:
    reader = FrameReader()
    for chunk in chunks:
        try:
            reader.feed(chunk, ANY)
        except PairingProtocolError:
            return
        assert reader.buffered <= HEADER + MAX_BODY
