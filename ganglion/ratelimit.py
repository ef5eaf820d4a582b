"""Token buckets: how often something a peer asks for may be done.

Theory of operation: a :class:`TokenBucket` holds up to ``burst`` tokens and
gains ``rate`` tokens per second; each permitted action takes one. It allows a
burst after a quiet spell and ``rate`` per second sustained, which is what a
well-behaved peer needs (a node starting with many types asks for them at once)
while a flood gets at most ``burst + rate * t`` actions in ``t`` seconds.

:class:`KeyedBuckets` keeps one bucket per key (a requester's node id, a source
address) in a table of at most ``max_keys`` entries, so the keys a network
chooses cannot grow memory without bound. A bucket that has refilled to
``burst`` is the same as no bucket, so such entries are dropped first; only
when none is idle is the least recently used evicted (counted in ``evicted``).
Eviction hands the evicted key a full bucket when it comes back, so per-key
limits are a fairness measure: pair them with a global bucket to bound the
total.

Pure: time is an argument (any monotonic clock in seconds), nothing here reads
a clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["KeyedBuckets", "TokenBucket"]

K = TypeVar("K", bound=Hashable)


class TokenBucket:
    """``rate`` actions per second sustained, ``burst`` at once after a quiet spell.

    Args:
        rate: tokens gained per second (>= 0; 0 allows the burst and nothing after).
        burst: most tokens held (>= 1); the bucket starts full.
        now: the time of creation (the caller's clock).

    Raises:
        ValueError: ``rate`` or ``burst`` is out of range.
    """

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not rate >= 0:
            raise ValueError(f"rate must be >= 0, got {rate!r}")
        if not burst >= 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens = self.burst
        self._at = now

    def take(self, now: float) -> bool:
        """Take one token if there is one.

        Args:
            now: the current time (the clock given at creation); a time earlier
                than the last one seen adds nothing.

        Returns:
            True when the action may go ahead.
        """
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled to ``burst`` (it then remembers nothing)."""
        self._refill(now)
        return self._tokens >= self.burst

    def _refill(self, now: float) -> None:
        elapsed = now - self._at
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._at = now


class KeyedBuckets(Generic[K]):
    """One :class:`TokenBucket` per key, at most ``max_keys`` of them.

    Args:
        rate: tokens per second of each key's bucket.
        burst: size of each key's bucket.
        max_keys: most keys remembered (>= 1).

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(self, rate: float, burst: float, *, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys!r}")
        TokenBucket(rate, burst, 0.0)  # validates rate and burst with the same messages
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        #: Keys dropped from a full table while their bucket was not yet full.
        self.evicted = 0
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def take(self, key: K, now: float) -> bool:
        """Take one token from ``key``'s bucket (a new key starts with a full one).

        Args:
            key: whose budget to charge.
            now: the current time.

        Returns:
            True when the action may go ahead.
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._make_room(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)

    def _make_room(self, now: float) -> None:
        # Least recently used first. A full bucket forgets nothing when dropped;
        # look at a few of the oldest for one before evicting a busy key.
        for key, bucket in list(self._buckets.items())[:8]:
            if bucket.full(now):
                del self._buckets[key]
                return
        self._buckets.popitem(last=False)
        self.evicted += 1
