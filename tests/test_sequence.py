"""Sequence tracking per (sender, type): gaps, duplicates, reordering, replays, restarts."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.sequence import (
    SequenceStats,
    SequenceTable,
    SequenceTracker,
    Verdict,
)

N, L, D, S, R = Verdict.NEW, Verdict.LATE, Verdict.DUPLICATE, Verdict.STALE, Verdict.RESTART


def run(tracker: SequenceTracker, seqs: list[int], boot: int = 0) -> list[Verdict]:
    return [tracker.observe(s, boot) for s in seqs]


def test_in_order_stream_has_no_losses() -> None:
    t = SequenceTracker()
    assert run(t, list(range(100))) == [N] * 100
    assert t.stats() == SequenceStats(received=100, highest=99, boot=0)


def test_fresh_tracker_stats_are_empty() -> None:
    assert SequenceTracker().stats() == SequenceStats()


def test_joining_mid_stream_counts_nothing_lost_before() -> None:
    t = SequenceTracker()
    assert run(t, [5000, 5001]) == [N, N]
    assert t.stats().lost == 0


def test_gap_counts_lost_messages() -> None:
    t = SequenceTracker()
    run(t, [0, 1, 5, 6, 10])
    s = t.stats()
    assert (s.received, s.lost, s.highest) == (5, 6, 10)


def test_late_arrival_fills_its_gap() -> None:
    t = SequenceTracker()
    assert run(t, [0, 3, 1, 2]) == [N, N, L, L]
    s = t.stats()
    assert (s.received, s.lost, s.reordered, s.duplicates) == (4, 0, 2, 0)


def test_duplicates_are_dropped_and_counted() -> None:
    t = SequenceTracker()
    assert run(t, [0, 1, 1, 0, 2, 1]) == [N, N, D, D, N, D]
    s = t.stats()
    assert (s.received, s.duplicates, s.lost) == (3, 3, 0)


def test_late_arrival_of_a_duplicate_after_filling() -> None:
    t = SequenceTracker()
    assert run(t, [0, 2, 1, 1]) == [N, N, L, D]


def test_numbers_below_the_baseline_count_as_seen() -> None:
    # A receiver that (re)starts cannot tell a datagram sent before it listened from a
    # replay of a recorded one: everything below the first number seen is stale.
    t = SequenceTracker()
    assert run(t, [3, 1, 2, 0, 4]) == [N, S, S, S, N]
    s = t.stats()
    assert (s.lost, s.reordered, s.received, s.stale) == (0, 0, 2, 3)


def test_replay_after_a_receiver_restart_is_not_delivered_again() -> None:
    # Issue 21 finding 4: 150 recorded readings replayed at a restarted (strict,
    # keyed) receiver after its first live datagram were all delivered again.
    before = SequenceTracker(strict=True)
    assert run(before, list(range(150)), boot=7) == [N] * 150
    after = SequenceTracker(strict=True)  # the receiver restarted: no state
    assert after.observe(150, 7) == N  # the first live datagram sets the baseline
    assert run(after, list(range(150)), boot=7) == [S] * 150
    assert after.stats().received == 1


def test_gaps_after_a_rebase_are_not_refilled_from_before_it() -> None:
    t = SequenceTracker()
    run(t, [0, 1, 2])
    t.rebase()
    assert run(t, [10, 5, 11]) == [N, S, N]
    assert t.stats().lost == 0


def test_a_huge_jump_costs_no_time_or_memory() -> None:
    # Issue 21 finding 1: observe(0); observe(2**32) built a 2**32-bit integer
    # (2.4 s, 1.1 GB). Now the window is reset instead of shifted.
    import tracemalloc

    t = SequenceTracker()
    tracemalloc.start()
    try:
        for i in range(1000):  # 1,000 forged jumps of 2**31, as the probe sent
            t.observe(i * 2**31, 1)
        top = 999 * 2**31 + 2**32  # the largest jump still counted as losses
        assert t.observe(top, 1) == N
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert t.stats().lost == top - 1000
    assert t.observe(top + 1, 1) == N
    assert t.observe(top - 5, 1) == L  # the window still works after the jump


def test_older_than_window_is_stale() -> None:
    t = SequenceTracker(window=8)
    run(t, list(range(20, 40)))
    assert t.observe(31) == S  # 39 - 31 = 8: just outside the window
    assert t.observe(32) == D  # 39 - 32 = 7: inside, and seen
    s = t.stats()
    assert (s.stale, s.duplicates, s.received) == (1, 1, 20)


def test_window_edge_exactly() -> None:
    t = SequenceTracker(window=8)
    run(t, [100, 108])  # 101..107 lost
    assert t.observe(101) == L  # offset 7: last slot of the window
    assert t.observe(100) == S  # offset 8: outside
    assert t.observe(101) == D
    s = t.stats()
    assert (s.lost, s.stale, s.reordered) == (6, 1, 1)


def test_big_jump_forward_slides_the_window() -> None:
    t = SequenceTracker(window=16)
    run(t, [100, 101, 102])
    assert t.observe(1000) == N
    assert t.observe(102) == S
    assert t.observe(999) == L
    assert t.stats().lost == 897 - 1


def test_restart_with_higher_boot_resets_and_counts_missed_start() -> None:
    t = SequenceTracker()
    run(t, list(range(50)), boot=1)
    assert t.observe(2, boot=2) == R  # 0 and 1 of the new boot were missed
    assert t.observe(3, boot=2) == N
    assert t.observe(0, boot=2) == L
    s = t.stats()
    assert (s.restarts, s.lost, s.boot, s.highest, s.received) == (1, 1, 2, 3, 53)


def test_old_boot_after_restart_is_stale_in_strict_mode() -> None:
    t = SequenceTracker(strict=True)
    run(t, [0, 1, 2], boot=5)
    assert t.observe(0, boot=6) == R
    assert t.observe(3, boot=5) == S  # an old-boot datagram (late or replayed)
    assert t.stats().stale == 1 and t.stats().boot == 6


def test_lenient_mode_accepts_any_boot_change_as_restart() -> None:
    t = SequenceTracker(strict=False)
    run(t, [0, 1, 2], boot=9)
    assert t.observe(0, boot=1) == R  # boot counter not persisted: went back
    assert t.stats().boot == 1


def test_same_boot_jump_back_near_zero_with_newer_clock_is_a_restart_only_when_lenient() -> None:
    lenient = SequenceTracker(window=64)
    strict = SequenceTracker(window=64, strict=True)
    for t in (lenient, strict):
        for seq in range(1000):
            t.observe(seq, 0, 10_000 + seq)
    assert lenient.observe(0, 0, 20_000) == R
    assert lenient.observe(1, 0, 20_001) == N
    assert lenient.stats().lost == 0 and lenient.stats().restarts == 1
    assert strict.observe(0, 0, 20_000) == S  # a replay of seq 0 must not reset the window
    assert strict.observe(1000, 0, 20_001) == N


def test_very_late_duplicate_near_zero_is_not_mistaken_for_a_restart() -> None:
    t = SequenceTracker(window=64)
    for seq in range(1000):
        t.observe(seq, 0, 10_000 + seq)
    assert t.observe(3, 0, 10_003) == S  # old timestamp: a late duplicate
    assert t.observe(3) == S  # no timestamp: no guessing
    assert t.observe(1000, 0, 11_000) == N
    s = t.stats()
    assert (s.restarts, s.stale, s.lost, s.received) == (0, 2, 0, 1001)


def test_very_late_old_message_is_stale_not_a_restart() -> None:
    t = SequenceTracker(window=64)
    run(t, list(range(5000)))
    assert t.observe(3000) == S
    assert t.observe(5000) == N
    assert t.stats().lost == 0


def test_implausible_forward_jump_is_a_resync_not_billions_lost() -> None:
    t = SequenceTracker(max_gap=1000)
    run(t, [0, 1])
    assert t.observe(2**63) == R
    assert t.observe(2**63 + 1) == N
    s = t.stats()
    assert s.lost == 0 and s.restarts == 1
    t2 = SequenceTracker()
    run(t2, [2**64 - 2, 2**64 - 1])
    assert t2.stats().highest == 2**64 - 1


def test_replayed_datagrams_within_window_are_duplicates_beyond_are_stale() -> None:
    t = SequenceTracker(window=1024, strict=True)
    recorded = list(range(3000))
    run(t, recorded)
    replay = run(t, recorded)
    assert replay.count(D) == 1024 and replay.count(S) == 3000 - 1024
    assert not any(v.deliver for v in replay)
    assert t.stats().received == 3000


def test_verdict_deliver() -> None:
    assert [v for v in Verdict if v.deliver] == [N, L, R]


def test_schema_mismatch_is_reported_once() -> None:
    t = SequenceTracker()
    assert t.note_schema_mismatch() is True
    assert t.note_schema_mismatch() is False
    assert t.stats().schema_mismatches == 2


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        SequenceTracker(window=0)
    with pytest.raises(ValueError, match="positive"):
        SequenceTable(max_entries=0)


# -- properties ------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 300),
    st.floats(0, 0.5),
    st.floats(0, 0.3),
    st.integers(0, 2**32),
    st.integers(0, 10),
    st.integers(0, 2**32),
)
def test_counters_match_what_the_network_did(
    n: int, p_loss: float, p_dup: float, start: int, jitter: int, seed: int
) -> None:
    """Send 0..n-1, drop/duplicate/reorder (less than the window); counters must add up.

    What arrives below the first arrival (the baseline) counts as seen: stale.
    """
    rng = random.Random(seed)
    sent = [start + i for i in range(n)]
    arrivals = [s for s in sent if rng.random() >= p_loss]
    arrivals += [s for s in arrivals if rng.random() < p_dup]
    keyed = sorted((i + rng.uniform(0, jitter), s) for i, s in enumerate(arrivals))
    arrivals = [s for _, s in keyed]
    t = SequenceTracker(window=1024)
    delivered = [s for s in arrivals if t.observe(s).deliver]
    stats = t.stats()
    lo = arrivals[0] if arrivals else 0
    above = [s for s in arrivals if s >= lo]
    assert sorted(delivered) == sorted(set(above))  # every message at or above once
    assert stats.received == len(set(above))
    assert stats.duplicates == len(above) - len(set(above))
    assert stats.stale == len(arrivals) - len(above)
    if arrivals:
        hi = max(arrivals)
        # losses are counted from the first arrival (the baseline) to the highest
        missing = {s for s in range(lo, hi + 1)} - set(above)
        assert stats.lost == len(missing)
        assert stats.highest == hi
    else:
        assert stats.lost == 0 and stats.highest is None
    assert stats.restarts == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 3)), max_size=200),
       st.booleans())
def test_arbitrary_input_keeps_invariants(events: list[tuple[int, int]], strict: bool) -> None:
    t = SequenceTracker(window=32, strict=strict)
    counts = dict.fromkeys(Verdict, 0)
    # A reference count of losses: per boot (epoch), the numbers from its floor to
    # its highest that were never delivered; an epoch begun by a restart has floor 0
    # (0..seq-1 were lost), the first one starts at its first number (the baseline).
    lost_before = 0  # losses of the epochs that ended
    floor = 0
    delivered: set[int] = set()
    for seq, boot in events:
        verdict = t.observe(seq, boot)
        counts[verdict] += 1
        if verdict is R or (verdict is N and not delivered):
            if delivered:
                lost_before += max(delivered) - floor + 1 - len(delivered)
            floor = 0 if verdict is R else seq
            delivered = {seq}
        elif verdict in (N, L):
            assert seq not in delivered  # delivered once per epoch
            delivered.add(seq)
        holes = max(delivered) - floor + 1 - len(delivered) if delivered else 0
        assert t.lost == lost_before + holes, (seq, boot, verdict)
    s = t.stats()
    assert s.received == counts[N] + counts[L] + counts[R]
    assert s.duplicates == counts[D] and s.stale == counts[S]
    assert s.reordered == counts[L] and s.restarts == counts[R]
    assert t._seen < (1 << 32)  # bounded memory: the bitmap never outgrows the window


# -- the table -----------------------------------------------------------------------


def test_table_tracks_each_sender_and_type_separately() -> None:
    table = SequenceTable()
    a, b = b"A" * 8, b"B" * 8
    assert table.observe(a, "x.T", 0) == N
    assert table.observe(a, "x.T", 2) == N
    assert table.observe(b, "x.T", 0) == N
    assert table.observe(a, "x.U", 7) == N
    assert table.observe(b, "x.T", 0) == D
    stats = table.stats()
    assert stats[(a, "x.T")].lost == 1
    assert stats[(b, "x.T")].duplicates == 1
    assert stats[(a, "x.U")].highest == 7
    assert len(table) == 3


def test_table_is_bounded_and_evicts_least_recently_used() -> None:
    table = SequenceTable(max_entries=2)
    table.observe(b"1" * 8, "x.T", 0)
    table.observe(b"2" * 8, "x.T", 0)
    table.observe(b"1" * 8, "x.T", 1)  # 1 is now the most recent
    table.observe(b"3" * 8, "x.T", 0)
    assert set(table.stats()) == {(b"1" * 8, "x.T"), (b"3" * 8, "x.T")}
    assert table.evicted == 1 and len(table) == 2


def test_table_passes_strict_mode_and_window_to_trackers() -> None:
    table = SequenceTable(window=4, strict=True)
    for seq in range(10):
        table.observe(b"n" * 8, "x.T", seq)
    assert table.observe(b"n" * 8, "x.T", 0) == S
    tracker = table.tracker(b"n" * 8, "x.T")
    assert tracker.window == 4 and tracker.strict


def test_table_schema_mismatch_once_per_sender_and_type() -> None:
    table = SequenceTable()
    assert table.note_schema_mismatch(b"a" * 8, "x.T")
    assert not table.note_schema_mismatch(b"a" * 8, "x.T")
    assert table.note_schema_mismatch(b"b" * 8, "x.T")
    assert table.note_schema_mismatch(b"a" * 8, "x.U")


# -- observe_run: a whole datagram in one step -------------------------------------

_RUN_FIELDS = ("_boot", "_floor", "_highest", "_newest_ts", "_resync", "_seen")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(1, 20), st.integers(0, 2),
                          st.integers(0, 10**6), st.booleans()), max_size=25),
       st.booleans())
def test_observe_run_is_observe_per_message(runs: list[tuple[int, int, int, int, bool]],
                                            strict: bool) -> None:
    from ganglion.sequence import SequenceTracker, Verdict

    batched = SequenceTracker(window=32, strict=strict)
    single = SequenceTracker(window=32, strict=strict)
    for first, count, boot, ts, rebase in runs:
        if rebase:
            batched.rebase()
            single.rebase()
        stamps = [ts + i for i in range(count)]
        verdicts = [single.observe(first + i, boot, stamps[i]) for i in range(count)]
        if batched.observe_run(first, count, boot, max(stamps)):
            assert all(v is Verdict.NEW for v in verdicts)
        else:
            assert [batched.observe(first + i, boot, stamps[i]) for i in range(count)] == verdicts
        assert batched.stats() == single.stats()
        assert [getattr(batched, f) for f in _RUN_FIELDS] == [getattr(single, f) for f in _RUN_FIELDS]


def test_observe_run_takes_a_continuing_stream_only() -> None:
    from ganglion.sequence import SequenceTracker

    tracker = SequenceTracker()
    assert not tracker.observe_run(0, 4, 1, 10)  # no baseline yet
    tracker.observe(0, 1, 10)
    assert tracker.observe_run(1, 4, 1, 14)
    assert tracker.stats().received == 5
    assert not tracker.observe_run(6, 2, 1, 20)  # a gap: per message, counted as loss
    assert not tracker.observe_run(5, 2, 2, 20)  # a new boot
    tracker.rebase()
    assert not tracker.observe_run(5, 2, 1, 20)
