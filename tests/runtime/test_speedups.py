"""The compiled receive path (ganglion._speedups) against its pure-Python reference.

Every test sends real datagrams over a loopback UDP socket and lets the compiled
``drain`` read them into an ``Incoming`` (its lane taking what it can), then feeds
the same datagrams to a second ``Incoming`` through the Python ``on_datagram``, and
compares what both delivered and counted. Skipped where the module was not built;
``GANGLION_SPEEDUPS=require`` (the test command sets it) turns a missing build into
an import failure instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import socket
from dataclasses import dataclass

import pytest
from _lane_harness import (
    KEY,
    KEYINGS,
    KINDS,
    OTHER_PEER,
    OURS,
    PEER,
    SAMPLE,
    Harness,
    Sample,
    Sender,
    Wire,
    common,
    compare,
    received,
    sample_datagram,
    sample_packer,
    speedups,
    unusual,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.runtime import _accel, _sockets
from ganglion.runtime.endpoint import Endpoint
from ganglion.types import encode_message, message, type_of
from ganglion.types._decodegen import native_plan
from ganglion.wire import Packer
from ganglion.wire._envelope import MAX_BATCH
from ganglion.wire._packer import FULL, HEAD_MAX

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(speedups is None, reason="ganglion._speedups is not built")]


@message("test_speedups.Late")
@dataclass(kw_only=True)
class Late:
    a: int
    b: str = ""


LATE = "test_speedups.Late"


def test_a_known_streams_lone_messages_take_the_lane_and_arrive_whole(wire: Wire) -> None:
    samples = [Sample(n, n / 3, n % 2 == 0, f"é{n}", bytes([n]) * n) for n in range(40)]
    datagrams = [sample_datagram(100 + i, s) for i, s in enumerate(samples)]
    calls: list[str] = []
    compiled = Harness(SAMPLE)
    for name in ("_deliver_one", "_deliver"):
        python = getattr(compiled.incoming, name)
        setattr(compiled.incoming, name,
                lambda *a, name=name, python=python: (calls.append(name), python(*a)))
    wire.send(*datagrams)
    wire.drain(compiled)
    assert [m for m, _i in compiled.got] == samples
    assert calls == ["_deliver"]  # the first through the full decoder, the rest in the lane
    assert [i.seq for _m, i in compiled.got] == list(range(100, 140))
    info = compiled.got[5][1]
    assert info.source == wire.source and info.sender == PEER and info.boot == 7
    assert info.type_name == SAMPLE and info.sent_ns == 1_000_105
    assert wire.counts[:3] == [40, sum(map(len, datagrams)), 1]


# Values the plan reads and values it leaves to Python (which must then give the same).
ints = st.one_of(st.integers(-(2**64), 2**64 - 1), st.sampled_from([0, 23, 24, -24, -25, 2**63,
                                                                      -(2**63), -(2**63) - 1]))
samples = st.builds(Sample, ints, st.floats(allow_nan=False), st.booleans(),
                    st.text(max_size=40).filter(lambda t: t != "refuse"),
                    st.binary(max_size=300))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 4), st.integers(0, 10), samples), min_size=1,
                max_size=30), st.integers(0, 3), st.sampled_from(KINDS))
def test_the_compiled_path_delivers_and_counts_what_python_does(
        plan: list[tuple[int, int, Sample]], warm: int, kind_of: type) -> None:
    # The same fields in classes the lane builds differently (called, or set field by
    # field through __setattr__ or object.__setattr__).
    plan = [(step, kind, kind_of(*dataclasses.astuple(sample))) for step, kind, sample in plan]
    name = type_of(kind_of).name
    datagrams = [sample_datagram(50 + i, kind_of(i, 0.5, True, "w", b"")) for i in range(warm)]
    seq = 50 + warm
    for step, kind, sample in plan:
        seq = max(0, seq + step)
        if kind == 1:
            datagrams.append(sample_datagram(seq, sample, node_id=OURS))
        elif kind == 2:
            datagrams.append(sample_datagram(seq, sample, name="test_speedups.Nobody"))
        elif kind == 3:
            bad = bytearray(sample_datagram(seq, sample))
            bad[-1 - seq % 8] ^= 0xFF  # a corrupted payload byte
            datagrams.append(bytes(bad))
        elif kind == 4:
            datagrams.append(sample_datagram(seq, sample, node_id=OTHER_PEER))
        elif kind == 5:
            datagrams.append(sample_datagram(seq, sample, boot=8 + seq % 2))  # a reboot
        elif kind == 6:
            datagrams.append(sample_datagram(seq, sample, refused=True))
        elif kind == 8:
            # Several messages in one datagram, at assorted times (the batch path).
            pk = Packer(node_id=PEER, type_name=name, fingerprint=type_of(kind_of).fingerprint,
                        first_seq=seq, boot=7)
            for k in range(2 + seq % 4):
                ts = 1_000_000 + seq * 100 + (k * 37 if seq % 3 else -k * 5)
                pk.add(encode_message(dataclasses.replace(sample, n=k), type_of(kind_of)),
                       max(ts, 0))
            datagrams.append(pk.build())
            seq += 1 + seq % 4
        elif kind == 9:
            datagrams.append(sample_datagram(seq, sample) + b"\x00")  # a stray byte at the end
        elif kind == 7:
            # One message, but not at the base time (the encoder never writes this):
            # the batch decoder's case, with its own timestamp.
            odd = bytearray(sample_datagram(seq, sample))
            odd[25 + odd[24] + 18] = 2 * (1 + seq % 50)
            datagrams.append(bytes(odd))
        else:
            datagrams.append(sample_datagram(seq, sample))
    wire = Wire()
    try:
        compare(wire, datagrams, name, raising=bool(warm % 2))
    finally:
        wire.close()


def test_str_that_is_not_utf8_is_left_to_the_full_decoder_and_counted(wire: Wire) -> None:
    good = [sample_datagram(i, Sample(i, 1.0, False, "abc", b"")) for i in range(3)]
    bad = bytearray(sample_datagram(3, Sample(3, 1.0, False, "abc", b"")))
    bad[bad.index(b"abc")] = 0xFF
    compiled, _ = compare(wire, [*good, bytes(bad), *good[:1]], SAMPLE)
    assert [kind for kind, _ in compiled.bad] == ["decode_errors"]


def test_a_class_that_refuses_its_values_is_decoded_by_the_full_decoder(wire: Wire) -> None:
    datagrams = [sample_datagram(i, Sample(i, 1.0, False, "fine", b"")) for i in range(3)]
    datagrams.append(sample_datagram(3, Sample(3, 1.0, False, "", b""), refused=True))
    compiled, _ = compare(wire, datagrams, SAMPLE)
    assert [kind for kind, _ in compiled.bad] == ["decode_errors"]
    assert len(compiled.got) == 3


def test_keyword_only_classes_are_called_by_keyword(wire: Wire) -> None:
    plan = native_plan(Late, (("a", "int"), ("b", "str")))
    assert plan is not None and plan[3] == 0 and plan[4] == ("a", "b")
    pk = Packer(node_id=PEER, type_name=LATE, fingerprint=type_of(Late).fingerprint, boot=1)
    datagrams = [pk.build_one(encode_message(Late(a=i, b=str(i)), type_of(Late)), 5 + i)
                 for i in range(5)]
    compiled, _ = compare(wire, datagrams, LATE)
    assert [m for m, _i in compiled.got] == [Late(a=i, b=str(i)) for i in range(5)]


@pytest.mark.parametrize("keying", ["mac", "aead"])
def test_keyed_streams_take_the_lane_once_verified_and_forgeries_are_counted(
        wire: Wire, keying: str) -> None:
    datagrams = [sample_datagram(i, Sample(i, 1.0, True, "s", b""), keying=keying)
                 for i in range(6)]
    forged = bytearray(datagrams[3])
    forged[-20] ^= 1  # a payload byte (signed) or a ciphertext byte (encrypted)
    datagrams.insert(3, bytes(forged))  # before the genuine one
    calls: list[str] = []
    compiled = Harness(SAMPLE, key=KEY)
    for name in ("_deliver_one", "_deliver", "_on_new", "_on_known"):
        python = getattr(compiled.incoming, name)
        setattr(compiled.incoming, name,
                lambda *a, name=name, python=python: (calls.append(name), python(*a)))
    wire.send(*datagrams)
    wire.drain(compiled)
    # The first through the full decoder, the forgery back to it (it counts it), the
    # rest verified, decrypted and delivered in the lane.
    assert calls == ["_on_new", "_deliver", "_on_new"]
    assert [kind for kind, _ in compiled.bad] == ["bad_mac"]
    assert [i.seq for _m, i in compiled.got] == [0, 1, 2, 3, 4, 5]
    compare(wire, datagrams, SAMPLE, key=KEY)


def test_a_type_registered_again_midstream_gets_its_new_decoders(wire: Wire) -> None:
    compiled = Harness("test_speedups.Again")

    def again() -> type:
        @message("test_speedups.Again")
        @dataclass
        class Again:
            v: int
        Again.__module__ = __name__
        return Again

    first = again()
    pk = Packer(node_id=PEER, type_name="test_speedups.Again",
                fingerprint=type_of(first).fingerprint, boot=1)
    wire.send(*(pk.build_one(encode_message(first(i), type_of(first)), 5 + i) for i in range(3)))
    wire.drain(compiled)
    second = again()  # a module reload: same name and schema, a new class
    assert second is not first
    wire.send(*(pk.build_one(encode_message(second(i), type_of(second)), 9 + i)
                for i in range(3)))
    wire.drain(compiled)
    assert [type(m) for m, _i in compiled.got] == [first] * 3 + [second] * 3


def test_unsubscribing_midstream_stops_deliveries_in_the_lane(wire: Wire) -> None:
    compiled = Harness(SAMPLE)
    wire.send(*(sample_datagram(i, Sample(i, 1.0, True, "u", b"")) for i in range(3)))
    wire.drain(compiled)
    compiled.subs[SAMPLE].clear()
    wire.send(*(sample_datagram(i, Sample(i, 1.0, True, "u", b"")) for i in range(3, 6)))
    wire.drain(compiled)
    assert len(compiled.got) == 3 and compiled.incoming.received == 3


def test_the_drain_stops_at_its_limit_and_counts_like_the_python_drain(wire: Wire) -> None:
    seen: list[bytes] = []
    wire.send(*(bytes([i]) * (10 + i) for i in range(5)))
    wire.drain(None, limit=2, on_datagram=lambda d, src, now: seen.append(d))
    assert seen == [b"\x00" * 10, b"\x01" * 11]
    assert wire.counts == [2, 21, 1, 2, 1, 0]  # datagrams, bytes, drains, max, full, runs
    wire.drain(None, on_datagram=lambda d, src, now: seen.append(d))
    assert len(seen) == 5 and wire.counts == [5, 21 + 12 + 13 + 14, 2, 3, 1, 0]


def test_the_drain_stops_when_a_callback_closes_the_socket(wire: Wire) -> None:
    seen: list[bytes] = []

    def close(data: bytes, source: object, now: float) -> None:
        seen.append(data)
        wire.slot.closed = True

    wire.send(b"one", b"two")
    wire.drain(None, on_datagram=close)
    assert seen == [b"one"]


def test_callback_errors_are_reported_and_the_drain_goes_on(wire: Wire) -> None:
    seen: list[bytes] = []

    def flaky(data: bytes, source: object, now: float) -> None:
        seen.append(data)
        if data == b"bad":
            raise ValueError("this one")

    wire.send(b"ok", b"bad", b"ok2")
    wire.drain(None, on_datagram=flaky)
    assert seen == [b"ok", b"bad", b"ok2"]
    [(kind, exc)] = wire.reports
    assert kind == "callback" and isinstance(exc, ValueError) and str(exc) == "this one"


def test_keyboard_interrupt_in_a_callback_is_not_swallowed(wire: Wire) -> None:
    def interrupt(data: bytes, source: object, now: float) -> None:
        raise KeyboardInterrupt

    wire.send(b"x")
    with pytest.raises(KeyboardInterrupt):
        wire.drain(None, on_datagram=interrupt)
    assert wire.reports == []


def test_a_failed_read_is_reported_as_a_receive_error(wire: Wire) -> None:
    fd = wire.rx.detach()
    socket.close(fd)  # the number is now invalid: recvmsg fails with EBADF
    speedups.drain(fd, wire.slot, 10, wire.buffer, None, None, None, lambda: 0.0,
                   lambda kind, detail: wire.reports.append((kind, detail)), wire.counts, 65535,
                   0)
    [(kind, exc)] = wire.reports
    assert kind == "receive" and isinstance(exc, OSError)
    wire.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # for the fixture's close


def test_bad_arguments_are_refused(wire: Wire) -> None:
    with pytest.raises(ValueError, match="bytearray"):
        speedups.drain(wire.rx.fileno(), wire.slot, 1, bytearray(10), None, None, None,
                       None, None, wire.counts, 65535, 0)
    with pytest.raises(TypeError, match="Lane"):
        speedups.drain(wire.rx.fileno(), wire.slot, 1, wire.buffer, object(), None, None,
                       None, None, wire.counts, 65535, 0)
    with pytest.raises(TypeError):
        speedups.Lane(None, {}, {}, {}, int, None, object, object)  # not a tuple subclass


def test_loading_honours_the_environment_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _accel.load("off") is None
    assert _accel.load("require") is speedups
    assert _accel.load("auto") is speedups
    with pytest.raises(ValueError, match="GANGLION_SPEEDUPS"):
        _accel.load("fast")
    monkeypatch.setattr(speedups, "ABI", _accel.ABI + 1)
    assert _accel.load("auto") is None
    with pytest.raises(ImportError, match="stale"):
        _accel.load("require")


# -- the send lane: send_lone against Packer.build_one(encode_message(...)) -----------------


def send(wire: Wire, sender: Sender, packer: Packer, msg: object, ts: int = 123_456_789,
         max_payload: int = 1300) -> tuple[bytes, int] | None:
    assert speedups is not None
    plan = type_of(Sample).plan
    assert plan is not None
    host, port = wire.rx.getsockname()
    return speedups.send_lone(sender, host, port, packer, ts, msg, plan, max_payload, True)


@pytest.mark.parametrize("keying", KEYINGS)
@settings(max_examples=100, deadline=None)
@given(common)
def test_the_send_lane_sends_what_build_one_would_and_numbers_it(keying: str,
                                                                 sample: Sample) -> None:
    # Signed and encrypted too: the lane builds the datagram in clear and has the
    # packer's _seal sign or encrypt it (the session is fixed: the same bytes).
    wire = Wire()
    try:
        lane, reference = sample_packer(keying=keying), sample_packer(keying=keying)
        sent = send(wire, Sender(wire.tx), lane, sample)
        payload = encode_message(sample, type_of(Sample))
        expected = reference.build_one(payload, 123_456_789)
        assert sent == (payload, len(expected))
        assert received(wire) == [expected]
        assert (lane._seq, lane.next_seq) == (reference._seq, reference.next_seq) == (11, 11)
    finally:
        wire.close()


@settings(max_examples=100, deadline=None)
@given(unusual)
def test_the_send_lane_leaves_every_other_value_to_python(sample: Sample) -> None:
    wire = Wire()
    try:
        packer = sample_packer()
        assert send(wire, Sender(wire.tx), packer, sample) is None
        assert received(wire) == [] and (packer._seq, packer.next_seq) == (10, 10)
    finally:
        wire.close()


def test_the_send_lane_does_nothing_unless_it_is_the_plain_idle_case(wire: Wire) -> None:
    sample = Sample(1, 2.0, True, "x", b"y")
    queued = Sender(wire.tx)
    queued._queue.append(object())  # something waits: it must leave first
    waiting = sample_packer()
    waiting.add(encode_message(sample, type_of(Sample)), 5)
    closed = Sender(wire.tx)
    closed._sock = None

    class Subclass(Sample):
        pass

    for sender, packer, msg, max_payload in [
            (queued, sample_packer(), sample, 1300),
            (Sender(wire.tx), waiting, sample, 1300),
            (closed, sample_packer(), sample, 1300),
            (Sender(wire.tx), sample_packer(), Subclass(1, 2.0, True, "x", b"y"), 1300),
            (Sender(wire.tx), sample_packer(), Sample(1, 2.0, True, "x", bytes(200)), 100),
            (Sender(wire.tx), sample_packer(first_seq=2**64 - 1), sample, 1300)]:
        before = (packer._seq, packer.next_seq, packer.count)
        assert send(wire, sender, packer, msg, max_payload=max_payload) is None
        assert (packer._seq, packer.next_seq, packer.count) == before
    assert received(wire) == []


def test_an_idle_endpoint_publishes_through_the_send_lane(
        monkeypatch: pytest.MonkeyPatch, multicast_loopback: str, free_udp_port: int) -> None:
    got: list[Sample] = []

    async def main() -> None:
        async with Endpoint(interface=multicast_loopback, port=free_udp_port) as rx, \
                Endpoint(interface=multicast_loopback, port=free_udp_port) as tx:
            rx.subscribe(Sample, callback=lambda m, i: got.append(m))
            await asyncio.sleep(0.1)
            first = Sample(0, 0.5, True, "first", b"")
            tx.publish(first)  # the first one makes the route
            await asyncio.sleep(0.05)

            def refuse(*args: object) -> bytes:
                raise AssertionError("the send lane should have sent this")

            monkeypatch.setattr(Packer, "build_one", refuse)
            samples = [Sample(i, i / 4, i % 2 == 0, f"s{i}", bytes(i)) for i in range(1, 6)]
            for sample in samples:
                tx.publish(sample)
                await asyncio.sleep(0.02)  # idle again before the next
            for _ in range(250):
                if len(got) == 6:
                    break
                await asyncio.sleep(0.02)
            assert got == [first, *samples]
            assert tx.stats().sender.sent == 6

    asyncio.run(asyncio.wait_for(main(), 15))


# -- the batch lane: batch_add against Packer.add(encode_message(...)) ----------------------


def test_the_batch_lane_uses_the_wire_formats_limits() -> None:
    assert speedups is not None
    assert (speedups.MAX_BATCH, speedups.HEAD_MAX) == (MAX_BATCH, HEAD_MAX)


def add_building(packer: Packer, payload: bytes, ts: int, out: list[bytes]) -> int:
    """packer.add, building the datagram into ``out`` when it is full; add's answer."""
    added = packer.add(payload, ts)
    if not added:
        out.append(packer.build())
        added = packer.add(payload, ts)
    if added == FULL:
        out.append(packer.build())
    return added


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.one_of(common, unusual), st.integers(0, 0x2100)), min_size=1,
                max_size=40), st.sampled_from([None, KEY]), st.sampled_from([300, 1400]))
def test_the_batch_lane_adds_what_packer_add_would(
        steps: list[tuple[Sample, int]], key: bytes | None, max_datagram: int) -> None:
    """Fill two packers with the same messages, one through batch_add where it takes
    them and packer.add otherwise, the other through packer.add only: the same
    datagrams come out, and the lane's answers are add's."""
    assert speedups is not None
    plan = type_of(Sample).plan
    mtype = type_of(Sample)

    def make() -> Packer:
        return Packer(node_id=PEER, type_name=SAMPLE, fingerprint=mtype.fingerprint, boot=3,
                      key=key, max_datagram=max_datagram)

    lane, reference = make(), make()
    lane_out: list[bytes] = []
    ref_out: list[bytes] = []
    ts = 1_000_000
    for sample, step in steps:
        ts += step
        try:
            payload = encode_message(sample, mtype)
        except Exception:
            # Python refuses it: so must the lane, leaving the packer as it was.
            before = (lane.count, lane.next_seq)
            assert speedups.batch_add(lane, ts, sample, plan, 10_000) is None
            assert (lane.count, lane.next_seq) == before
            continue
        if len(payload) > lane.limit:
            continue
        # The reference: packer.add, building when it is full.
        expected = add_building(reference, payload, ts, ref_out)
        # The lane where it takes the message, packer.add where it does not.
        done = speedups.batch_add(lane, ts, sample, plan, 10_000) if lane.count else None
        if done is None:
            add_building(lane, payload, ts, lane_out)
        else:
            assert done[0] == payload and done[1] == (expected == FULL)
            if done[1]:
                lane_out.append(lane.build())
        assert (lane.count, lane.next_seq, lane._size) == \
            (reference.count, reference.next_seq, reference._size)
    if lane.count:
        lane_out.append(lane.build())
    if reference.count:
        ref_out.append(reference.build())
    assert lane_out == ref_out


def test_the_batch_lane_takes_the_common_case() -> None:
    assert speedups is not None
    plan = type_of(Sample).plan
    packer = sample_packer()
    packer.add(encode_message(Sample(0, 0.0, True, "a", b""), type_of(Sample)), 100)
    for i in range(1, 10):
        done = speedups.batch_add(packer, 100 + i, Sample(i, 1.0, True, "a", b""), plan, 1300)
        assert done is not None and done[1] is False
    assert packer.count == 10
    # Empty, or a delta of three bytes: left to packer.add.
    empty = sample_packer()
    assert speedups.batch_add(empty, 100, Sample(1, 1.0, True, "a", b""), plan, 1300) is None
    assert speedups.batch_add(packer, 100 + 9 + 0x2000, Sample(1, 1.0, True, "a", b""), plan,
                              1300) is None
    assert packer.count == 10


def test_the_batch_lane_says_full_exactly_when_packer_add_does() -> None:
    assert speedups is not None
    plan = type_of(Sample).plan
    mtype = type_of(Sample)
    for extra, max_datagram in itertools.product(range(0, 60, 3), range(300, 1400, 37)):
        # Message and datagram sizes that end a datagram every way they can.
        sample = Sample(7, 1.5, True, "x", bytes(extra))
        payload = encode_message(sample, mtype)
        lane, reference = (Packer(node_id=PEER, type_name=SAMPLE, fingerprint=mtype.fingerprint,
                                  max_datagram=max_datagram) for _ in range(2))
        lane.add(payload, 10)
        reference.add(payload, 10)
        for i in range(1, 200):
            expected = reference.add(payload, 10 + i)
            done = speedups.batch_add(lane, 10 + i, sample, plan, 1300)
            if not expected:
                assert done is None
                break
            assert done is not None and done[1] == (expected == FULL), (extra, i)
            if expected == FULL:
                break
        assert lane.build() == reference.build()


def test_a_coalesced_run_goes_through_the_lane_datagram_by_datagram(wire: Wire) -> None:
    if not _sockets.enable_gro(wire.rx) or not _sockets.gso_available(wire.tx):
        pytest.skip("no UDP_GRO / UDP_SEGMENT here")
    same = [sample_datagram(100 + i, Sample(i, 1.0, True, "abc", b"xyz")) for i in range(10)]
    bad = bytearray(sample_datagram(110, Sample(10, 1.0, True, "abc", b"xyz")))
    bad[bad.index(b"abc") - 1] = 0x7F  # the label's head: an indefinite-length text
    other = sample_datagram(5, Sample(11, 1.0, True, "abc", b"xyz"), node_id=OTHER_PEER)
    datagrams = [*same[:1], *same[1:6], bytes(bad), other, *same[6:]]
    size = len(datagrams[0])
    assert all(len(d) == size for d in datagrams)
    compiled, reference = Harness(SAMPLE), Harness(SAMPLE)
    wire.send(datagrams[0])  # the stream becomes known first
    wire.drain(compiled)
    wire.tx.sendmsg([b"".join(datagrams[1:])], _sockets.gso_cmsg(size), 0,
                    wire.rx.getsockname())
    wire.drain(compiled)
    assert wire.counts[5] == len(datagrams) - 1  # read as one coalesced run
    for datagram in datagrams:
        reference.incoming.on_datagram(datagram, wire.source, 0.0)
    assert compiled.outcome() == reference.outcome()
    assert len(compiled.got) == 11 and len(compiled.bad) == 1
