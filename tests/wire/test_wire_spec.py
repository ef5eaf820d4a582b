"""The decoder accepts exactly the datagrams docs/protocol.md allows, with the same fields.

``spec_decode`` below is written from the protocol document alone (sections 2
and 3), plainly and slowly, with no shortcut. The real decoder has shortcuts
for the common shapes (a lone message, one-byte varints, a stream already
known); each must give the same answer as this reading of the rules: the same
fields for a valid datagram, a refusal for an invalid one. Checked on valid
datagrams of every shape (lone messages of 1 to 1,300 bytes, batches, signed or
not), and on byte overwrites, truncations and extensions of them focused on the
batch header and the first message's varints, where the shortcuts are.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import DecodeError
from ganglion.types import is_valid_type_name
from ganglion.wire import decode_batch, decode_fields, encode_datagram
from ganglion.wire._mac import compute_mac

KEY = bytes(range(32))
U64 = 1 << 64


def spec_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Unsigned LEB128, at most 10 bytes, value below 2**64 (section 3)."""
    value = 0
    for i in range(10):
        if pos >= end:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            if value >= U64:
                raise ValueError("varint too large")
            return value, pos
    raise ValueError("varint longer than 10 bytes")


def spec_decode(data: bytes, key: bytes | None) -> tuple[object, ...]:
    """Decode by the document; raises ValueError for anything it does not allow."""
    if len(data) < 25 or data[:2] != b"GN" or data[2] != 1 or data[3] & ~0x07:
        raise ValueError("bad fixed header")
    flags = data[3]
    end = len(data)
    if flags & 1:
        if key is None:
            raise ValueError("signed, no key")
        end -= 16
        if end < 0 or compute_mac(key, data[:end]) != data[end:]:
            raise ValueError("bad MAC")
    elif key is not None:
        raise ValueError("unsigned with a key")
    node_id, boot, fingerprint = data[4:12], struct.unpack(">I", data[12:16])[0], data[16:24]
    size = data[24]
    name_raw = data[25:25 + size]
    if not 1 <= size <= 200 or 25 + size > end or not name_raw.isascii() \
            or not is_valid_type_name(name_raw.decode()):
        raise ValueError("bad name")
    pos = 25 + size
    if pos + 18 > end:
        raise ValueError("truncated batch header")
    first_seq, base, count = struct.unpack(">QQH", data[pos:pos + 18])
    pos += 18
    if count < 1 or first_seq + count - 1 >= U64:
        raise ValueError("bad count")
    stamps, payloads, ts = [], [], base
    for _ in range(count):
        zz, pos = spec_varint(data, pos, end)
        ts += zz >> 1 if zz % 2 == 0 else -((zz + 1) >> 1)
        if not 0 <= ts < U64:
            raise ValueError("timestamp out of range")
        n, pos = spec_varint(data, pos, end)
        if n < 1 or pos + n > end:
            raise ValueError("payload does not fit")
        stamps.append(ts)
        payloads.append(data[pos:pos + n])
        pos += n
    if pos != end:
        raise ValueError("stray bytes")
    return (node_id, name_raw.decode(), fingerprint, first_seq, stamps, payloads, boot, flags)


def real_decode(data: bytes, key: bytes | None) -> object:
    try:
        return decode_fields(data, key)
    except DecodeError:
        return "refused"


def spec(data: bytes, key: bytes | None) -> object:
    try:
        return spec_decode(data, key)
    except ValueError:
        return "refused"


datagrams = st.builds(
    lambda name, seq, stamp, sizes, spread, key: encode_datagram(
        node_id=bytes(range(8)), type_name=name, fingerprint=b"f" * 8, first_seq=seq,
        timestamps=[stamp + i * spread for i in range(len(sizes))],
        payloads=[bytes([0x40 + i % 20]) * n for i, n in enumerate(sizes)], boot=3, key=key,
        max_datagram=None),
    st.sampled_from(["a.b", "brewery.Temperature"]),
    st.integers(0, 2**63),
    st.integers(0, 2**62),
    st.one_of(st.lists(st.integers(1, 1300), min_size=1, max_size=1),
              st.lists(st.integers(1, 200), min_size=1, max_size=8)),
    st.sampled_from([0, 1, 70, 10**6]),
    st.sampled_from([None, KEY]),
)


@settings(max_examples=300, deadline=None)
@given(datagrams)
def test_valid_datagrams_decode_as_the_document_says(data: bytes) -> None:
    key = KEY if data[3] & 1 else None
    assert real_decode(data, key) == spec(data, key) != "refused"


@settings(max_examples=1000, deadline=None)
@given(datagrams, st.data())
def test_damaged_datagrams_are_refused_exactly_when_the_document_says(
        data: bytes, draw: st.DataObject) -> None:
    key = KEY if data[3] & 1 else None
    damaged = bytearray(data)
    batch = 25 + data[24]
    for _ in range(draw.draw(st.integers(1, 3))):
        # Mostly the count and the first message's delta and length varints.
        at = draw.draw(st.one_of(st.integers(batch + 16, min(batch + 22, len(damaged) - 1)),
                                 st.integers(0, len(damaged) - 1)))
        damaged[at] = draw.draw(st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0x81, 0xFF,
                                                 draw.draw(st.integers(0, 255))]))
    cut = draw.draw(st.sampled_from(["keep", "cut", "extend"]))
    if cut == "cut":
        damaged = damaged[:draw.draw(st.integers(0, len(damaged)))]
    elif cut == "extend":
        damaged += bytes(draw.draw(st.integers(1, 3)))
    if key is not None and draw.draw(st.booleans()):
        # Re-sign, so the damage reaches the decoder instead of stopping at the MAC.
        damaged = damaged[:-16] + compute_mac(key, bytes(damaged[:-16])) \
            if len(damaged) >= 16 else damaged
    assert real_decode(bytes(damaged), key) == spec(bytes(damaged), key)


@settings(max_examples=300, deadline=None)
@given(datagrams, st.data())
def test_decode_batch_alone_agrees_with_the_document(data: bytes, draw: st.DataObject) -> None:
    key = KEY if data[3] & 1 else None
    end = len(data) - (16 if key else 0)
    batch = 25 + data[24]
    damaged = bytearray(data[:end])
    at = draw.draw(st.integers(batch, len(damaged) - 1))
    damaged[at] = draw.draw(st.integers(0, 255))
    unsigned = bytes([*damaged[:3], damaged[3] & ~1, *damaged[4:]])
    try:
        got: object = decode_batch(bytes(damaged), batch, len(damaged))
    except DecodeError:
        got = "refused"
    expected = spec(unsigned, None)
    assert got == (expected if expected == "refused" else expected[3:6])  # type: ignore[index]
