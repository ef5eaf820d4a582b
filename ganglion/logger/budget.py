"""Bounds on what the network can make the logger remember: an LRU map.

Theory of operation: every in-memory table of the logger is keyed by something
a sender chooses (its node id, its boot counter, a type's field names), so a
forger can make up a new key with every datagram. :class:`LruMap` keeps at most
``limit`` entries and evicts the least recently used one, counting evictions,
as :class:`ganglion.sequence.SequenceTable` does for the endpoint's trackers.
An evicted entry is only a cache miss: the writer looks the key up again in the
database. How fast rows for *new* keys are added to the database (the ``nodes``
table) is bounded by a :class:`ganglion.ratelimit.TokenBucket`, as the control
plane's admissions are.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["DEFAULT_MAX_ENTRIES", "LruMap"]

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

