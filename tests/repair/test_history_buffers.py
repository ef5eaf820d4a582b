"""The history's keep buffers (the publish path's side): what is appended is what is
found, within every bound, however appends and folds interleave.

Random runs append messages (as the publish path does, :func:`keep_append`) to two
types, fold at random moments and ask for ranges; each answer is checked against
what was published: every found message is the one published under its number,
found and gone ranges cover exactly what was asked (up to the last number), what is
held is the newest numbers without a hole, and the bytes accounted are the bytes
held, never over a bound.
"""

from __future__ import annotations

import random

import pytest

from ganglion.repair import History, HistoryLimits
from ganglion.repair.history import CHUNK_OVERHEAD, ENTRY, ENTRY_OVERHEAD, keep_append


def _payload(seq: int, size: int) -> bytes:
    return bytes([seq % 256]) * size


@pytest.mark.parametrize("seed", range(60))
def test_random_appends_and_folds_keep_the_newest_within_the_bounds(seed: int) -> None:
    rnd = random.Random(seed)
    limits = HistoryLimits(rnd.choice([500, 2000, 10**6]), rnd.choice([0.5, 5.0, 100.0]))
    h = History(limits, total_bytes=rnd.choice([3000, 10**7]))
    keep, other = h.keep("a.B"), h.keep("c.D")
    assert keep is not None and other is not None
    now, seq, seq2 = 0.0, 0, 0
    for _step in range(200):
        now += rnd.random() * 0.3
        for _ in range(rnd.randint(0, 12)):
            keep_append(keep, seq, seq * 10, _payload(seq, rnd.randint(1, 80)))
            seq += 1
        if rnd.random() < 0.3:
            keep_append(other, seq2, 0, b"z" * 10)
            seq2 += 1
        if rnd.random() < 0.5:
            h.fold(now)
        first = rnd.randint(0, seq + 2)
        last = first + rnd.randint(0, 40)
        found, gone = h.lookup("a.B", first, last, now)
        assert all(p and set(p) == {s % 256} and ts == s * 10 for s, ts, p in found)
        covered = {s for s, _ts, _p in found}
        for a, b in gone:
            covered |= set(range(a, b + 1))
        assert seq == 0 or covered == set(range(first, min(last, seq - 1) + 1))
        held = [s for s, _ts, _p in h.lookup("a.B", 0, seq, now)[0]]
        assert held == list(range(seq - len(held), seq))  # the newest, no hole
        assert [s for s, _ts, _p in h.since("a.B", 0, now)] == held
        assert h._bytes <= h.total_bytes
        stats = h.type_stats()
        assert sum(size for _n, size in stats.values()) == h.stats()["history_bytes"]
        assert stats["a.B"][1] <= limits.max_bytes
        assert stats["a.B"][0] == len(held)


def test_a_burst_larger_than_the_bound_keeps_its_end_without_copying_it_all() -> None:
    h = History(HistoryLimits(max_bytes=10_000, max_age=60.0))
    keep = h.keep("a.B")
    assert keep is not None
    for seq in range(1000):  # 1000 x (100 + 24) bytes between two folds: 124 kB
        keep_append(keep, seq, seq, _payload(seq, 100))
    h.fold(1.0)
    assert len(keep[0]) == len(keep[1]) == 0  # the buffers are emptied
    found, _gone = h.lookup("a.B", 0, 999, 1.0)
    per = 100 + ENTRY_OVERHEAD
    assert [s for s, _t, _p in found] == list(range(1000 - len(found), 1000))
    assert (10_000 - CHUNK_OVERHEAD) // per - 1 <= len(found) <= 10_000 // per
    assert found[-1][2] == _payload(999, 100) and found[0][2] == _payload(found[0][0], 100)
    assert h.stats()["history_evicted_bytes"] == 1000 - len(found)
    assert h.bytes_of("a.B") <= 10_000


def test_messages_appended_after_a_fold_survive_an_early_seal() -> None:
    h = History(HistoryLimits(max_bytes=1 << 20, max_age=10.0))
    keep = h.keep("a.B")
    assert keep is not None
    keep_append(keep, 0, 0, b"old")
    h.fold(0.0)
    keep_append(keep, 1, 1, b"newer")
    keep_append(keep, 2, 2, b"newest")
    h.fold(5.0)  # the first is 5 s old: sealed alone, the next two start a chunk of their own
    assert h.lookup("a.B", 0, 2, 5.0)[0] == [(0, 0, b"old"), (1, 1, b"newer"), (2, 2, b"newest")]
    assert h.lookup("a.B", 0, 2, 10.5)[0] == [(1, 1, b"newer"), (2, 2, b"newest")]
    assert len(keep[0]) == 2 * ENTRY.size or h.stats()["history_messages"] == 2
