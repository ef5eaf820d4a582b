"""Wire format v1: envelope round trips, exact bytes, MAC handling, clear refusals."""

from __future__ import annotations

import hashlib
import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import AuthError, ConfigError, DecodeError, EncodeError, MessageTooLarge
from ganglion.wire import (
    FLAG_MAC,
    HEADER_SIZE,
    MAC_SIZE,
    MIN_DATAGRAM,
    NODE_ID_SIZE,
    Envelope,
    compute_mac,
    decode_datagram,
    encode_datagram,
    overhead,
)

NODE = bytes(range(1, 9))
FP = bytes.fromhex("0102030405060708")
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NAME = "brewery.Temperature"


def make(
    payloads: list[bytes] | None = None, *, timestamps: list[int] | None = None,
    key: bytes | None = None, first_seq: int = 7, boot: int = 3, name: str = NAME,
) -> bytes:
    payloads = payloads if payloads is not None else [b"\xa0"]
    if timestamps is None:
        timestamps = [1_000 + i for i in range(len(payloads))]
    return encode_datagram(node_id=NODE, type_name=name, fingerprint=FP, first_seq=first_seq,
                           timestamps=timestamps, payloads=payloads, boot=boot, key=key)


def test_single_message_bytes_are_exactly_as_documented() -> None:
    data = encode_datagram(node_id=NODE, type_name="a.B", fingerprint=FP, first_seq=258,
                           timestamps=[0x0102030405060708], payloads=[b"\xa0"], boot=5)
    assert data == (
        b"GN" + b"\x01" + b"\x00"  # magic, version, flags
        + NODE + b"\x00\x00\x00\x05" + FP  # node id, boot, fingerprint
        + b"\x03a.B"  # name length and name
        + (258).to_bytes(8, "big") + bytes.fromhex("0102030405060708") + b"\x00\x01"
        + b"\x00" + b"\x01" + b"\xa0"  # ts delta 0, length 1, payload
    )
    assert len(data) == overhead("a.B", signed=False) + 3 == MIN_DATAGRAM + 2


def test_batch_timestamps_are_zigzag_deltas_from_the_previous_message() -> None:
    data = encode_datagram(node_id=NODE, type_name="a.B", fingerprint=FP, first_seq=0,
                           timestamps=[1000, 1064, 1000], payloads=[b"\x01", b"\x02", b"\x03"])
    body = data[HEADER_SIZE + 3 :]
    # 0 -> 0; +64 -> 128 = varint 0x80 0x01; -64 -> 127 = 0x7f
    assert body == b"\x00\x01\x01" + b"\x80\x01\x01\x02" + b"\x7f\x01\x03"
    env = decode_datagram(data, key=None)
    assert env.timestamps == (1000, 1064, 1000)


def test_last_sequence_number_is_usable() -> None:
    env = decode_datagram(make(first_seq=2**64 - 1), key=None)
    assert [seq for seq, _, _ in env.messages()] == [2**64 - 1]


def test_round_trip_with_batch_and_seqs() -> None:
    env = decode_datagram(make([b"\xa0", b"\xa1\x61a\x01", b"\x80"]), key=None)
    assert env == Envelope(
        node_id=NODE, type_name=NAME, fingerprint=FP, first_seq=7,
        timestamps=(1000, 1001, 1002), payloads=(b"\xa0", b"\xa1\x61a\x01", b"\x80"),
        boot=3, flags=0, version=1,
    )
    assert env.count == 3 and not env.signed
    assert list(env.messages()) == [(7, 1000, b"\xa0"), (8, 1001, b"\xa1\x61a\x01"),
                                    (9, 1002, b"\x80")]


@settings(max_examples=200, deadline=None)
@given(
    node=st.binary(min_size=NODE_ID_SIZE, max_size=NODE_ID_SIZE),
    fp=st.binary(min_size=8, max_size=8),
    name=st.from_regex(r"[a-z_][a-z0-9_]{0,10}(\.[A-Za-z_][A-Za-z0-9_]{0,10}){1,3}",
                       fullmatch=True),
    boot=st.integers(0, 2**32 - 1),
    first_seq=st.integers(0, 2**64 - 100),
    timestamps=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=8),
    data=st.data(),
    signed=st.booleans(),
)
def test_any_valid_envelope_round_trips(
    node: bytes, fp: bytes, name: str, boot: int, first_seq: int, timestamps: list[int],
    data: st.DataObject, signed: bool,
) -> None:
    if any(abs(b - a) >= 2**63 for a, b in itertools.pairwise(timestamps)):
        timestamps = [timestamps[0]] * len(timestamps)
    payloads = data.draw(st.lists(st.binary(min_size=1, max_size=300),
                                  min_size=len(timestamps), max_size=len(timestamps)))
    key = KEY if signed else None
    raw = encode_datagram(node_id=node, type_name=name, fingerprint=fp, first_seq=first_seq,
                          timestamps=timestamps, payloads=payloads, boot=boot, key=key,
                          max_datagram=None)
    env = decode_datagram(raw, key=key)
    assert (env.node_id, env.type_name, env.fingerprint, env.boot, env.first_seq) == (
        node, name, fp, boot, first_seq)
    assert env.timestamps == tuple(timestamps)
    assert env.payloads == tuple(payloads)
    assert env.signed is signed


# -- MAC -------------------------------------------------------------------------


def test_signed_datagram_has_flag_and_blake2b_tag_over_everything_before() -> None:
    data = make(key=KEY)
    assert data[3] == FLAG_MAC
    body, tag = data[:-MAC_SIZE], data[-MAC_SIZE:]
    assert tag == hashlib.blake2b(body, key=KEY, digest_size=16,
                                  person=b"ganglion-wire-v1").digest()
    assert tag == compute_mac(KEY, body)
    assert len(data) == len(make()) + MAC_SIZE
    assert decode_datagram(data, key=KEY).signed


def test_unsigned_datagram_is_refused_when_a_key_is_set() -> None:
    with pytest.raises(AuthError, match="unsigned"):
        decode_datagram(make(), key=KEY)


def test_signed_datagram_without_key_says_key_required() -> None:
    with pytest.raises(AuthError, match="no network key"):
        decode_datagram(make(key=KEY), key=None)


def test_wrong_key_is_refused() -> None:
    with pytest.raises(AuthError, match="does not verify"):
        decode_datagram(make(key=KEY), key=OTHER_KEY)


@pytest.mark.parametrize("index", [0, 3, 4, 12, 20, 30, 50, -17, -1])
def test_any_flipped_bit_of_a_signed_datagram_is_refused(index: int) -> None:
    data = bytearray(make([b"\xa1\x61a\x01"], key=KEY))
    data[index] ^= 0x10
    with pytest.raises(DecodeError):
        decode_datagram(bytes(data), key=KEY)


def test_stripping_the_mac_and_flag_does_not_pass_a_keyed_receiver() -> None:
    data = bytearray(make(key=KEY)[:-MAC_SIZE])
    data[3] = 0
    assert decode_datagram(bytes(data), key=None).count == 1  # a valid unsigned datagram
    with pytest.raises(AuthError):
        decode_datagram(bytes(data), key=KEY)


def test_bad_key_size_is_a_local_config_error() -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        make(key=b"short")
    with pytest.raises(ConfigError, match="32 bytes"):
        decode_datagram(make(key=KEY), key=b"short")


# -- refusals -------------------------------------------------------------------------


def patched(offset: int, fmt: str, value: int, data: bytes | None = None) -> bytes:
    buf = bytearray(data if data is not None else make())
    struct.pack_into(fmt, buf, offset, value)
    return bytes(buf)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "bad magic"),
        (b"G", "bad magic"),
        (b"XN\x01\x00" + bytes(60), "bad magic"),
        (b"GN\x01", "shorter than any valid"),
        (make()[:MIN_DATAGRAM - 1], "shorter than any valid"),
        (patched(2, ">B", 2), "version 2"),
        (patched(2, ">B", 0), "version 0"),
        (patched(3, ">B", 0x80), "unknown flag bits 0x80"),
        (patched(24, ">B", 0), "type name length 0"),
        (patched(24, ">B", 201), "type name length 201"),
        (patched(24, ">B", 200), "type name length 200"),
        (patched(25, ">B", ord("-")), "invalid type name"),
        (patched(25, ">B", 0xC3), "not ASCII"),
        (patched(25 + len(NAME) + 16, ">H", 0), "no messages"),
        (patched(25 + len(NAME) + 16, ">H", 2), "truncated|does not fit"),
        (patched(25 + len(NAME), ">Q", 2**64 - 1, make([b"\x01", b"\x02"])), "overflow"),
        (make() + b"\x00", "stray bytes"),
        (make()[:-1], "does not fit"),
        (make([b"\x01\x02"])[:-3] + b"\x00\x00\x01", "does not fit"),  # zero-length payload
        (make()[:-3] + b"\xff" * 11, "longer than 10 bytes|truncated"),
        (make()[:-3] + b"\xff" * 9 + b"\x7f" + b"\x01\x00", "64 bits"),
        (make(timestamps=[0])[:-3] + b"\x01\x01\xa0", "timestamp out of range"),
        (make(timestamps=[2**64 - 1, 2**64 - 1], payloads=[b"\x01", b"\x02"])[:-3]
         + b"\x02\x01\x02", "timestamp out of range"),
    ],
)
def test_malformed_datagrams_are_refused_clearly(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_datagram(data, key=None)


# -- encode-side checks ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"node_id": b"short"}, "node id"),
        ({"fingerprint": b"f"}, "fingerprint"),
        ({"type_name": "NoDots"}, "invalid type name"),
        ({"boot": 2**32}, "u32"),
        ({"first_seq": -1}, "sequence"),
        ({"first_seq": 2**64 - 1, "payloads": [b"\x01", b"\x02"], "timestamps": [1, 2]},
         "sequence"),
        ({"payloads": [], "timestamps": []}, "1..65535 payloads"),
        ({"payloads": [b"\x01"], "timestamps": [1, 2]}, "one timestamp each"),
        ({"payloads": [b""], "timestamps": [1]}, "empty"),
        ({"timestamps": [-1]}, "timestamps must be"),
        ({"timestamps": [2**64]}, "timestamps must be"),
        ({"payloads": [b"\x01", b"\x02"], "timestamps": [0, 2**63]}, "differ by"),
    ],
)
def test_bad_encode_arguments_are_refused(kwargs: dict[str, object], reason: str) -> None:
    args: dict[str, object] = {"node_id": NODE, "type_name": NAME, "fingerprint": FP,
                               "first_seq": 0, "timestamps": [1], "payloads": [b"\xa0"]}
    args.update(kwargs)
    with pytest.raises(EncodeError, match=reason):
        encode_datagram(**args)  # type: ignore[arg-type]


def test_encode_refuses_to_exceed_the_budget_with_both_sizes() -> None:
    payload = b"\x58" + bytes(2000)
    with pytest.raises(MessageTooLarge) as info:
        make([payload])
    exc = info.value
    assert exc.limit == 1400
    assert exc.size == overhead(NAME, signed=False) + 1 + 2 + len(payload)
    assert str(exc.size) in str(exc) and "1400" in str(exc)
    big = encode_datagram(node_id=NODE, type_name=NAME, fingerprint=FP, first_seq=0,
                          timestamps=[1], payloads=[payload], max_datagram=None)
    assert decode_datagram(big, key=None).payloads == (payload,)


def test_documented_example_datagrams() -> None:
    """The worked example in docs/protocol.md section 2, unsigned and signed."""
    args = {"node_id": bytes(range(1, 9)), "type_name": "a.B",
            "fingerprint": bytes(range(1, 9)), "first_seq": 258,
            "timestamps": [0x0102030405060708], "payloads": [b"\xa0"], "boot": 5}
    plain = encode_datagram(**args)  # type: ignore[arg-type]
    assert plain.hex(" ") == (
        "47 4e 01 00 01 02 03 04 05 06 07 08 00 00 00 05 01 02 03 04 05 06 07 08 "
        "03 61 2e 42 00 00 00 00 00 00 01 02 01 02 03 04 05 06 07 08 00 01 00 01 a0"
    )
    signed = encode_datagram(**args, key=bytes(range(32)))  # type: ignore[arg-type]
    assert signed[:3] + signed[4:-16] == plain[:3] + plain[4:] and signed[3] == 1
    assert signed[-16:].hex(" ") == "17 b0 53 56 db 7c ad 4a a1 41 4e 3a 74 62 f3 09"


def test_the_type_name_cache_stays_bounded_under_a_flood_of_new_names() -> None:
    # The resource budget (docs/security.md): a peer sending endless new type names
    # must not grow the decoder's name cache past 4,096; names past it still decode.
    from ganglion.wire import _envelope

    for i in range(_envelope._NAMES_CAP + 500):
        name = f"flood.T{i}"
        data = encode_datagram(node_id=bytes(8), type_name=name, fingerprint=bytes(8),
                               first_seq=0, timestamps=[1], payloads=[b"\xa0"])
        assert decode_datagram(data, key=None).type_name == name
    assert len(_envelope._NAMES) <= _envelope._NAMES_CAP
