"""The receive side of repair: gaps reach the requester, repairs and history answers are
delivered exactly once (``Incoming.deliver_repair``, ``note_tail``).

Real datagrams (built by ``Packer``) go into a real ``Incoming`` whose gap hooks are a
real :class:`ganglion.repair.Requester`; what the requester then asks for, and what
subscribers get, is checked. The Hypothesis test mixes live datagrams (lost,
duplicated, reordered), repairs and history answers in any order and checks that
every message reaches the subscriber at most once, and that once every number was
answered, every number did.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.repair import PermanentGap, RequestAction, Requester, RequesterConfig
from ganglion.runtime._incoming import HISTORY_SEEN_CAP, Incoming
from ganglion.runtime.subscription import MessageInfo, Subscription
from ganglion.sequence import SequenceTable
from ganglion.types import encode_message, message, type_of
from ganglion.wire import Packer

OURS = b"\x00" * 8
PEER = b"\x01" * 8
NAME = "test_repair_delivery.Reading"
SOURCE = ("127.0.0.1", 47800)
BOOT = 7


@message(NAME)
@dataclass
class Reading:
    seq: int


FP = type_of(Reading).fingerprint


def payload(seq: int) -> bytes:
    return encode_message(Reading(seq), type_of(Reading))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """An Incoming with one subscriber and a real requester as its gap hooks."""

    def __init__(self, *, key: bytes | None = None, subscribed: bool = True) -> None:
        self.got: list[tuple[Any, MessageInfo]] = []
        self.bad: list[tuple[str, str]] = []
        self.clock = Clock()
        self.requester = Requester(RequesterConfig(), rng=random.Random(1), now=self.clock.now)
        self.sequences = SequenceTable(strict=key is not None)
        self.subs: dict[str, list[Subscription]] = {}
        if subscribed:
            self.subs[NAME] = [Subscription(NAME, callback=lambda m, i: self.got.append((m, i)),
                                            maxsize=16, on_close=lambda s: None)]
        self.incoming = Incoming(node_id=OURS, key=key, subs=self.subs, sequences=self.sequences,
                                 count_bad=lambda kind, detail, src: self.bad.append((kind, detail)),
                                 gaps=self.requester, clock=self.clock)
        self.key = key
        self._datagrams: dict[int, bytes] = {}

    def datagram(self, seq: int) -> bytes:
        """Number ``seq`` alone in a datagram, as the sender sent it (the same bytes again
        for a duplicate)."""
        if seq not in self._datagrams:
            pk = Packer(node_id=PEER, type_name=NAME, fingerprint=FP, boot=BOOT, key=self.key,
                        first_seq=seq)
            self._datagrams[seq] = pk.build_one(payload(seq), 1_000 + seq)
        return self._datagrams[seq]

    def live(self, *seqs: int) -> None:
        """Each number in its own datagram, as the sender published it."""
        for seq in seqs:
            self.incoming.on_datagram(self.datagram(seq), SOURCE, self.clock.now)

    def repair(self, seq: int, *, history: bool = False, boot: int = BOOT) -> bool:
        return self.incoming.deliver_repair(NAME, FP, sender=PEER, boot=boot, seq=seq,
                                            sent_ns=1_000 + seq, payload=payload(seq),
                                            source=SOURCE, history=history)

    def seqs(self) -> list[int]:
        return [info.seq for _, info in self.got]

    def repaired(self) -> list[int]:
        return [info.seq for _, info in self.got if info.repaired]

    def requests(self) -> list[list[list[int]]]:
        """What the requester sends once every delay has passed."""
        self.clock.now += 1.0
        return [a.request.ranges for a in self.requester.poll(self.clock.now)
                if isinstance(a, RequestAction)]


def test_a_jump_is_asked_for_and_the_repair_is_delivered_once_marked_repaired() -> None:
    h = Harness()
    h.live(0, 1, 2, 5, 6)
    assert h.requests() == [[[3, 4]]]
    assert h.repair(3) and h.repair(4)
    assert not h.repair(3) and not h.repair(6)  # already delivered: dropped
    assert h.seqs() == [0, 1, 2, 5, 6, 3, 4] and h.repaired() == [3, 4]
    assert h.got[-1][0] == Reading(4) and h.got[-1][1].sent_ns == 1_004
    stats = h.sequences.peek(PEER, NAME)
    assert stats is not None and (stats.lost, stats.repaired, stats.reordered) == (0, 2, 2)
    assert h.incoming.repairs_dropped == 2 and h.incoming.repairs_delivered == 2
    assert h.requester.outstanding == 0 and h.requests() == []


def test_a_late_datagram_fills_the_gap_and_the_requester_stops_asking() -> None:
    h = Harness()
    h.live(0, 3)
    h.live(1)
    assert h.requests() == [[[2, 2]]]
    assert h.repaired() == [] and h.seqs() == [0, 3, 1]


def test_repairs_of_streams_not_followed_or_of_another_boot_are_dropped() -> None:
    h = Harness()
    assert not h.repair(3)  # no tracker: nothing here asked
    h.live(0, 2)
    assert not h.repair(1, boot=BOOT - 1) and not h.repair(1, boot=BOOT + 1)
    assert h.seqs() == [0, 2] and h.incoming.repairs_dropped == 3
    unsubscribed = Harness(subscribed=False)
    assert not unsubscribed.repair(0, history=True)


def test_a_repair_below_the_window_or_the_baseline_is_dropped_not_taken_for_a_restart() -> None:
    h = Harness()  # lenient (no key): an old number with a newer timestamp looks like a restart
    h.live(5, 6)
    assert not h.repair(2)  # below the baseline: only a history answer may deliver it
    h.live(1030)
    assert not h.repair(6) and not h.repair(3)
    stats = h.sequences.peek(PEER, NAME)
    assert stats is not None and stats.restarts == 0 and stats.highest == 1030
    assert h.seqs() == [5, 6, 1030]


def test_a_history_answer_below_the_baseline_is_delivered_once() -> None:
    h = Harness()
    h.live(10, 11)
    for seq in (4, 5, 6, 5, 4):
        h.repair(seq, history=True)
    assert h.seqs() == [10, 11, 4, 5, 6] and h.repaired() == [4, 5, 6]
    # At or above the baseline the tracker judges it, as for a repair.
    assert not h.repair(11, history=True)
    assert h.incoming.history_delivered == 3 and h.incoming.history_dropped == 3
    stats = h.sequences.peek(PEER, NAME)
    assert stats is not None and stats.lost == 0 and stats.repaired == 3


@pytest.mark.parametrize("live_after", [False, True])
def test_a_last_value_is_not_delivered_again_by_a_history_answer(live_after: bool) -> None:
    # what a late logger gets: the newest reading as the last value, then live readings
    # (or not yet), then the history answer (or a follow-up one) that holds it too
    h = Harness()
    assert h.incoming.deliver_last_value(NAME, payload(9), sender=PEER, fingerprint=FP, seq=9,
                                         boot=BOOT, sent_ns=1_009, source=SOURCE)
    if live_after:
        h.live(10, 11)
    for seq in range(5, 10):
        h.repair(seq, history=True)
    assert sorted(h.seqs()) == list(range(5, 12 if live_after else 10))
    assert h.repaired() == [5, 6, 7, 8]


def test_a_history_answer_starts_a_stream_not_seen_yet_and_live_messages_continue_it() -> None:
    h = Harness()
    for seq in (20, 21, 22):
        assert h.repair(seq, history=True)
    h.live(22, 23)
    assert h.seqs() == [20, 21, 22, 23] and h.repaired() == [20, 21, 22]
    assert h.requests() == []


def test_the_history_record_is_bounded() -> None:
    h = Harness()
    h.live(HISTORY_SEEN_CAP + 10)
    for seq in range(HISTORY_SEEN_CAP + 1):
        h.repair(seq, history=True)
    assert len(h.incoming._history_seen) == HISTORY_SEEN_CAP
    assert h.repair(0, history=True)  # forgotten, oldest first: the bound's price


def test_a_tail_above_the_highest_becomes_a_gap_whose_numbers_arrive_late() -> None:
    h = Harness()
    h.live(0, 1)
    assert h.incoming.note_tail(PEER, NAME, BOOT, 4) == 3
    assert h.incoming.note_tail(PEER, NAME, BOOT, 4) == 0  # every heartbeat repeats it
    assert h.incoming.note_tail(PEER, NAME, BOOT + 1, 9) == 0  # another boot: not ours
    assert h.requests() == [[[2, 4]]]
    h.live(2)  # the live datagram came after all
    assert h.repair(3) and h.repair(4)
    h.live(5)
    assert h.seqs() == [0, 1, 2, 3, 4, 5] and h.repaired() == [3, 4]
    stats = h.sequences.peek(PEER, NAME)
    assert stats is not None and stats.lost == 0 and stats.highest == 5
    assert h.requester.outstanding == 0


def test_a_tail_means_nothing_without_a_subscriber_or_a_baseline() -> None:
    assert Harness().incoming.note_tail(PEER, NAME, BOOT, 4) == 0
    h = Harness(subscribed=False)
    assert h.incoming.note_tail(PEER, NAME, BOOT, 4) == 0


def test_a_sender_restart_makes_the_old_boots_gaps_permanent() -> None:
    h = Harness()
    h.live(0, 3)
    restarted = Packer(node_id=PEER, type_name=NAME, fingerprint=FP, boot=BOOT + 1)
    h.incoming.on_datagram(restarted.build_one(payload(0), 5_000), SOURCE, h.clock.now)
    h.clock.now += 1.0
    actions = h.requester.poll(h.clock.now)
    assert [(a.key, a.first, a.last, a.reason) for a in actions
            if isinstance(a, PermanentGap)] == [((PEER, NAME, BOOT), 1, 2, "restart")]
    assert not [a for a in actions if isinstance(a, RequestAction)]


def test_keyed_streams_report_gaps_too() -> None:
    h = Harness(key=bytes(range(32)))
    h.live(0, 1, 4)
    assert h.requests() == [[[2, 3]]]
    assert h.repair(2) and not h.repair(2)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_message_is_delivered_at_most_once_and_all_once_every_one_was_answered(
        data: st.DataObject) -> None:
    count = data.draw(st.integers(3, 40), label="count")
    h = Harness(key=data.draw(st.sampled_from([None, bytes(range(32))]), label="key"))
    events: list[tuple[str, int]] = []
    for seq in range(count):
        for _ in range(data.draw(st.integers(0, 2), label=f"copies of {seq}")):
            events.append(("live", seq))
    extra = data.draw(st.lists(st.tuples(st.sampled_from(["repair", "history"]),
                                         st.integers(0, count - 1)), max_size=60), label="extra")
    events += extra
    order = data.draw(st.permutations(events), label="order")
    for kind, seq in order:
        if kind == "live":
            h.live(seq)
        else:
            h.repair(seq, history=kind == "history")
    seqs = h.seqs()
    assert len(seqs) == len(set(seqs)), seqs
    # Now every number is answered (by history: it may be below the baseline).
    for seq in range(count):
        h.repair(seq, history=True)
    assert sorted(h.seqs()) == list(range(count))
    assert h.requester.outstanding == 0
    assert [m.seq for m, _ in h.got] == h.seqs()


def test_the_compiled_lane_hands_jumps_to_the_python_path_so_the_requester_hears_them() -> None:
    from ganglion.runtime._accel import speedups

    if speedups is None:
        pytest.skip("ganglion._speedups is not built")
    from _lane_harness import Wire

    h = Harness()
    datagrams = [h.datagram(seq) for seq in (0, 1, 2, 6, 7)]
    wire = Wire()
    try:
        wire.send(*datagrams[:3])
        wire.drain(h)  # type: ignore[arg-type]
        assert h.incoming._lanes, "the stream is on the compiled lane"
        wire.send(*datagrams[3:])
        wire.drain(h)  # type: ignore[arg-type]
    finally:
        wire.close()
    assert h.seqs() == [0, 1, 2, 6, 7]
    assert h.requests() == [[[3, 5]]]


def test_a_last_value_above_the_highest_makes_the_numbers_between_a_gap() -> None:
    h = Harness()
    h.live(0, 1)
    assert h.incoming.deliver_last_value(NAME, payload(5), sender=PEER, fingerprint=FP,
                                         seq=5, boot=BOOT, sent_ns=1_005)
    assert h.requests() == [[[2, 4]]]
    for seq in (2, 3, 4):
        assert h.repair(seq)
    assert h.seqs() == [0, 1, 5, 2, 3, 4] and h.requester.outstanding == 0
    # First contact through a last value: no baseline before it, nothing missing.
    first = Harness()
    assert first.incoming.deliver_last_value(NAME, payload(9), sender=PEER, fingerprint=FP,
                                             seq=9, boot=BOOT, sent_ns=1_009)
    assert first.requests() == []
