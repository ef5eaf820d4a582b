"""What the compiled lane does itself instead of calling Python: building the message
(``_decodegen.construction``), the sequence step (``SequenceTracker.observe_run``) and
the hand-out to a callback (``Subscription.deliver``), each against the Python path on
the same datagrams, over a real loopback socket."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import Any

import pytest
from _lane_harness import (
    SAMPLE,
    Frozen,
    Guarded,
    Harness,
    Sample,
    Wire,
    compare,
    sample_datagram,
    speedups,
)

from ganglion.runtime.subscription import MessageInfo, Subscription
from ganglion.sequence import SequenceTracker
from ganglion.types import default_registry, message, type_of
from ganglion.types._decodegen import CALL, FALLBACK, SET, SET_FROZEN, construction

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(speedups is None, reason="ganglion._speedups is not built")]


@message("test_speedups.HandMade")
@dataclass
class HandMade:
    """A dataclass whose __init__ is written by hand: the lane must call it."""

    n: int
    label: str

    def __init__(self, n: int, label: str) -> None:
        self.n = n * 10
        self.label = label.upper()


def samples(cls: type, count: int, first: int = 0) -> list[bytes]:
    return [sample_datagram(first + i, cls(i, 0.25 * i, i % 2 == 0, f"s{i}", b"r" * i))
            for i in range(count)]


# -- construction ------------------------------------------------------------------------


def test_only_a_generated_init_that_only_stores_its_fields_is_bypassed() -> None:
    @dataclass
    class Plain:
        a: int
        b: str

    @dataclass(frozen=True)
    class Still:
        a: int

    @dataclass
    class Checked:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass
    class WithInitVar:
        a: int
        scale: InitVar[int] = 1

    @dataclass
    class NotInInit:
        a: int
        b: int = field(default=0, init=False)

    @dataclass
    class OwnNew:
        a: int

        def __new__(cls, *args: Any, **kwargs: Any) -> OwnNew:
            return super().__new__(cls)

    @dataclass(init=False)
    class Inherits(HandMade):
        pass

    class NotADataclass:
        def __init__(self, a: int) -> None:
            self.a = a

    assert construction(Plain, ["a", "b"]) == SET
    assert construction(Still, ["a"]) == SET_FROZEN
    assert construction(Guarded, [f.name for f in dataclasses.fields(Guarded)]) == SET
    assert construction(Plain, ["b", "a"]) == CALL  # not the fields, in order
    assert construction(Plain, ["a"]) == CALL
    for cls in (Checked, WithInitVar, OwnNew, NotADataclass):
        assert construction(cls, ["a"]) == CALL, cls
    assert construction(NotInInit, ["a", "b"]) == CALL
    assert construction(HandMade, ["n", "label"]) == CALL
    assert construction(Inherits, ["n", "label"]) == CALL
    assert construction(Sample, [f.name for f in dataclasses.fields(Sample)]) == CALL
    assert type_of(Sample).plan[-1] == CALL and type_of(Guarded).plan[-1] == SET


def test_a_hand_written_init_is_called(wire: Wire) -> None:
    pk_datagrams = [sample_datagram(i, HandMade(i, f"x{i}")) for i in range(4)]
    compiled, _ = compare(wire, pk_datagrams, type_of(HandMade).name)
    # Each went through __init__ twice: when sent (the sample) and when received.
    assert [(m.n, m.label) for m, _i in compiled.got] == [(100 * i, f"X{i}") for i in range(4)]


def test_a_built_message_is_what_calling_the_class_makes(wire: Wire) -> None:
    compiled = Harness(type_of(Guarded).name)
    wire.send(*samples(Guarded, 5))
    wire.drain(compiled)
    expected = [Guarded(i, 0.25 * i, i % 2 == 0, f"s{i}", b"r" * i) for i in range(5)]
    got = [m for m, _i in compiled.got]
    assert got == expected
    assert [vars(m) for m in got] == [vars(m) for m in expected]
    assert all(type(m) is Guarded for m in got)


# -- the hand-out ------------------------------------------------------------------------


def both(wire: Wire, datagrams: list[bytes], name: str,
         prepare: Callable[[Harness], Any], midway: Callable[[Harness], Any] | None = None,
         ) -> tuple[Harness, Harness, Any, Any]:
    """The compiled drain and the Python path over ``datagrams``, each harness changed
    the same way first (``prepare``, whose result is returned) and halfway (``midway``)."""
    compiled, reference = Harness(name), Harness(name)
    extra = prepare(compiled), prepare(reference)
    half = len(datagrams) // 2
    for part, last in ((datagrams[:half], False), (datagrams[half:], True)):
        wire.send(*part)
        wire.drain(compiled)
        for datagram in part:
            reference.incoming.on_datagram(datagram, wire.source, 0.0)
        if not last and midway is not None:
            midway(compiled)
            midway(reference)
    assert compiled.outcome() == reference.outcome()
    return compiled, reference, extra[0], extra[1]


def test_a_closed_subscription_gets_nothing_more(wire: Wire) -> None:
    compiled, _, _, _ = both(wire, samples(Sample, 8), SAMPLE, lambda h: None,
                             midway=lambda h: h.subs[SAMPLE][0].close())
    assert len(compiled.got) == 4 and compiled.subs[SAMPLE][0].delivered == 4
    assert compiled.incoming.received == 8  # counted as received, handed to nobody


def test_a_subscription_without_a_callback_queues_through_its_own_deliver(wire: Wire) -> None:
    def queued(h: Harness) -> Subscription:
        sub = Subscription(SAMPLE, callback=None, maxsize=3, on_close=lambda s: None)
        h.subs[SAMPLE].append(sub)
        return sub

    _, _, sub, ref = both(wire, samples(Sample, 6), SAMPLE, queued)
    assert [m for m, _i in sub._queue] == [m for m, _i in ref._queue]
    assert [m.n for m, _i in sub._queue] == [3, 4, 5]
    assert (sub.delivered, sub.dropped) == (ref.delivered, ref.dropped) == (6, 3)


def test_a_subscription_of_another_class_is_asked_through_its_deliver(wire: Wire) -> None:
    class Counting(Subscription):
        def deliver(self, msg: Any, info: MessageInfo) -> None:
            self.seen = [*getattr(self, "seen", []), msg.n]
            super().deliver(msg, info)

    def counting(h: Harness) -> Counting:
        sub = Counting(SAMPLE, callback=lambda m, i: None, maxsize=3, on_close=lambda s: None)
        h.subs[SAMPLE].insert(0, sub)
        return sub

    _, _, sub, ref = both(wire, samples(Sample, 5), SAMPLE, counting)
    assert sub.seen == ref.seen == [0, 1, 2, 3, 4]
    assert sub.delivered == 5


def test_a_failing_callback_is_counted_and_logged_with_its_traceback(
        wire: Wire, caplog: pytest.LogCaptureFixture) -> None:
    def failing(h: Harness) -> Subscription:
        def callback(msg: Any, info: MessageInfo) -> None:
            if msg.n % 2:
                raise KeyError(f"odd {msg.n}")

        sub = Subscription(SAMPLE, callback=callback, maxsize=3, on_close=lambda s: None)
        h.subs[SAMPLE].append(sub)
        return sub

    caplog.set_level(logging.ERROR, logger="ganglion")
    compiled, _, sub, ref = both(wire, samples(Sample, 6), SAMPLE, failing)
    assert sub.callback_errors == ref.callback_errors == 3
    assert len(compiled.got) == 6  # the other subscriber got every one
    failed = [r for r in caplog.records if "subscriber callback" in r.getMessage()]
    assert len(failed) == 6  # three each way
    assert all(r.exc_info and isinstance(r.exc_info[1], KeyError) for r in failed)
    assert all(r.exc_info[2] is not None for r in failed)


def test_a_callback_that_closes_its_subscription_stops_at_once(wire: Wire) -> None:
    def closing(h: Harness) -> Subscription:
        got: list[int] = []

        def callback(msg: Any, info: MessageInfo) -> None:
            got.append(msg.n)
            if msg.n == 2:
                sub.close()

        sub = Subscription(SAMPLE, callback=callback, maxsize=3, on_close=lambda s: None)
        sub.got = got  # type: ignore[attr-defined]
        h.subs[SAMPLE].append(sub)
        return sub

    _, _, sub, ref = both(wire, samples(Sample, 6), SAMPLE, closing)
    assert sub.got == ref.got == [0, 1, 2]


# -- the sequence step -------------------------------------------------------------------


def test_a_tracker_of_another_class_is_asked_through_its_observe_run(
        wire: Wire, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    python = SequenceTracker.observe_run

    def observe_run(self: SequenceTracker, first: int, count: int, boot: int,
                    newest: int) -> bool:
        calls.append((first, count))
        return python(self, first, count, boot, newest)

    monkeypatch.setattr(SequenceTracker, "observe_run", observe_run)
    datagrams = samples(Sample, 6, first=20)
    compiled = Harness(SAMPLE)
    wire.send(*datagrams)
    wire.drain(compiled)
    # The first through Python's _deliver; a SequenceTracker's rest the lane steps itself.
    assert calls == [(20, 1)]
    incoming = compiled.incoming
    # The lane as Incoming.lane makes it, but told that trackers are of another class.
    incoming.lane = lambda: speedups.Lane(  # type: ignore[method-assign]
        incoming, incoming._lanes, compiled.subs, default_registry._by_name, MessageInfo,
        FALLBACK, Subscription, dict)
    wire.send(*samples(Sample, 4, first=26))
    wire.drain(compiled)
    assert calls == [(20, 1), (26, 1), (27, 1), (28, 1), (29, 1)]
    reference = Harness(SAMPLE)
    for datagram in [*datagrams, *samples(Sample, 4, first=26)]:
        reference.incoming.on_datagram(datagram, wire.source, 0.0)
    assert compiled.outcome() == reference.outcome()


@pytest.mark.parametrize("gap", [0, 3])
def test_a_rebased_tracker_takes_its_next_message_as_a_baseline(wire: Wire, gap: int) -> None:
    def rebase(h: Harness) -> None:
        for tracker in h.sequences._trackers.values():
            tracker.rebase()

    datagrams = samples(Sample, 4) + samples(Sample, 4, first=4 + gap)
    compiled, _, _, _ = both(wire, datagrams, SAMPLE, lambda h: None, midway=rebase)
    [stats] = compiled.sequences.stats().values()
    assert (stats.received, stats.lost) == (8, 0)  # the skipped numbers: not lost


def test_a_class_that_refuses_a_field_in_setattr_is_decoded_by_the_full_decoder(
        wire: Wire) -> None:
    datagrams = samples(Guarded, 3)
    datagrams.append(sample_datagram(3, Guarded(3, 1.0, False, "", b""), refused=True))
    compiled, _ = compare(wire, datagrams, type_of(Guarded).name)
    assert [kind for kind, _ in compiled.bad] == ["decode_errors"]
    assert len(compiled.got) == 3


@pytest.mark.parametrize("cls", [Guarded, Frozen])
def test_a_classes_messages_are_built_in_the_lane(wire: Wire, cls: type) -> None:
    compiled = Harness(type_of(cls).name)
    slow: list[object] = []
    python = compiled.incoming._decode_slow
    compiled.incoming._decode_slow = (  # type: ignore[method-assign]
        lambda *args: (slow.append(args), python(*args))[1])
    wire.send(*samples(cls, 6))
    wire.drain(compiled)
    assert [m.n for m, _i in compiled.got] == list(range(6))
    assert slow == []  # not one needed the full decoder


def test_a_window_of_remembered_numbers_stays_its_size(wire: Wire) -> None:
    datagrams = samples(Sample, SequenceTracker().window + 60)
    compiled, _ = compare(wire, datagrams, SAMPLE)
    [tracker] = compiled.sequences._trackers.values()
    assert tracker._seen == tracker._mask  # every one seen, none beyond the window


def test_a_full_window_stays_the_mask_itself_until_a_number_is_missed(wire: Wire) -> None:
    window = SequenceTracker().window
    compiled, reference = Harness(SAMPLE), Harness(SAMPLE)
    steady = samples(Sample, window + 5)
    # Then a gap of three, one of them arriving late, and the stream going on.
    rest = [*samples(Sample, 2, first=window + 8), *samples(Sample, 1, first=window + 6),
            *samples(Sample, 40, first=window + 10)]
    for at in range(0, len(steady), 50):
        wire.send(*steady[at:at + 50])
        wire.drain(compiled)
    [tracker] = compiled.sequences._trackers.values()
    # Nothing is computed while every number in the window arrived.
    assert tracker._seen is tracker._mask
    wire.send(*rest)
    wire.drain(compiled)
    assert tracker._seen != tracker._mask  # the two still missing
    for datagram in [*steady, *rest]:
        reference.incoming.on_datagram(datagram, wire.source, 0.0)
    assert compiled.outcome() == reference.outcome()
    [stats] = compiled.sequences.stats().values()
    assert (stats.lost, stats.reordered) == (2, 1)


def test_a_tracker_with_an_unset_slot_is_left_to_python(wire: Wire) -> None:
    compiled, reference = Harness(SAMPLE), Harness(SAMPLE)
    datagrams = samples(Sample, 4)
    wire.send(*datagrams[:2])
    wire.drain(compiled)
    for datagram in datagrams[:2]:
        reference.incoming.on_datagram(datagram, wire.source, 0.0)
    for h in (compiled, reference):
        [tracker] = h.sequences._trackers.values()
        del tracker._newest_ts  # the lane must not read it as a value
    wire.send(*datagrams[2:])
    wire.drain(compiled)
    # Python's observe_run fails on it: the same error, and nothing delivered.
    for datagram in datagrams[2:]:
        with pytest.raises(AttributeError, match="_newest_ts"):
            reference.incoming.on_datagram(datagram, wire.source, 0.0)
    assert len(compiled.got) == len(reference.got) == 2
    assert [(kind, type(exc)) for kind, exc in wire.reports] == [("callback", AttributeError)] * 2


def test_an_old_boots_stream_after_a_reboot_is_judged_by_python(wire: Wire) -> None:
    old = samples(Sample, 4)
    rebooted = sample_datagram(4, Sample(4, 1.0, True, "r", b""), boot=8)
    late = sample_datagram(5, Sample(5, 1.0, True, "l", b""), boot=7)
    compiled, _ = compare(wire, [*old, rebooted, late], SAMPLE)
    [stats] = compiled.sequences.stats().values()
    assert stats.restarts == 2
