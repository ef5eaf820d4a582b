"""The packer's short path for close-together messages writes what encode_datagram writes.

``Packer.add`` writes the common case (a message less than 8 us after the
previous one, payload under 16 KiB: one- and two-byte varints) with inlined
byte appends and longer varints with the general encoder. Byte for byte, the datagrams must be those
:func:`encode_datagram` builds from the same messages, at every boundary of
the one- and two-byte varints and of the size budget.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import EncodeError, MessageTooLarge
from ganglion.wire import Packer, encode_datagram

NODE = b"node-id!"
FP = b"fingerpr"
NAME = "test.Fast"

#: Deltas around every varint boundary of the zigzag encoding, and negative ones.
deltas = st.one_of(st.sampled_from([0, 1, 0x3F, 0x40, 0x41, 0x1FFF, 0x2000, 0x2001, -1, -0x40]),
                   st.integers(-10**6, 10**7))
sizes = st.one_of(st.sampled_from([1, 0x7F, 0x80, 0x81, 300]), st.integers(1, 700))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(deltas, sizes), min_size=1, max_size=60),
       st.integers(200, 1400), st.booleans(), st.integers(10**9, 10**18))
def test_datagrams_are_encode_datagrams(messages: list[tuple[int, int]], budget: int,
                                        signed: bool, start: int) -> None:
    key = b"k" * 32 if signed else None
    p = Packer(node_id=NODE, type_name=NAME, fingerprint=FP, boot=7, key=key,
               max_datagram=budget)
    batches: list[list[tuple[int, bytes]]] = [[]]
    built: list[bytes] = []
    ts = start
    for i, (delta, size) in enumerate(messages):
        ts = max(0, ts + delta)
        payload = bytes([i % 251 + 1]) * size
        try:
            p.check_fits(size)
        except MessageTooLarge:
            continue
        if not p.add(payload, ts):
            built.append(p.build())
            batches.append([])
            assert p.add(payload, ts)
        batches[-1].append((ts, payload))
    if p.count:
        built.append(p.build())
    batches = [b for b in batches if b]
    seq = 0
    assert len(built) == len(batches)
    for datagram, batch in zip(built, batches, strict=True):
        expected = encode_datagram(node_id=NODE, type_name=NAME, fingerprint=FP, first_seq=seq,
                                   timestamps=[t for t, _ in batch],
                                   payloads=[pl for _, pl in batch], boot=7, key=key,
                                   max_datagram=budget)
        assert datagram == expected
        seq += len(batch)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), sizes), min_size=1, max_size=10),
       st.integers(200, 1400), st.booleans())
def test_build_one_is_add_then_build(messages: list[tuple[int, int]], budget: int,
                                     signed: bool) -> None:
    key = b"k" * 32 if signed else None
    args = {"node_id": NODE, "type_name": NAME, "fingerprint": FP, "key": key,
            "max_datagram": budget}
    one = Packer(**args)  # type: ignore[arg-type]
    two = Packer(**args)  # type: ignore[arg-type]
    ts = 10**15
    for delta, size in messages:
        ts += delta
        payload = bytes([size % 255 + 1]) * size
        try:
            expected: object = (two.add(payload, ts), two.build())[1]
        except MessageTooLarge as exc:
            expected = str(exc)
        try:
            got: object = one.build_one(payload, ts)
        except MessageTooLarge as exc:
            got = str(exc)
        assert got == expected
        assert one.next_seq == two.next_seq


def test_build_one_refuses_when_messages_wait() -> None:
    p = Packer(node_id=NODE, type_name=NAME, fingerprint=FP)
    p.add(b"\x01", 5)
    with pytest.raises(EncodeError):
        p.build_one(b"\x02", 6)
    assert p.count == 1
