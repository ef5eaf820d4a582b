"""The whole pure receive path: message -> payload -> packer -> datagram -> envelope
-> sequence verdict -> message, through a simulated lossy, reordering, duplicating,
replaying network. This is what the transport does around its sockets."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from dataclasses import dataclass

import pytest

from ganglion.errors import AuthError, DecodeError
from ganglion.sequence import SequenceStats, SequenceTable, Verdict
from ganglion.types import Record, TypeRegistry, decode_payload, encode_payload
from ganglion.wire import Packer, decode_datagram

KEY = bytes(range(32))
T0 = 1_700_000_000_000_000_000


@dataclass(frozen=True)
class Sample:
    n: int
    celsius: float
    when: dt.datetime
    note: str | None = None


def registry() -> TypeRegistry:
    reg = TypeRegistry()
    reg.register(Sample, "pipe.Sample")
    return reg


def publish(reg: TypeRegistry, count: int, *, node: bytes, key: bytes | None, boot: int = 0,
            batch: int = 7) -> tuple[list[Sample], list[bytes]]:
    """Encode ``count`` samples, ``batch`` per loop iteration, like the adaptive sender."""
    mtype = reg.lookup("pipe.Sample")
    assert mtype is not None
    packer = Packer(node_id=node, type_name=mtype.name, fingerprint=mtype.fingerprint,
                    boot=boot, key=key)
    sent: list[Sample] = []
    datagrams: list[bytes] = []
    for i in range(count):
        msg = Sample(i, 20 + i / 100, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
                     + dt.timedelta(seconds=i), note=None if i % 3 else f"n{i}")
        sent.append(msg)
        payload = encode_payload(msg, registry=reg)
        if not packer.add(payload, T0 + i * 1000):
            datagrams.append(packer.build())
            assert packer.add(payload, T0 + i * 1000)
        if i % batch == batch - 1:  # end of a loop iteration: flush
            datagrams.append(packer.build())
    if packer.count:
        datagrams.append(packer.build())
    return sent, datagrams


class Receiver:
    def __init__(self, reg: TypeRegistry, key: bytes | None) -> None:
        self.reg = reg
        self.key = key
        self.table = SequenceTable(strict=key is not None)
        self.delivered: list[tuple[int, int, object]] = []
        self.bad = 0
        self.mismatch_logs = 0

    def receive(self, data: bytes) -> None:
        try:
            env = decode_datagram(data, key=self.key)
        except DecodeError:
            self.bad += 1
            return
        local = self.reg.lookup(env.type_name)
        if local is not None and local.fingerprint != env.fingerprint:
            for _ in env.payloads:
                if self.table.note_schema_mismatch(env.node_id, env.type_name):
                    self.mismatch_logs += 1
        for seq, ts, payload in env.messages():
            if self.table.observe(env.node_id, env.type_name, seq, env.boot, ts).deliver:
                msg = decode_payload(env.type_name, payload, env.fingerprint, registry=self.reg)
                self.delivered.append((seq, ts, msg))

    def stats(self, node: bytes) -> SequenceStats:
        return self.table.stats()[(node, "pipe.Sample")]


@pytest.mark.parametrize("key", [None, KEY])
def test_clean_network_delivers_everything_in_order(key: bytes | None) -> None:
    reg = registry()
    sent, datagrams = publish(reg, 500, node=b"sender01", key=key)
    rx = Receiver(reg, key)
    for d in datagrams:
        rx.receive(d)
    assert [m for _, _, m in rx.delivered] == sent
    assert [s for s, _, _ in rx.delivered] == list(range(500))
    assert [t for _, t, _ in rx.delivered] == [T0 + i * 1000 for i in range(500)]
    assert rx.stats(b"sender01") == SequenceStats(received=500, highest=499, boot=0)


@pytest.mark.parametrize("seed", range(5))
def test_lossy_reordering_duplicating_network_counts_exactly(seed: int) -> None:
    rng = random.Random(seed)
    reg = registry()
    sent, datagrams = publish(reg, 2000, node=b"sender02", key=None, batch=rng.randint(1, 20))
    kept = [d for d in datagrams[1:] if rng.random() > 0.1]  # keep the first: the baseline
    dups = [d for d in kept if rng.random() < 0.05]
    # half the copies right after their original, half at the very end
    wire = [datagrams[0]]
    for d in kept:
        wire.append(d)
        if d in dups[::2]:
            wire.append(d)
    wire += dups[1::2]
    # reorder locally: each datagram moves at most a few places
    order = sorted(range(len(wire)), key=lambda i: i + rng.uniform(0, 4) * (i > 0))
    rx = Receiver(reg, None)
    for i in order:
        rx.receive(wire[i])
    got = {seq: msg for seq, _, msg in rx.delivered}
    assert len(got) == len(rx.delivered)  # nothing delivered twice
    assert all(got[seq] == sent[seq] for seq in got)
    stats = rx.stats(b"sender02")
    highest = max(got)
    assert stats.received == len(got)
    assert stats.lost == highest + 1 - len(got)
    dup_messages = sum(decode_datagram(d, key=None).count for d in dups)
    # a copy arriving within the window is a duplicate; later than that, stale
    assert stats.duplicates + stats.stale == dup_messages
    assert stats.duplicates > 0 and stats.stale > 0
    assert stats.highest == highest and stats.restarts == 0


def test_keyed_replay_of_recorded_traffic_is_dropped() -> None:
    reg = registry()
    _, datagrams = publish(reg, 3000, node=b"sender03", key=KEY, batch=1)
    rx = Receiver(reg, KEY)
    for d in datagrams:
        rx.receive(d)
    assert len(rx.delivered) == 3000
    for d in datagrams:  # an attacker replays everything it recorded
        rx.receive(d)
    assert len(rx.delivered) == 3000
    stats = rx.stats(b"sender03")
    assert stats.duplicates == 1024 and stats.stale == 3000 - 1024


def test_keyed_restart_is_accepted_and_old_boot_replay_is_not() -> None:
    reg = registry()
    _, boot1 = publish(reg, 50, node=b"sender04", key=KEY, boot=1)
    sent2, boot2 = publish(reg, 50, node=b"sender04", key=KEY, boot=2)
    rx = Receiver(reg, KEY)
    for d in boot1 + boot2 + boot1:
        rx.receive(d)
    assert [m for _, _, m in rx.delivered[50:]] == sent2
    stats = rx.stats(b"sender04")
    assert (stats.restarts, stats.received, stats.stale, stats.boot) == (1, 100, 50, 2)


def test_forged_and_unsigned_traffic_never_reaches_the_tracker() -> None:
    reg = registry()
    _, signed = publish(reg, 10, node=b"sender05", key=KEY)
    _, unsigned = publish(reg, 10, node=b"sender05", key=None)
    _, forged = publish(reg, 10, node=b"sender05", key=bytes(32))
    rx = Receiver(reg, KEY)
    for d in unsigned + forged:
        with pytest.raises(AuthError):
            decode_datagram(d, key=KEY)
        rx.receive(d)
    assert rx.delivered == [] and len(rx.table) == 0
    for d in signed:
        rx.receive(d)
    assert len(rx.delivered) == 10


def test_schema_mismatch_is_logged_once_and_still_delivers() -> None:
    sender_reg = TypeRegistry()

    @dataclass
    class OldSample:  # an older version: no 'note', and an extra field
        n: int
        celsius: float
        when: dt.datetime
        unit: str = "C"

    sender_reg.register(OldSample, "pipe.Sample")
    old_type = sender_reg.lookup("pipe.Sample")
    assert old_type is not None
    packer = Packer(node_id=b"sender06", type_name="pipe.Sample",
                    fingerprint=old_type.fingerprint)
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i in range(5):
        packer.add(encode_payload(OldSample(i, 1.5, when), registry=sender_reg), T0)
    rx = Receiver(registry(), None)
    rx.receive(packer.build())
    assert [m for _, _, m in rx.delivered] == [Sample(i, 1.5, when) for i in range(5)]
    assert rx.mismatch_logs == 1
    assert rx.stats(b"sender06").schema_mismatches == 5


def test_receiver_without_the_class_gets_records() -> None:
    reg = registry()
    sent, datagrams = publish(reg, 5, node=b"sender07", key=None)
    rx = Receiver(TypeRegistry(), None)
    for d in datagrams:
        rx.receive(d)
    records = [m for _, _, m in rx.delivered]
    assert all(isinstance(r, Record) for r in records)
    assert records == [Record("pipe.Sample", dataclasses.asdict(m)) for m in sent]
    assert rx.mismatch_logs == 0


def test_verdicts_for_a_whole_replayed_datagram_are_per_message() -> None:
    table = SequenceTable()
    reg = registry()
    _, datagrams = publish(reg, 3, node=b"sender08", key=None, batch=3)
    (only,) = datagrams
    env = decode_datagram(only, key=None)
    first = [table.observe(env.node_id, env.type_name, s, env.boot) for s, _, _ in env.messages()]
    again = [table.observe(env.node_id, env.type_name, s, env.boot) for s, _, _ in env.messages()]
    assert first == [Verdict.NEW] * 3 and again == [Verdict.DUPLICATE] * 3
