"""A replayed message's origin (issue 20, defect 9): the CBOR item after its payload's map.

The origin must round-trip, must never make anything raise, and must be invisible to
a receiver that does not look for it: the payload decoders every ganglion runs (the
generic one and a class's generated one) read a payload with an origin exactly as the
same payload without one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ganglion.types import Record, decode_payload, encode_message, encode_payload, message, type_of
from ganglion.wire import ORIGIN_MAX_SIZE, Origin, encode_origin, split_origin
from ganglion.wire._origin import ORIGIN_LAST_VALUE, ORIGIN_UNSYNCED

NODE = bytes(range(1, 9))


@message("test_origin.Reading")
@dataclass
class Reading:
    sensor: str
    celsius: float


def test_an_origin_round_trips_after_the_map() -> None:
    body = encode_payload(Record("a.B", {"x": 1}))
    origin = Origin(NODE, 5, 258, 1_700_000_000_123_456_789, last_value=True, clock_synced=False)
    assert split_origin(body + encode_origin(origin)) == (body, origin)
    plain = Origin(NODE, 0, 0, 0)
    assert split_origin(body + encode_origin(plain)) == (body, plain)


def test_the_origin_is_byte_for_byte_as_documented() -> None:
    # docs/protocol.md, section 4.4: the example there.
    origin = Origin(NODE, 5, 258, 0x0102030405060708, clock_synced=False)
    assert encode_origin(origin).hex(" ") == (
        "85 48 01 02 03 04 05 06 07 08 05 19 01 02 1b 01 02 03 04 05 06 07 08 02")


@given(boot=st.integers(0, 2**32 - 1), seq=st.integers(0, 2**64 - 1),
       sent=st.integers(0, 2**64 - 1), last=st.booleans(), synced=st.booleans())
def test_any_origin_fits_the_documented_bound_and_round_trips(boot: int, seq: int, sent: int,
                                                              last: bool, synced: bool) -> None:
    origin = Origin(NODE, boot, seq, sent, last, synced)
    encoded = encode_origin(origin)
    assert len(encoded) <= ORIGIN_MAX_SIZE
    body = encode_payload(Record("a.B", {"v": seq}))
    assert split_origin(body + encoded) == (body, origin)


def test_a_payload_without_an_origin_comes_back_whole() -> None:
    body = encode_payload(Record("a.B", {"x": [1, 2]}))
    assert split_origin(body) == (body, None)


@pytest.mark.parametrize("after", [
    cbor2.dumps([NODE, 1, 2]),                      # too short
    cbor2.dumps([NODE[:7], 1, 2, 3, 0]),            # node id not 8 bytes
    cbor2.dumps(["x" * 8, 1, 2, 3, 0]),             # node id not bytes
    cbor2.dumps([NODE, 2**32, 2, 3, 0]),            # boot beyond u32
    cbor2.dumps([NODE, 1, -2, 3, 0]),               # negative seq
    cbor2.dumps([NODE, 1, 2, 3.0, 0]),              # float time
    cbor2.dumps({"node": NODE}),                    # a map
    cbor2.dumps([NODE, 1, 2, 3, 0]) + b"\x00",      # something after the origin
    b"\x85\x48\x01",                                # truncated
    b"\xff",                                        # not CBOR
])
def test_anything_but_a_well_formed_origin_is_no_origin(after: bytes) -> None:
    body = encode_payload(Record("a.B", {"x": 1}))
    assert split_origin(body + after) == (body + after, None)


def test_items_after_the_fifth_and_unknown_flag_bits_are_ignored() -> None:
    body = encode_payload(Record("a.B", {"x": 1}))
    later = cbor2.dumps([NODE, 1, 2, 3, ORIGIN_UNSYNCED | ORIGIN_LAST_VALUE | 0x80, "more"])
    assert split_origin(body + later) == (body, Origin(NODE, 1, 2, 3, True, False))


@given(st.binary(max_size=300))
def test_split_never_raises(data: bytes) -> None:
    body, origin = split_origin(data)
    assert (body, origin) == (data, None) or data.startswith(body)


def test_an_older_receiver_decodes_a_payload_with_an_origin_as_without_one() -> None:
    """What every ganglion before origins does with a replayed message: reads the map
    and ignores the rest, through the generic decoder and a class's generated one."""
    origin = encode_origin(Origin(NODE, 5, 9, 10**18))
    record = Record("test_origin.Unknown", {"sensor": "t", "celsius": 21.5})
    body = encode_payload(record)
    assert decode_payload("test_origin.Unknown", body + origin) == record
    mtype = type_of(Reading)
    body = encode_message(Reading("t", 21.5), mtype)
    assert mtype.decode_fast is not None
    for fingerprint in (mtype.fingerprint, bytes(8)):  # strict and lenient
        assert decode_payload(mtype.name, body + origin, fingerprint) == Reading("t", 21.5)
