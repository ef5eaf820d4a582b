"""Batching: the packer fills datagrams exactly up to the budget and never truncates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.defaults import MAX_DATAGRAM
from ganglion.errors import ConfigError, EncodeError, MessageTooLarge
from ganglion.wire import (
    MAC_SIZE,
    MAX_BATCH,
    Packer,
    datagram_size,
    decode_datagram,
    encode_datagram,
    overhead,
)

NODE = b"node-id!"
FP = b"fingerpr"
KEY = b"k" * 32
NAME = "test.Packed"


def packer(**kwargs: object) -> Packer:
    args: dict[str, object] = {"node_id": NODE, "type_name": NAME, "fingerprint": FP}
    args.update(kwargs)
    return Packer(**args)  # type: ignore[arg-type]


def filling(room: int) -> int:
    """The payload size whose length varint plus bytes take exactly ``room`` bytes."""
    n = room - 1 if room - 1 < 0x80 else room - 2
    assert n + (1 if n < 0x80 else 2) == room, "no payload size fills this room exactly"
    return n


def test_one_message_matches_encode_datagram_byte_for_byte() -> None:
    for key in (None, KEY):
        p = packer(first_seq=5, boot=2, key=key)
        assert p.add(b"\xa1\x61x\x01", 123)
        assert p.size == datagram_size(NAME, 4, signed=key is not None)
        data = p.build()
        assert data == encode_datagram(node_id=NODE, type_name=NAME, fingerprint=FP,
                                       first_seq=5, timestamps=[123], payloads=[b"\xa1\x61x\x01"],
                                       boot=2, key=key)


def test_batch_matches_encode_datagram_and_seqs_continue_after_build() -> None:
    p = packer(first_seq=10, key=KEY)
    stamps = [1_000, 1_000, 900, 5_000_000_000]
    payloads = [bytes([0x40 + i]) for i in range(4)]
    for ts, pl in zip(stamps, payloads, strict=True):
        assert p.add(pl, ts)
    assert p.count == len(p) == 4 and p.next_seq == 14
    size = p.size
    data = p.build()
    assert len(data) == size
    assert data == encode_datagram(node_id=NODE, type_name=NAME, fingerprint=FP, first_seq=10,
                                   timestamps=stamps, payloads=payloads, key=KEY)
    assert p.count == 0 and p.next_seq == 14
    p.add(b"\x01", 7)
    env = decode_datagram(p.build(), key=KEY)
    assert env.first_seq == 14 and env.timestamps == (7,)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("budget", [MAX_DATAGRAM, 150, 577])
def test_message_filling_the_budget_exactly_fits_and_one_more_byte_does_not(
    signed: bool, budget: int
) -> None:
    key = KEY if signed else None
    n = filling(budget - overhead(NAME, signed=signed) - 1)  # minus the delta byte
    assert datagram_size(NAME, n, signed=signed) == budget
    p = packer(key=key, max_datagram=budget)
    assert p.add(b"\x01" * n, 1)
    data = p.build()
    assert len(data) == budget
    assert decode_datagram(data, key=key).payloads == (b"\x01" * n,)
    with pytest.raises(MessageTooLarge) as info:
        p.add(b"\x01" * (n + 1), 1)
    assert info.value.size == budget + 1 and info.value.limit == budget
    assert p.count == 0


def test_second_message_exactly_at_the_budget_goes_in_then_datagram_is_full() -> None:
    p = packer(max_datagram=300)
    assert p.add(b"\x01" * 100, 0)
    # delta 0 (1 byte) + length varint + payload == what is left
    assert p.add(b"\x02" * filling(300 - p.size - 1), 0)
    assert p.size == 300
    assert not p.add(b"\x03", 0)  # full: caller builds and re-adds
    data = p.build()
    assert len(data) == 300
    assert p.add(b"\x03", 0)
    assert decode_datagram(p.build(), key=None).first_seq == 2


def test_add_that_does_not_fit_leaves_the_packer_unchanged() -> None:
    p = packer(max_datagram=200)
    p.add(b"\x01" * 100, 0)
    before = p.size
    assert not p.add(b"\x02" * 100, 10**9)
    assert p.size == before and p.count == 1
    assert decode_datagram(p.build(), key=None).payloads == (b"\x01" * 100,)


def test_check_fits_reports_the_full_datagram_size_and_limit() -> None:
    p = packer(key=KEY)
    p.check_fits(1400 - overhead(NAME, signed=True) - 3)
    with pytest.raises(MessageTooLarge) as info:
        p.check_fits(5000)
    expected = overhead(NAME, signed=True) + 1 + 2 + 5000
    assert info.value.size == expected == datagram_size(NAME, 5000, signed=True)
    assert info.value.type_name == NAME
    assert f"{expected} bytes" in str(info.value) and "1400 bytes" in str(info.value)


def test_too_large_message_in_a_nonempty_packer_is_refused_not_deferred() -> None:
    p = packer()
    p.add(b"\x01", 0)
    with pytest.raises(MessageTooLarge):
        p.add(b"\x01" * 2000, 0)
    assert p.count == 1


def test_largest_datagram_holds_as_many_tiny_messages_as_bytes_allow() -> None:
    p = packer(max_datagram=65507)
    added = 0
    while p.add(b"\x01", 0):
        added += 1
    # 3 bytes each (delta, length, payload); the u16 count can never be the limit
    assert added == (65507 - overhead(NAME, signed=False)) // 3 < MAX_BATCH
    env = decode_datagram(p.build(), key=None)
    assert env.count == added


def test_many_messages_pack_densely_and_decode_in_order() -> None:
    p = packer(key=KEY)
    datagrams: list[bytes] = []
    for i in range(1000):
        payload = bytes([0x40 + i % 20]) * (1 + i % 37)
        if not p.add(payload, 10**18 + i * 1000):
            datagrams.append(p.build())
            assert p.add(payload, 10**18 + i * 1000)
    datagrams.append(p.build())
    assert all(len(d) <= MAX_DATAGRAM for d in datagrams)
    seqs: list[int] = []
    for d in datagrams:
        env = decode_datagram(d, key=KEY)
        seqs.extend(seq for seq, _, _ in env.messages())
        assert all(ts == 10**18 + seq * 1000 for seq, ts, _ in env.messages())
    assert seqs == list(range(1000))
    # every datagram but the last was full: the next message would not have fit
    assert len(datagrams) < 1000 // 30


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 400), min_size=1, max_size=40),
    budget=st.integers(120, 1500),
    signed=st.booleans(),
)
def test_packing_never_exceeds_budget_and_loses_nothing(
    sizes: list[int], budget: int, signed: bool
) -> None:
    key = KEY if signed else None
    p = packer(key=key, max_datagram=budget)
    sent: list[bytes] = []
    out: list[bytes] = []
    for i, size in enumerate(sizes):
        payload = bytes([i % 256]) * size
        try:
            p.check_fits(size)
        except MessageTooLarge as exc:
            assert exc.size > budget
            continue
        if not p.add(payload, i):
            out.append(p.build())
            assert p.add(payload, i)
        sent.append(payload)
    if p.count:
        out.append(p.build())
    got: list[bytes] = []
    for d in out:
        assert len(d) <= budget
        got.extend(decode_datagram(d, key=key).payloads)
    assert got == sent


def test_bad_packer_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="max_datagram"):
        packer(max_datagram=overhead(NAME, signed=False) + 2)
    with pytest.raises(ConfigError, match="max_datagram"):
        packer(max_datagram=70_000)
    with pytest.raises(ConfigError, match="32 bytes"):
        packer(key=b"x")
    with pytest.raises(EncodeError, match="type name"):
        packer(type_name="bad")
    with pytest.raises(EncodeError, match="first_seq"):
        packer(first_seq=-1)
    assert packer(max_datagram=overhead(NAME, signed=True) + 3, key=KEY).add(b"\x01", 0)
    assert MAC_SIZE == 16


def test_bad_messages_are_refused() -> None:
    p = packer()
    with pytest.raises(EncodeError, match="empty"):
        p.add(b"", 0)
    with pytest.raises(EncodeError, match="timestamp"):
        p.add(b"\x01", -1)
    p.add(b"\x01", 0)
    with pytest.raises(EncodeError):
        p.add(b"", 0)
    with pytest.raises(EncodeError):
        p.add(b"\x01", 2**64)
    with pytest.raises(EncodeError, match="nothing to build"):
        packer().build()


def test_sequence_numbers_end_at_two_to_the_64() -> None:
    p = packer(first_seq=2**64 - 2)
    assert p.add(b"\x01", 0) and p.add(b"\x02", 0)
    assert not p.add(b"\x03", 0)
    assert decode_datagram(p.build(), key=None).first_seq == 2**64 - 2
    with pytest.raises(EncodeError, match="exhausted"):
        p.add(b"\x03", 0)


@pytest.mark.parametrize(("key", "largest"), [(None, 1335), (KEY, 1319)])
def test_largest_payload_for_a_19_byte_name_is_as_documented(
    key: bytes | None, largest: int
) -> None:
    p = Packer(node_id=NODE, type_name="brewery.Temperature", fingerprint=FP, key=key)
    p.check_fits(largest)
    with pytest.raises(MessageTooLarge):
        p.check_fits(largest + 1)
    assert p.add(b"\x01" * largest, 0)
    assert len(p.build()) == MAX_DATAGRAM


def test_add_says_when_the_next_message_as_large_would_not_fit() -> None:
    from ganglion.wire._packer import ADDED, FULL, NOT_ADDED

    packer = Packer(node_id=bytes(8), type_name="t.A", fingerprint=bytes(8), max_datagram=200)
    payload = bytes(40)
    room = packer.limit
    answers = []
    for i in range(4):
        answers.append(packer.add(payload, 1_000 + i))
    # 40 bytes plus at most 4 of heads each: three fit, the third leaves no room for a fourth.
    assert room // 44 == 3
    assert answers[:3] == [ADDED, ADDED, FULL]
    assert answers[3] == NOT_ADDED and packer.count == 3
    assert not NOT_ADDED and ADDED and FULL
