"""The sender's history (ganglion.repair.History): bounds, lookups, restarts, tails."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.repair import History, HistoryLimits
from ganglion.repair.history import CHUNK_OVERHEAD, ENTRY_OVERHEAD


def _payload(seq: int, size: int = 10) -> bytes:
    return seq.to_bytes(4, "big") + b"x" * (size - 4)


def test_lookup_returns_what_is_held_and_names_the_rest_gone() -> None:
    h = History(boot=3)
    for seq in range(10):
        h.record("t.a", seq, 1000 + seq, _payload(seq), now=0.0)
    found, gone = h.lookup("t.a", 4, 6, now=0.1)
    assert found == [(s, 1000 + s, _payload(s)) for s in (4, 5, 6)]
    assert gone == []
    # numbers above the last one published are neither found nor gone: they may come
    assert h.lookup("t.a", 8, 20, now=0.1) == ([(8, 1008, _payload(8)), (9, 1009, _payload(9))],
                                               [])
    # a type never published: everything asked for is gone
    assert h.lookup("t.other", 0, 5, now=0.1) == ([], [(0, 5)])


def test_age_bound_evicts_the_oldest_and_they_are_then_gone() -> None:
    h = History(HistoryLimits(max_bytes=1 << 20, max_age=10.0))
    for seq in range(5):
        h.record("t.a", seq, seq, _payload(seq), now=float(seq * 4))  # at 0, 4, 8, 12, 16
    found, gone = h.lookup("t.a", 0, 4, now=16.0)
    assert [f[0] for f in found] == [2, 3, 4]  # recorded at 8.. (16 - 10 = 6 is the limit)
    assert gone == [(0, 1)]


def test_byte_bound_per_type_and_in_total() -> None:
    size = 100 + ENTRY_OVERHEAD
    h = History(HistoryLimits(max_bytes=10 * size + CHUNK_OVERHEAD, max_age=60.0),
                total_bytes=1 << 30)
    for seq in range(100):
        h.record("t.a", seq, seq, _payload(seq, 100), now=float(seq) * 2)  # one chunk each
    assert h.stats()["history_bytes"] <= 10 * size + CHUNK_OVERHEAD
    found, gone = h.lookup("t.a", 0, 99, now=200.0)
    assert found and found[-1][0] == 99 and gone == [(0, found[0][0] - 1)]

    total = History(HistoryLimits(max_bytes=1 << 20, max_age=60.0), total_bytes=20_000)
    for seq in range(200):
        for name in ("t.a", "t.b"):
            total.record(name, seq, seq, _payload(seq, 100), now=seq * 2.0)
    assert total.stats()["history_bytes"] <= 20_000
    # the oldest of all types went first: both types keep their newest
    assert total.lookup("t.a", 199, 199, now=400.0)[0]
    assert total.lookup("t.b", 199, 199, now=400.0)[0]


def test_zero_bytes_or_zero_seconds_turns_history_off() -> None:
    h = History(per_type={"t.off": HistoryLimits(max_bytes=0, max_age=60.0),
                          "t.zero": HistoryLimits(max_bytes=1000, max_age=0.0)})
    assert not h.enabled("t.off") and not h.enabled("t.zero") and h.enabled("t.on")
    for name in ("t.off", "t.zero"):
        h.record(name, 0, 0, b"abc", now=0.0)
        assert h.lookup(name, 0, 0, now=0.0) == ([], [(0, 0)])
    assert not History(total_bytes=0).enabled("t.on")
    h.record("t.on", 0, 0, b"abc", now=0.0)
    h.set_limits("t.on", HistoryLimits(max_bytes=0, max_age=1.0))
    assert h.stats()["history_bytes"] == 0


def test_numbers_starting_again_clear_the_old_ones() -> None:
    # A publisher whose numbering restarts (a new boot) must not answer an old number
    # with a new message.
    h = History()
    for seq in range(5):
        h.record("t.a", seq, seq, b"old" + bytes([seq]), now=0.0)
    h.record("t.a", 0, 99, b"new", now=1.0)
    assert h.lookup("t.a", 0, 4, now=1.0) == ([(0, 99, b"new")], [])
    assert h.stats()["history_renumbered"] == 1


def test_since_selects_by_original_timestamp() -> None:
    h = History()
    for seq in range(6):
        h.record("t.a", seq, seq * 100, _payload(seq), now=0.0)
    assert [m[0] for m in h.since("t.a", 250, now=0.0)] == [3, 4, 5]
    assert h.since("t.none", 0, now=0.0) == []


def test_tails_list_quiet_types_most_recent_first_within_the_age() -> None:
    h = History(HistoryLimits(max_age=10.0))
    h.record("t.old", 7, 0, b"a", now=0.0)
    h.record("t.mid", 3, 0, b"a", now=5.0)
    h.record("t.busy", 9, 0, b"a", now=9.9)
    assert h.tails(10.0, quiet=0.5) == [("t.mid", 3), ("t.old", 7)]
    assert h.tails(12.0, quiet=0.5) == [("t.busy", 9), ("t.mid", 3)]  # t.old past 10 s
    assert h.tails(12.0, quiet=0.5, limit=1) == [("t.busy", 9)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["t.a", "t.b", "t.c"]),
                          st.integers(0, 300), st.floats(0.0, 3.0)), max_size=300),
       st.integers(400, 20_000), st.integers(1, 8))
def test_history_matches_a_model_and_stays_within_its_bounds(
        ops: list[tuple[str, int, float]], total: int, age: int) -> None:
    limits = HistoryLimits(max_bytes=6_000, max_age=float(age))
    h = History(limits, total_bytes=total)
    seqs: dict[str, int] = {}
    recorded: dict[str, dict[int, tuple[int, bytes, float]]] = {}
    now = 0.0
    for name, size, step in ops:
        now += step
        seq = seqs[name] = seqs.get(name, -1) + 1
        payload = bytes([seq % 256]) * size
        h.record(name, seq, seq * 7, payload, now)
        recorded.setdefault(name, {})[seq] = (seq * 7, payload, now)
        assert h.stats()["history_bytes"] <= total
    for name, last in seqs.items():
        found, gone = h.lookup(name, 0, last, now)
        numbers = [f[0] for f in found]
        assert numbers == sorted(numbers)
        for seq, sent_ns, payload in found:
            # exactly as recorded, and never older than the age bound (chunk time)
            assert (sent_ns, payload) == recorded[name][seq][:2]
            assert now - recorded[name][seq][2] <= age + 1.0
        covered = set(numbers)
        for first, last_gone in gone:
            assert not covered & set(range(first, last_gone + 1))
            covered |= set(range(first, last_gone + 1))
        assert covered == set(range(last + 1))  # every number found or gone
        if numbers:
            # what is kept is the newest: every later message is kept too, but one
            # too large for the bounds on its own (never kept)
            bound = min(6_000, total) - ENTRY_OVERHEAD - CHUNK_OVERHEAD
            later = [s for s in range(numbers[0], last + 1)
                     if len(recorded[name][s][1]) <= bound]
            assert numbers == later


def test_limits_refuse_negative_values() -> None:
    with pytest.raises(ValueError):
        HistoryLimits(max_bytes=-1)
    with pytest.raises(ValueError):
        HistoryLimits(max_age=float("nan"))
    with pytest.raises(ValueError):
        History(total_bytes=-1)
