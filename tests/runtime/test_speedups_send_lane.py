"""A route's compiled send lane (``ganglion._speedups.SendLane``) against the Python steps
of ``Endpoint.publish`` it stands for.

The lane numbers a message as the endpoint's next number for its type, stamps it,
then sends it alone (as ``Packer.build_one`` and ``MulticastSender.send`` would) while
the endpoint is idle, or adds it to the datagram being filled (as ``Packer.add``)
under load; anything else it leaves to Python with nothing changed. Each test sends
real datagrams to a loopback socket and compares them with what the Python path
builds from the same message. Skipped where the module was not built.
"""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace
from typing import Any

import pytest
from _lane_harness import (
    KEYINGS,
    SAMPLE,
    Sample,
    Sender,
    Wire,
    common,
    received,
    sample_packer,
    speedups,
    unusual,
)
from hypothesis import given, settings

from ganglion.types import encode_message, type_of
from ganglion.wire import Packer
from ganglion.wire._packer import FULL

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(speedups is None, reason="ganglion._speedups is not built")]


class ByName:
    """A packer whose attributes are not slots: the lane reads and writes them by name."""

    def __init__(self, packer: Packer) -> None:
        object.__setattr__(self, "_packer", packer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._packer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._packer, name, value)


def make_lane(wire: Wire, packer: object, *, busy: bool = False, seq: int = 10,
              sender: Sender | None = None, max_payload: int = 1300,
              yield_cpu: bool = False) -> tuple[Any, dict[str, int], SimpleNamespace]:
    """A SendLane to ``wire``'s receiving socket, with the endpoint's state it reads."""
    assert speedups is not None
    plan = type_of(Sample).plan
    assert plan is not None
    host, port = wire.rx.getsockname()
    next_seq = {SAMPLE: seq}
    out = SimpleNamespace(busy=busy)
    lane = speedups.SendLane(next_seq, SAMPLE, sender or Sender(wire.tx), out, packer, host,
                             port, plan, max_payload, yield_cpu)
    return lane, next_seq, out


def state(packer: Packer) -> tuple[int, int, int, int, int, bytes]:
    return (packer._seq, packer.next_seq, packer.count, packer._size, packer._prev,
            bytes(packer._body))


@pytest.mark.parametrize("keying", KEYINGS)
@pytest.mark.parametrize("wrap", [lambda p: p, ByName], ids=["slots", "by-name"])
@settings(max_examples=60, deadline=None)
@given(sample=common)
def test_an_idle_lane_sends_alone_what_build_one_would(wrap: Any, keying: str,
                                                       sample: Sample) -> None:
    # Keyed: built in clear, then signed or encrypted once by the packer's _seal (the
    # session is fixed, so build_one gives the same bytes).
    wire = Wire()
    try:
        packer, reference = sample_packer(keying=keying), sample_packer(keying=keying)
        lane, _, _ = make_lane(wire, wrap(packer))
        before = time.time_ns()
        done = lane.publish(sample)
        assert done is not None
        payload, seq, now_ns, sent, full = done
        assert before <= now_ns <= time.time_ns()  # stamped now, on time.time_ns's clock
        expected = reference.build_one(encode_message(sample, type_of(Sample)), now_ns)
        assert (payload, seq, sent, full) == \
            (encode_message(sample, type_of(Sample)), 10, len(expected), False)
        assert received(wire) == [expected]
        assert state(packer) == state(reference)
    finally:
        wire.close()


@pytest.mark.parametrize("keying", KEYINGS)
@pytest.mark.parametrize("wrap", [lambda p: p, ByName], ids=["slots", "by-name"])
@settings(max_examples=60, deadline=None)
@given(sample=common)
def test_a_busy_lane_adds_what_packer_add_would(wrap: Any, keying: str, sample: Sample) -> None:
    wire = Wire()
    try:
        payload = encode_message(sample, type_of(Sample))
        first = encode_message(Sample(0, 0.0, True, "first", b""), type_of(Sample))
        # The lane joins a datagram only within 8 us (a two-byte delta) of its last
        # message; on a busy machine an attempt may take longer (then nothing happens).
        for _ in range(100):
            packer, reference = sample_packer(keying=keying), sample_packer(keying=keying)
            lane, _, _ = make_lane(wire, wrap(packer), busy=True, seq=11)
            ts = time.time_ns()
            packer.add(first, ts)
            done = lane.publish(sample)
            reference.add(first, ts)  # after: only the lane's packer races the clock
            if done is not None:
                break
            assert state(packer) == state(reference)
        else:
            pytest.fail("the lane never joined the open datagram")
        _, seq, now_ns, sent, full = done
        added = reference.add(payload, now_ns)
        assert (done[0], seq, sent, full) == (payload, 11, 0, added == FULL)
        assert state(packer) == state(reference)
        assert received(wire) == []  # adding sends nothing
        assert packer.build() == reference.build()  # signed or sealed alike
    finally:
        wire.close()


@settings(max_examples=60, deadline=None)
@given(unusual)
def test_a_lane_leaves_values_it_does_not_write_to_python(sample: Sample) -> None:
    wire = Wire()
    try:
        for busy in (False, True):
            packer = sample_packer()
            if busy:
                packer.add(encode_message(Sample(0, 0.0, True, "", b""), type_of(Sample)),
                           time.time_ns())
            lane, _, _ = make_lane(wire, packer, busy=busy, seq=packer.next_seq)
            before = state(packer)
            assert lane.publish(sample) is None
            assert state(packer) == before
        assert received(wire) == []
    finally:
        wire.close()


def test_a_lane_does_nothing_unless_the_endpoint_and_packer_agree(wire: Wire) -> None:
    sample = Sample(1, 2.0, True, "x", b"y")
    queued = Sender(wire.tx)
    queued._queue.append(object())  # something waits: it must leave first
    closed = Sender(wire.tx)
    closed._sock = None
    cases: list[tuple[Packer, dict[str, Any]]] = [
        (sample_packer(), {"seq": 9}),  # numbers taken that were never sent
        (sample_packer(), {"seq": 11}),
        (sample_packer(), {"busy": True}),  # busy, but nothing to join
        (sample_packer(), {"sender": queued}),
        (sample_packer(), {"sender": closed}),
        (sample_packer(), {"max_payload": 10}),
    ]
    for packer, how in cases:
        lane, next_seq, _ = make_lane(wire, packer, **how)
        before = (state(packer), dict(next_seq))
        assert lane.publish(sample) is None, how
        assert (state(packer), dict(next_seq)) == before
    # A type the endpoint has not numbered yet (its defaultdict would make it 0).
    lane, next_seq, _ = make_lane(wire, sample_packer())
    next_seq.clear()
    assert lane.publish(sample) is None
    assert received(wire) == []


def test_a_lane_follows_the_senders_socket(wire: Wire) -> None:
    sender = Sender(wire.tx)
    packer = sample_packer()
    lane, next_seq, _ = make_lane(wire, packer, sender=sender, yield_cpu=True)
    assert lane.yields_cpu is True
    done = lane.publish(Sample(1, 1.0, True, "a", b""))
    assert done is not None and len(received(wire)) == 1
    next_seq[SAMPLE] += 1
    # Another socket: the datagram leaves from it (the lane keeps no stale descriptor).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", 0))
        sender._sock = other
        assert lane.publish(Sample(2, 1.0, True, "b", b"")) is not None
        next_seq[SAMPLE] += 1
        wire.rx.setblocking(True)
        wire.rx.settimeout(5)
        _, source = wire.rx.recvfrom(65536)
        wire.rx.setblocking(False)
        assert source == other.getsockname()
    sender._sock = None  # closed: Python's (which raises)
    assert lane.publish(Sample(3, 1.0, True, "c", b"")) is None
    assert (packer._seq, packer.next_seq) == (12, 12)


def test_a_lane_needs_an_ipv4_destination_and_a_plan(wire: Wire) -> None:
    assert speedups is not None
    plan = type_of(Sample).plan
    packer, sender, out = sample_packer(), Sender(wire.tx), SimpleNamespace(busy=False)
    with pytest.raises(ValueError, match="not an IPv4 destination"):
        speedups.SendLane({}, SAMPLE, sender, out, packer, "ff02::1", 5000, plan, 1300, False)
    with pytest.raises(ValueError, match="not an IPv4 destination"):
        speedups.SendLane({}, SAMPLE, sender, out, packer, "239.255.0.1", 0, plan, 1300, False)
    with pytest.raises(ValueError, match="not a plan"):
        speedups.SendLane({}, SAMPLE, sender, out, packer, "239.255.0.1", 5000, (), 1300, False)
    with pytest.raises(ValueError, match="not initialised"):
        speedups.SendLane.__new__(speedups.SendLane).publish(Sample(1, 1.0, True, "", b""))
