"""Bounds on what the network can make the logger remember: an LRU map and a token bucket.

Theory of operation: every in-memory table of the logger is keyed by something
a sender chooses (its node id, its boot counter, a type's field names), so a
forger can make up a new key with every datagram. :class:`LruMap` keeps at most
``limit`` entries and evicts the least recently used one, counting evictions,
as :class:`ganglion.sequence.SequenceTable` does for the endpoint's trackers.
An evicted entry is only a cache miss: the writer looks the key up again in the
database. :class:`TokenBucket` bounds how fast rows for *new* keys are added to
the database (the ``nodes`` table): a burst, then a steady rate.

Pure: time comes in as an argument (ns); no clock is read.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["DEFAULT_MAX_ENTRIES", "LruMap", "TokenBucket"]

#: Entries kept per table, as the endpoint's SequenceTable keeps trackers.
DEFAULT_MAX_ENTRIES = 4096

K = TypeVar("K")
V = TypeVar("V")


class LruMap(Generic[K, V]):
    """A mapping of at most ``limit`` entries; the least recently used one goes first.

    Args:
        limit: the most entries kept.

    Raises:
        ValueError: ``limit`` is not positive.
    """

    __slots__ = ("_items", "evicted", "limit")

    def __init__(self, limit: int = DEFAULT_MAX_ENTRIES) -> None:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        self.limit = limit
        self.evicted = 0
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value of ``key`` (marking it used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> tuple[K, V] | None:
        """Store ``value`` under ``key``.

        Returns:
            The (key, value) evicted to make room, or None.
        """
        items = self._items
        if key in items:
            items.move_to_end(key)
            items[key] = value
            return None
        items[key] = value
        if len(items) > self.limit:
            self.evicted += 1
            return items.popitem(last=False)
        return None

    def pop(self, key: K) -> V | None:
        """Remove ``key``; its value, or None."""
        return self._items.pop(key, None)

    def clear(self) -> None:
        """Forget every entry (not counted as evictions)."""
        self._items.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


class TokenBucket:
    """Allows ``burst`` events at once, then ``per_second`` on average.

    Args:
        burst: tokens when full (and at start).
        per_second: tokens added per second.

    Raises:
        ValueError: ``burst`` < 1 or ``per_second`` < 0.
    """

    __slots__ = ("_last_ns", "_tokens", "burst", "per_second")

    def __init__(self, burst: int, per_second: float) -> None:
        if burst < 1 or per_second < 0:
            raise ValueError("burst must be >= 1 and per_second >= 0")
        self.burst = burst
        self.per_second = per_second
        self._tokens = float(burst)
        self._last_ns: int | None = None

    def take(self, now_ns: int) -> bool:
        """Spend one token at ``now_ns`` if there is one.

        Args:
            now_ns: the current time in ns (any monotone clock; the writer
                passes the readings' receive times).

        Returns:
            True when a token was spent; False when the bucket is empty.
        """
        if self._last_ns is not None and now_ns > self._last_ns:
            refill = (now_ns - self._last_ns) * self.per_second / 1e9
            self._tokens = min(float(self.burst), self._tokens + refill)
        if self._last_ns is None or now_ns > self._last_ns:
            self._last_ns = now_ns
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
