"""Replayed messages carry their origin to subscribers (issue 20, defect 9).

The replayer sends under its own id, boot and numbers (its stream is tracked like any
other); each message's origin, after its fields, becomes the MessageInfo subscribers
see. A replayed datagram without origins (an older replayer) is delivered as before,
and an older receiver, which ignores what follows a payload's map, gets the readings.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from _lane_harness import PEER, SAMPLE, Harness, Sample, Wire, compare, speedups

from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.replayed import ReplayedRecord
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import Record, encode_message, type_of
from ganglion.wire import Origin, Packer, encode_origin

pytestmark = pytest.mark.timeout(60)

ORIGINAL = bytes.fromhex("a1a2a3a4a5a6a7a8")
OTHER = bytes.fromhex("b1b2b3b4b5b6b7b8")


def _sample(i: int) -> Sample:
    return Sample(i, 0.5 * i, True, f"s{i}", b"r")


def _origin(i: int) -> Origin:
    return Origin(ORIGINAL if i % 2 else OTHER, 40 + i % 2, 1000 + i, 1_600_000_000_000_000_000 + i,
                  last_value=i == 3, clock_synced=i != 4)


def _datagrams(count: int, *, replayed: bool = True, with_origin: bool = True,
               batch: int = 1) -> list[bytes]:
    """Datagrams of ``count`` Samples from PEER (the replayer), ``batch`` per datagram."""
    mtype = type_of(Sample)
    pk = Packer(node_id=PEER, type_name=SAMPLE, fingerprint=mtype.fingerprint, first_seq=0,
                boot=7, replayed=replayed)
    out = []
    for at in range(0, count, batch):
        for i in range(at, min(at + batch, count)):
            payload = encode_message(_sample(i), mtype)
            pk.add(payload + encode_origin(_origin(i)) if with_origin else payload, 5_000 + i)
        out.append(pk.build())
    return out


@pytest.mark.parametrize("batch", [1, 3])
def test_subscribers_see_the_original_sender_numbers_times_and_flags(batch: int) -> None:
    h = Harness(SAMPLE)
    for datagram in _datagrams(6, batch=batch):
        h.incoming.on_datagram(datagram, ("10.0.0.9", 47800), 0.0)
    assert [m for m, _ in h.got] == [_sample(i) for i in range(6)]
    for i, (_, info) in enumerate(h.got):
        origin = _origin(i)
        assert (info.sender, info.boot, info.seq, info.sent_ns) == \
            (origin.node_id, origin.boot, origin.seq, origin.sent_ns)
        assert info.last_value == (i == 3) and info.clock_synced == (i != 4)
        assert info.replayed and not info.local and info.source == ("10.0.0.9", 47800)
        assert info.fingerprint == type_of(Sample).fingerprint
    # The transport is the replayer's: its stream is the one tracked.
    assert set(h.sequences.stats()) == {(PEER, SAMPLE)}
    assert h.sequences.stats()[(PEER, SAMPLE)].received == 6


def test_the_replayers_duplicates_are_still_dropped() -> None:
    h = Harness(SAMPLE)
    datagrams = _datagrams(3)
    for datagram in datagrams + datagrams[1:2]:
        h.incoming.on_datagram(datagram, ("10.0.0.9", 47800), 0.0)
    assert [i.seq for _, i in h.got] == [1000, 1001, 1002]


def test_a_replayed_datagram_without_origins_is_the_replayers_own() -> None:
    h = Harness(SAMPLE)
    for datagram in _datagrams(3, with_origin=False):
        h.incoming.on_datagram(datagram, ("10.0.0.9", 47800), 0.0)
    assert [m for m, _ in h.got] == [_sample(i) for i in range(3)]
    assert [(i.sender, i.boot, i.seq, i.sent_ns, i.replayed) for _, i in h.got] == \
        [(PEER, 7, i, 5_000 + i, True) for i in range(3)]


@pytest.mark.skipif(speedups is None, reason="ganglion._speedups is not built")
def test_the_compiled_drain_delivers_replayed_datagrams_as_python_does(wire: Wire) -> None:
    compiled, _ = compare(wire, _datagrams(8) + _datagrams(6, batch=3)[2:], SAMPLE)
    assert [i.sender for _, i in compiled.got[:2]] == [OTHER, ORIGINAL]


@pytest.mark.skipif(speedups is None, reason="ganglion._speedups is not built")
def test_an_older_receivers_compiled_lane_reads_messages_with_an_origin(wire: Wire) -> None:
    """An older node gives a replayed stream to its compiled lane; bytes after a payload's
    map must not cost it the reading. Here a live stream carries them (this node's lane
    takes live streams only), which is what an older lane sees."""
    compiled, _ = compare(wire, _datagrams(5, replayed=False), SAMPLE)
    assert [m for m, _ in compiled.got] == [_sample(i) for i in range(5)]
    assert [(i.sender, i.seq, i.replayed) for _, i in compiled.got] == \
        [(PEER, i, False) for i in range(5)]


def test_a_replaying_endpoint_sends_origins_and_logged_fingerprints(free_udp_port: int,
                                                                    test_group: str) -> None:
    """Over loopback: the fields' version travels as logged, the origin as the row says."""
    logged_fp = bytes.fromhex("0102030405060708")

    async def scenario() -> tuple[list[tuple[object, MessageInfo]], object]:
        got: list[tuple[object, MessageInfo]] = []
        arrived = asyncio.Event()

        def on(msg: object, info: MessageInfo) -> None:
            got.append((msg, info))
            if len(got) == 4:
                arrived.set()

        async with Endpoint(port=free_udp_port, group_for=lambda _n: test_group,
                            replay=True) as replayer, \
                Endpoint(port=free_udp_port, group_for=lambda _n: test_group) as receiver:
            receiver.subscribe("test_replay_origin.Old", callback=on)
            receiver.subscribe(SAMPLE, callback=on)
            for i in range(2):
                replayer.publish(ReplayedRecord("test_replay_origin.Old", {"v": i},
                                                origin=_origin(i), fingerprint=logged_fp))
                replayer.publish(ReplayedRecord(SAMPLE, dataclasses.asdict(_sample(i)),
                                                origin=_origin(i),
                                                fingerprint=type_of(Sample).fingerprint))
            await asyncio.wait_for(arrived.wait(), 10)
            last = replayer.last_published(SAMPLE)
        return got, last

    got, last = asyncio.run(scenario())
    old = [(m, i) for m, i in got if i.type_name == "test_replay_origin.Old"]
    assert [m for m, _ in old] == [Record("test_replay_origin.Old", {"v": i}) for i in range(2)]
    assert all(i.fingerprint == logged_fp for _, i in old)
    samples = [(m, i) for m, i in got if i.type_name == SAMPLE]
    assert [m for m, _ in samples] == [_sample(i) for i in range(2)]  # decoded into the class
    for msgs in (old, samples):
        assert [(i.sender, i.boot, i.seq, i.sent_ns, i.replayed) for _, i in msgs] == \
            [(o.node_id, o.boot, o.seq, o.sent_ns, True) for o in map(_origin, range(2))]
    assert last is None  # a replayer answers no late joiner: its readings are not current
