"""The compiled receive lane on keyed traffic (signed and encrypted) against the Python path.

A keyed stream's lane entry carries its opener: the lane verifies (and decrypts) each
datagram once, then reads the clear datagram as it reads an unsigned one; a datagram
that does not verify goes to the full decoder, which counts it. Every test sends real
datagrams over loopback to the compiled ``drain`` and feeds the same bytes to a second
``Incoming`` through the Python ``on_datagram``: both must deliver and count the same
(``received``, ``bad_mac``, ``decode_errors``, stale, duplicates, every tracker's state).
Skipped where the module was not built.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from _lane_harness import (
    KEY,
    OTHER_PEER,
    OURS,
    PEER,
    SAMPLE,
    Harness,
    Sample,
    Wire,
    compare,
    keyed_packer,
    sample_datagram,
    speedups,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.runtime import _sockets
from ganglion.runtime.endpoint import Endpoint
from ganglion.types import encode_message, type_of
from ganglion.wire import KeyRing, Packer
from ganglion.wire._aead import Opener
from ganglion.wire.keys import key_id

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(speedups is None, reason="ganglion._speedups is not built")]

OTHER_KEY = bytes(range(1, 33))
KINDS_OF_STEP = 17


def batch(keying: str, seq: int, samples: list[Sample], gap_ns: int) -> bytes:
    """One datagram of several messages ``gap_ns`` apart (a gap of 8 us or more takes a
    three-byte delta, which the lane leaves to the Python path after opening)."""
    pk = keyed_packer(keying, type_name=SAMPLE, fingerprint=type_of(Sample).fingerprint,
                      first_seq=seq)
    for k, sample in enumerate(samples):
        pk.add(encode_message(sample, type_of(Sample)), 1_000_000 + seq * 100_000 + k * gap_ns)
    return pk.build()


def step_datagrams(keying: str, kind: int, seq: int, sample: Sample) -> list[bytes]:
    """What one step of the hypothesis test sends: good, forged, foreign or odd datagrams."""
    other = "mac" if keying == "aead" else "aead"
    good = sample_datagram(seq, sample, keying=keying)
    if kind == 1:
        return [sample_datagram(seq, sample, keying=keying, node_id=OURS)]
    if kind == 2:
        return [sample_datagram(seq, sample, keying=keying, name="test_speedups.Nobody")]
    if kind == 3:
        forged = bytearray(good)
        forged[-1 - seq % 20] ^= 0x40  # in the tag, the ciphertext or the payload
        return [bytes(forged)]
    if kind == 4:
        return [sample_datagram(seq, sample, keying=keying, node_id=OTHER_PEER)]
    if kind == 5:
        return [sample_datagram(seq, sample, keying=keying, boot=8 + seq % 2)]  # a reboot
    if kind == 6:
        return [sample_datagram(seq, sample, keying=keying, refused=True)]
    if kind == 7:
        return [sample_datagram(seq, sample, keying=keying, key=OTHER_KEY)]  # another network
    if kind == 8:
        samples = [dataclasses.replace(sample, n=k) for k in range(2 + seq % 4)]
        return [batch(keying, seq, samples, 3 if seq % 3 else 9_000)]
    if kind == 9:
        return [good + b"\x00"]  # a stray byte at the end
    if kind == 10:
        return [sample_datagram(seq, sample, keying="clear")]  # unsigned: refused
    if kind == 11:
        return [sample_datagram(seq, sample, keying=other)]  # the other kind, same key
    if kind == 12:
        # The same sender, boot and type under another session (a cloned SD card).
        return [sample_datagram(seq, sample, keying=keying, session=b"\x09" * 8)]
    if kind == 13:
        return [good[:-9]]  # cut short
    if kind == 14:
        return [good, good]  # a replay of the same bytes
    if kind == 15:
        odd = bytearray(good)
        odd[25 + odd[24] + 7] ^= 1  # the first seq, in the clear header
        return [bytes(odd)]
    if kind == 16 and keying == "aead":
        odd = bytearray(good)
        odd[25 + odd[24] + 18] ^= 0xFF  # the key id: unknown
        return [bytes(odd)]
    return [good]


@pytest.mark.parametrize("keying", ["mac", "aead"])
@settings(max_examples=80, deadline=None)
@given(plan=st.lists(st.tuples(st.integers(-3, 4), st.integers(0, KINDS_OF_STEP),
                               st.builds(Sample, st.integers(-(2**63), 2**64 - 1),
                                         st.floats(allow_nan=False), st.booleans(),
                                         st.text(max_size=20).filter(lambda t: t != "refuse"),
                                         st.binary(max_size=200))),
                     min_size=1, max_size=25),
       warm=st.integers(0, 3), two_keys=st.booleans())
def test_the_compiled_path_delivers_and_counts_keyed_traffic_as_python_does(
        keying: str, plan: list[tuple[int, int, Sample]], warm: int, two_keys: bool) -> None:
    datagrams = [sample_datagram(50 + i, Sample(i, 0.5, True, "w", b""), keying=keying)
                 for i in range(warm)]
    seq = 50 + warm
    for step, kind, sample in plan:
        seq = max(0, seq + step)
        datagrams += step_datagrams(keying, kind, seq, sample)
        seq += 1 + (kind == 8) * (1 + seq % 4)
    # During a rotation the receiver accepts two keys, the sending one first.
    ring = KeyRing([OTHER_KEY, KEY] if two_keys else [KEY])
    wire = Wire()
    try:
        compiled, _ = compare(wire, datagrams, SAMPLE, key=ring, raising=bool(warm % 2))
    finally:
        wire.close()
    # Never more accepted than the Python path: every refused kind was counted.
    assert all(kind in ("bad_mac", "decode_errors") for kind, _ in compiled.bad)


@pytest.mark.parametrize("keying", ["mac", "aead"])
def test_a_keyed_batch_the_lane_does_not_read_is_not_opened_twice(wire: Wire,
                                                                  keying: str) -> None:
    opened: list[int] = []

    class Counting(Opener):
        def open(self, *args: object) -> bytes | None:
            opened.append(1)
            return super().open(*args)  # type: ignore[arg-type]

    compiled = Harness(SAMPLE, key=KEY)
    ring = compiled.incoming._key
    assert ring is not None
    ring._opener = Counting([KEY], [key_id(KEY)])
    real_mac = compiled.incoming._mac_ok

    def counting_mac(data: bytes, end: int) -> bool:
        opened.append(1)
        return real_mac(data, end)

    compiled.incoming._mac_ok = counting_mac  # type: ignore[method-assign]
    samples = [Sample(k, 1.0, True, "b", b"") for k in range(3)]
    first = sample_datagram(0, samples[0], keying=keying)
    slow = batch(keying, 1, samples, 9_000)  # three-byte deltas: Python reads the batch
    wire.send(first)
    wire.drain(compiled)
    opened.clear()
    wire.send(slow)
    wire.drain(compiled)
    assert len(opened) == 1  # the lane's open, and Python reads the clear datagram
    assert [i.seq for _m, i in compiled.got] == [0, 1, 2, 3]
    compare(wire, [first, slow], SAMPLE, key=KEY)


def test_the_lane_reads_what_the_opener_gives_and_refuses_what_it_refuses(wire: Wire) -> None:
    """The opener decides: decrypting the very bytes on the wire (an Opener of its own)
    gives the datagram the lane delivered from."""
    datagrams = [sample_datagram(i, Sample(i, 2.0, False, "o", bytes(i)), keying="aead")
                 for i in range(4)]
    opener = Opener([KEY], [key_id(KEY)])
    pos = 25 + datagrams[0][24]
    for i, datagram in enumerate(datagrams):
        clear = opener.open(datagram, pos, PEER, SAMPLE.encode())
        assert clear is not None
        pk = Packer(node_id=PEER, type_name=SAMPLE, fingerprint=type_of(Sample).fingerprint,
                    first_seq=i, boot=7)
        plain = pk.build_one(encode_message(Sample(i, 2.0, False, "o", bytes(i)),
                                            type_of(Sample)), 1_000_000 + i)
        assert clear[pos:] == plain[pos:] and clear[4:pos] == plain[4:pos]
    compiled, _ = compare(wire, datagrams, SAMPLE, key=KEY)
    assert [m.raw for m, _i in compiled.got] == [bytes(i) for i in range(4)]


@pytest.mark.parametrize("keying", ["mac", "aead"])
def test_a_keyed_coalesced_run_goes_through_the_lane_datagram_by_datagram(
        wire: Wire, keying: str) -> None:
    if not _sockets.enable_gro(wire.rx) or not _sockets.gso_available(wire.tx):
        pytest.skip("no UDP_GRO / UDP_SEGMENT here")
    same = [sample_datagram(100 + i, Sample(i, 1.0, True, "abc", b"xyz"), keying=keying)
            for i in range(10)]
    forged = bytearray(same[5])
    forged[-3] ^= 1
    datagrams = [*same[:5], bytes(forged), *same[5:]]
    size = len(datagrams[0])
    assert all(len(d) == size for d in datagrams)
    compiled, reference = Harness(SAMPLE, key=KEY), Harness(SAMPLE, key=KEY)
    wire.send(datagrams[0])
    wire.drain(compiled)
    wire.tx.sendmsg([b"".join(datagrams[1:])], _sockets.gso_cmsg(size), 0,
                    wire.rx.getsockname())
    wire.drain(compiled)
    assert wire.counts[5] == len(datagrams) - 1  # read as one coalesced run
    for datagram in datagrams:
        reference.incoming.on_datagram(datagram, wire.source, 0.0)
    assert compiled.outcome() == reference.outcome()
    assert [kind for kind, _ in compiled.bad] == ["bad_mac"]
    assert len(compiled.got) == 10


@pytest.mark.parametrize("encrypt", [False, True], ids=["mac", "aead"])
def test_keyed_endpoints_publish_and_receive_through_the_lanes(
        monkeypatch: pytest.MonkeyPatch, multicast_loopback: str, free_udp_port: int,
        encrypt: bool) -> None:
    """Between two keyed endpoints lone messages of a known stream leave through the
    SendLane (build_one refuses) and arrive through the lane (the Python delivery
    refuses); a burst is batched, and everything arrives in order."""
    got: list[Sample] = []
    ring = KeyRing([KEY], encrypt=encrypt)

    async def main() -> None:
        async with Endpoint(interface=multicast_loopback, port=free_udp_port, key=ring) as rx, \
                Endpoint(interface=multicast_loopback, port=free_udp_port, key=ring) as tx:
            rx.subscribe(Sample, callback=lambda m, i: got.append(m))
            await asyncio.sleep(0.1)
            first = Sample(0, 0.5, True, "first", b"")
            tx.publish(first)  # the first makes the route, and the receiver's stream
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.01)

            def refuse(*args: object) -> None:
                raise AssertionError("the compiled lanes should have done this")

            monkeypatch.setattr(Packer, "build_one", refuse)
            # A lone message: verified, decrypted and delivered in the lane. (A batch
            # whose messages are 8 us or more apart, as a slow test machine makes them,
            # is read by _on_known after the lane opened it, so those stay.)
            for name in ("_deliver_one", "_on_new"):
                monkeypatch.setattr(rx._in, name, refuse)
            samples = [Sample(i, i / 4, i % 2 == 0, f"s{i}", bytes(i)) for i in range(1, 6)]
            for sample in samples:
                tx.publish(sample)
                await asyncio.sleep(0.02)  # idle again before the next
            burst = [Sample(i, 0.0, True, "b", b"") for i in range(6, 40)]
            for sample in burst:
                tx.publish(sample)  # one loop iteration: batched after the first
            for _ in range(250):
                if len(got) == 40:
                    break
                await asyncio.sleep(0.02)
            assert got == [first, *samples, *burst]
            stats = rx.stats()
            assert (stats.bad_mac, stats.decode_errors) == (0, 0)
            assert tx.stats().sender.sent < 40  # the burst shared datagrams

    asyncio.run(asyncio.wait_for(main(), 15))
