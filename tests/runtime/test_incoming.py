"""The receive path's stream cache gives exactly the full decoder's deliveries and counts.

``Incoming`` remembers each stream (sender, boot, flags, fingerprint, type) by
its datagram's header bytes and decodes only the batch of later datagrams. These
tests feed real datagrams (built by ``Packer``) straight to ``on_datagram`` and
compare with what the full decoder says: the same messages and ``MessageInfo``,
the same counters for corrupted, forged and looped-back datagrams, a stream whose
tracker the sequence table evicted, and a type registered after its first
datagram arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import DecodeError
from ganglion.runtime._incoming import Incoming
from ganglion.runtime.subscription import MessageInfo, Subscription
from ganglion.sequence import SequenceTable
from ganglion.types import encode_message, message, type_of
from ganglion.wire import Packer, decode_batch, decode_fields

KEY = bytes(range(32))
OURS = b"\x00" * 8
PEER = b"\x01" * 8
SOURCE = ("127.0.0.1", 47800)


@message("test_incoming.Reading")
@dataclass
class Reading:
    seq: int
    value: float


class Harness:
    """An Incoming with one subscriber per type, recording deliveries and drops."""

    def __init__(self, *types: str, key: bytes | None = None, max_entries: int = 4096) -> None:
        self.got: list[tuple[Any, MessageInfo]] = []
        self.bad: list[tuple[str, str]] = []
        self.sequences = SequenceTable(strict=key is not None, max_entries=max_entries)
        self.subs: dict[str, list[Subscription]] = {
            name: [Subscription(name, callback=lambda m, i: self.got.append((m, i)),
                                maxsize=16, on_close=lambda s: None)] for name in types}
        self.incoming = Incoming(node_id=OURS, key=key, subs=self.subs,
                                 sequences=self.sequences,
                                 count_bad=lambda kind, detail, src: self.bad.append((kind, detail)))

    def feed(self, *datagrams: bytes) -> None:
        for datagram in datagrams:
            self.incoming.on_datagram(datagram, SOURCE, 0.0)


def packer(node_id: bytes = PEER, key: bytes | None = None, name: str = "test_incoming.Reading",
           boot: int = 7) -> Packer:
    return Packer(node_id=node_id, type_name=name, fingerprint=type_of(Reading).fingerprint,
                  boot=boot, key=key)


def reading_datagrams(pk: Packer, count: int, per_datagram: int = 3) -> list[bytes]:
    out = []
    mtype = type_of(Reading)
    for seq in range(count):
        assert pk.add(encode_message(Reading(seq, seq / 2), mtype), 1_000_000 + seq)
        if pk.count == per_datagram:
            out.append(pk.build())
    if pk.count:
        out.append(pk.build())
    return out


def test_a_stream_is_remembered_and_every_message_delivered_in_order() -> None:
    h = Harness("test_incoming.Reading")
    datagrams = reading_datagrams(packer(), 10)
    h.feed(*datagrams)
    assert [m for m, _ in h.got] == [Reading(s, s / 2) for s in range(10)]
    assert [i.seq for _, i in h.got] == list(range(10))
    assert {(i.sender, i.boot, i.source) for _, i in h.got} == {(PEER, 7, SOURCE)}
    assert len(h.incoming._streams) == 1
    assert h.incoming.received == 10 and not h.bad
    stats = h.sequences.peek(PEER, "test_incoming.Reading")
    assert stats is not None and stats.received == 10 and stats.lost == 0


def test_duplicates_and_gaps_through_the_short_path_are_counted() -> None:
    h = Harness("test_incoming.Reading")
    d0, d1, d2, d3 = reading_datagrams(packer(), 12)
    h.feed(d0, d1, d1, d3, d2)
    assert [i.seq for _, i in h.got] == [0, 1, 2, 3, 4, 5, 9, 10, 11, 6, 7, 8]
    stats = h.sequences.peek(PEER, "test_incoming.Reading")
    assert stats is not None
    assert (stats.duplicates, stats.reordered, stats.lost) == (3, 3, 0)


def test_a_corrupted_datagram_of_a_known_stream_is_counted_with_the_full_decoders_error() -> None:
    h = Harness("test_incoming.Reading")
    good, later = reading_datagrams(packer(), 6)
    h.feed(good)
    truncated = later[:-2]
    try:
        decode_fields(truncated, None)
    except DecodeError as exc:
        expected = str(exc)
    h.feed(truncated)
    assert h.bad == [("decode_errors", expected)]
    assert len(h.got) == 3


def test_a_forged_datagram_of_a_signed_stream_is_counted_as_bad_mac() -> None:
    h = Harness("test_incoming.Reading", key=KEY)
    first, second = reading_datagrams(packer(key=KEY), 6)
    h.feed(first)
    forged = bytearray(second)
    forged[-20] ^= 0x01  # a payload byte: the header still matches the stream
    h.feed(bytes(forged))
    assert [kind for kind, _ in h.bad] == ["bad_mac"]
    h.feed(second)
    assert [i.seq for _, i in h.got] == list(range(6))


def test_own_datagrams_are_ignored_also_once_remembered() -> None:
    h = Harness("test_incoming.Reading")
    h.feed(*reading_datagrams(packer(node_id=OURS), 9))
    assert h.got == [] and not h.bad and h.incoming.received == 0


def test_unsubscribed_types_are_dropped_without_a_tracker() -> None:
    h = Harness("other.Type")
    h.feed(*reading_datagrams(packer(), 6))
    assert h.got == [] and len(h.sequences) == 0


def test_an_evicted_tracker_is_never_updated_through_a_remembered_stream() -> None:
    h = Harness("test_incoming.Reading", max_entries=1)
    a, b = packer(node_id=PEER), packer(node_id=b"\x02" * 8)
    a1, a2 = reading_datagrams(a, 6)
    b1, _ = reading_datagrams(b, 6)
    h.feed(a1, b1)  # b's tracker evicts a's
    assert h.incoming._streams == {}
    h.feed(a2)
    stats = h.sequences.peek(PEER, "test_incoming.Reading")
    assert stats is not None and stats.received == 3  # a fresh tracker, in the table


def test_a_type_registered_after_its_first_datagram_decodes_into_its_class() -> None:
    name = "test_incoming.Late"
    pk = Packer(node_id=PEER, type_name=name, fingerprint=b"L" * 8, boot=1)
    h = Harness(name)
    assert pk.add(cbor2.dumps({"a": 1}), 1)  # {"a": 1} as a Record: no class registered yet
    h.feed(pk.build())
    assert type(h.got[0][0]).__name__ == "Record"
    @message(name)
    @dataclass
    class Late:
        a: int

    assert pk.add(cbor2.dumps({"a": 2}), 2)
    h.feed(pk.build())
    assert h.got[1][0] == Late(2)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=5),
       st.sampled_from([None, KEY]), st.data())
def test_decode_batch_accepts_and_refuses_exactly_what_decode_fields_does(
        payloads: list[bytes], key: bytes | None, data: st.DataObject) -> None:
    pk = packer(key=key)
    for i, payload in enumerate(payloads):
        assert pk.add(payload, 5_000 + i * 3)
    datagram = bytearray(pk.build())
    pos = 25 + datagram[24]
    # Mutate only the batch part: the header stays the known stream's.
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(pos, len(datagram) - 1))
        datagram[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(pos, len(datagram)))
    candidate = bytes(datagram[:cut])
    try:
        full: object = decode_fields(candidate, key)[3:6]
    except DecodeError:
        full = "refused"
    h = Harness(key=key)  # no subscriber: only datagram-level errors are counted
    h.feed(bytes(pk.build_one(b"\x01", 1)))  # make the stream known (seq after the batch)
    assert len(h.incoming._streams) == 1
    end = len(candidate) - (16 if key else 0)
    if key is None:
        try:
            short: object = tuple(decode_batch(candidate, pos, end))
        except DecodeError:
            short = "refused"
        assert short == (full if full == "refused" else tuple(full))  # type: ignore[arg-type]
    before = len(h.bad)
    h.feed(candidate)
    assert (len(h.bad) > before) == (full == "refused")


# -- coalesced runs (UDP_GRO): on_run gives what on_datagram gives for each ----------


@message("test_incoming.Fixed")
@dataclass
class Fixed:
    value: float
    tag: bytes


FIXED = "test_incoming.Fixed"
#: Same length as FIXED, so its lone datagrams have the same size; nobody subscribes.
OTHER = "test_incoming.Fixe2"


def lone(node_id: bytes, seq: int, value: float, *, name: str = FIXED, boot: int = 7) -> bytes:
    """A datagram with one Fixed message numbered ``seq`` (every one the same size)."""
    pk = Packer(node_id=node_id, type_name=name, fingerprint=type_of(Fixed).fingerprint,
                first_seq=seq, boot=boot)
    return pk.build_one(encode_message(Fixed(value, b"\x00\x01\x02\x03"), type_of(Fixed)),
                        1_000_000 + seq)


def outcome(h: Harness) -> tuple[Any, ...]:
    """What a harness delivered and counted, receive times left out (a batch shares one)."""
    got = [(m, i._replace(received_ns=0)) for m, i in h.got]
    stats = {(s, t): h.sequences.peek(s, t) for s in (PEER, b"\x02" * 8) for t in (FIXED, OTHER)}
    return got, h.bad, h.incoming.received, stats


# A datagram: (sender, seq step, kind): kind 0 ordinary, 1 own, 2 other type,
# 3 a corrupted payload byte, 4 another sender.
steps = st.lists(st.tuples(st.integers(-3, 4), st.integers(0, 4)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(0, 3))
def test_a_run_delivers_and_counts_what_its_datagrams_would_alone(
        plan: list[tuple[int, int]], warm: int) -> None:
    datagrams = [lone(PEER, 100 + i, float(i)) for i in range(warm)]  # a stream known first
    seq = 100 + warm
    for step, kind in plan:
        seq = max(0, seq + step)
        if kind == 1:
            datagrams.append(lone(OURS, seq, 1.5))
        elif kind == 2:
            datagrams.append(lone(PEER, seq, 2.5, name=OTHER))
        elif kind == 3:
            bad = bytearray(lone(PEER, seq, 3.5))
            bad[-5] = 0xFF  # inside the tag's head or bytes: not a valid Fixed any more
            datagrams.append(bytes(bad))
        elif kind == 4:
            datagrams.append(lone(b"\x02" * 8, seq, 4.5))
        else:
            datagrams.append(lone(PEER, seq, float(seq)))
    size = len(datagrams[0])
    assert all(len(d) == size for d in datagrams)
    alone, together = Harness(FIXED), Harness(FIXED)
    alone.feed(*datagrams)
    assert together.incoming.on_run(b"".join(datagrams), size, SOURCE, 0.0) == len(datagrams)
    assert outcome(together) == outcome(alone)


def test_a_run_may_end_with_a_shorter_datagram_and_mix_in_batches() -> None:
    pk = Packer(node_id=PEER, type_name=FIXED, fingerprint=type_of(Fixed).fingerprint,
                first_seq=10, boot=7)
    mtype = type_of(Fixed)
    one = [pk.build_one(encode_message(Fixed(float(i), b"abcd"), mtype), 5 + i) for i in range(4)]
    pk.add(encode_message(Fixed(9.0, b"ab"), mtype), 20)
    short = pk.build()  # seq 14, a shorter payload: a shorter datagram can end a run
    assert len(short) < len(one[0])
    alone, together = Harness(FIXED), Harness(FIXED)
    alone.feed(*one, short)
    assert together.incoming.on_run(b"".join([*one, short]), len(one[0]), SOURCE, 0.0) == 5
    assert outcome(together) == outcome(alone)
    assert [i.seq for _m, i in together.got] == [10, 11, 12, 13, 14]


def test_signed_runs_check_every_datagrams_mac() -> None:
    pk = Packer(node_id=PEER, type_name=FIXED, fingerprint=type_of(Fixed).fingerprint,
                boot=7, key=KEY)
    mtype = type_of(Fixed)
    datagrams = [pk.build_one(encode_message(Fixed(float(i), b"abcd"), mtype), 5 + i)
                 for i in range(5)]
    forged = bytearray(datagrams[2])
    forged[-20] ^= 1
    datagrams[2] = bytes(forged)
    alone, together = Harness(FIXED, key=KEY), Harness(FIXED, key=KEY)
    alone.feed(*datagrams)
    together.incoming.on_run(b"".join(datagrams), len(datagrams[0]), SOURCE, 0.0)
    assert outcome(together) == outcome(alone)
    assert [kind for kind, _ in together.bad] == ["bad_mac"]
    assert [i.seq for _m, i in together.got] == [0, 1, 3, 4]
