"""Token buckets (ganglion.ratelimit): bursts, sustained rates, bounded key tables."""

from __future__ import annotations

import pytest

from ganglion.ratelimit import KeyedBuckets, TokenBucket


def test_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(100.4)  # 0.8 of a token
    assert bucket.take(100.5)  # one token after half a second at 2/s
    assert not bucket.take(100.5)


def test_bucket_over_a_long_flood_allows_burst_plus_rate_times_duration() -> None:
    bucket = TokenBucket(rate=5.0, burst=10, now=0.0)
    allowed = sum(bucket.take(i / 1000) for i in range(10_001))  # 1,000 asks/s, 0..10 s
    assert allowed == 10 + 5 * 10  # the burst, then the rate for 10 s


def test_bucket_never_holds_more_than_its_burst_and_ignores_time_going_back() -> None:
    bucket = TokenBucket(rate=1.0, burst=2, now=0.0)
    assert bucket.full(1e6)
    assert [bucket.take(1e6) for _ in range(3)] == [True, True, False]
    assert not bucket.take(0.0)  # a clock read earlier adds nothing
    assert not bucket.full(1e6 + 1.5)


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 1), (float("nan"), 1), (1.0, 0.5)])
def test_bucket_refuses_impossible_settings(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0.0)
    with pytest.raises(ValueError):
        KeyedBuckets(rate, burst, max_keys=4)


def test_keyed_buckets_are_independent_per_key() -> None:
    buckets: KeyedBuckets[str] = KeyedBuckets(1.0, 2, max_keys=8)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [True, True, False]
    assert [buckets.take("b", 0.0) for _ in range(3)] == [True, True, False]
    assert buckets.take("a", 1.0)


def test_keyed_table_is_bounded_and_drops_idle_keys_before_busy_ones() -> None:
    buckets: KeyedBuckets[int] = KeyedBuckets(1.0, 2, max_keys=4)
    for key in range(4):
        buckets.take(key, 0.0)
        buckets.take(key, 0.0)  # every bucket empty: all four busy
    assert len(buckets) == 4
    buckets.take(99, 0.0)  # no idle key: the least recently used (0) goes, counted
    assert len(buckets) == 4 and buckets.evicted == 1
    # 10 s later every old bucket has refilled: a new key takes an idle slot, uncounted
    buckets.take(100, 10.0)
    assert len(buckets) == 4 and buckets.evicted == 1


def test_keyed_table_stays_bounded_under_a_flood_of_keys() -> None:
    buckets: KeyedBuckets[int] = KeyedBuckets(1.0, 1, max_keys=16)
    for key in range(10_000):
        assert buckets.take(key, key / 1e6)  # each new key has a full bucket
    assert len(buckets) == 16
    assert buckets.evicted == 10_000 - 16


def test_a_bucket_of_rate_zero_allows_its_burst_only() -> None:
    bucket = TokenBucket(0.0, 2, 0.0)
    assert [bucket.take(t) for t in (0.0, 1.0, 1e9)] == [True, True, False]
