"""The sender's history: its recently published messages, kept to repair gaps.

Theory of operation: for every type it publishes, a node keeps the messages as
they were published (``seq``, original timestamp ``sent_ns``, CBOR payload), sent
or not: a message nobody wanted yet is still kept, so a late subscriber's history
request gets it. Each type's history is bounded in bytes and in age
(:class:`HistoryLimits`), and all types together in bytes (``total_bytes``).
Eviction is oldest first: per type by age and bytes, then across types (the
oldest message of the whole node) while the total is over its bound. Every entry
costs its payload plus :data:`ENTRY_OVERHEAD` bytes, an estimate of what Python
spends on it, so the bound is one on memory, not only on payload bytes.

A type's entries sit in a list with a moving start (amortised O(1) append and
eviction, compacted when half of it is dead), ascending by sequence number
(numbers within one boot only grow), so a range lookup is a bisection. A
restarted sender starts with an empty history: the numbers of its previous boot
are gone and are never answered with new data; :attr:`History.boot` is the boot
the history belongs to.

Pure: time is an argument (the node loop's monotonic clock, seconds).
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
from collections.abc import Mapping

__all__ = ["DEFAULT_LIMITS", "DEFAULT_TOTAL_BYTES", "ENTRY_OVERHEAD", "History",
           "HistoryLimits", "Message"]

#: What one kept message costs besides its payload (the tuple, ints, list slots).
ENTRY_OVERHEAD = 96
#: A message of the history: (seq, sent_ns, payload).
Message = tuple[int, int, bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryLimits:
    """How much of one type's past a publisher keeps.

    Attributes:
        max_bytes: most bytes kept (payloads plus :data:`ENTRY_OVERHEAD` each).
        max_age: most seconds a message is kept after it was published.
    """

    max_bytes: int = 256 * 1024
    max_age: float = 60.0

    def __post_init__(self) -> None:
        if self.max_bytes < 0:
            raise ValueError(f"history max_bytes must be >= 0, got {self.max_bytes!r}")
        if not self.max_age >= 0:
            raise ValueError(f"history max_age must be >= 0, got {self.max_age!r}")

    @property
    def off(self) -> bool:
        """True when nothing is kept (0 bytes or 0 seconds)."""
        return self.max_bytes == 0 or self.max_age == 0


#: Per type: 256 KiB and 60 s (a 50 Hz sensor of 60-byte readings fills 60 s in ~470 KiB
#: with the overhead, so its history holds ~30 s; a 1 Hz one holds the full minute).
DEFAULT_LIMITS = HistoryLimits()
#: Per node, all types together: 4 MiB, small next to a Raspberry Pi's memory.
DEFAULT_TOTAL_BYTES = 4 * 1024 * 1024


class _TypeHistory:
    """One type's kept messages, oldest first."""

    __slots__ = ("at", "bytes", "epoch", "items", "last_at", "last_seq", "limits", "seqs",
                 "start")

    def __init__(self, limits: HistoryLimits) -> None:
        self.limits = limits
        self.seqs: list[int] = []
        self.items: list[tuple[int, int, bytes]] = []
        self.at: list[float] = []  # when each was recorded (the caller's clock)
        self.start = 0  # entries before it are evicted
        self.bytes = 0
        self.epoch = 0  # bumped when cleared: older (type, seq) pairs of History._order die
        self.last_seq: int | None = None
        self.last_at = float("-inf")

    def __len__(self) -> int:
        return len(self.seqs) - self.start

    def pop_oldest(self) -> int:
        """Evict the oldest entry; return the bytes it freed."""
        size = len(self.items[self.start][2]) + ENTRY_OVERHEAD
        self.start += 1
        self.bytes -= size
        if self.start > 64 and self.start * 2 > len(self.seqs):
            del self.seqs[:self.start], self.items[:self.start], self.at[:self.start]
            self.start = 0
        return size

    def holds(self, epoch: int, seq: int) -> bool:
        """Whether the entry numbered ``seq`` (recorded in ``epoch``) is still kept."""
        return epoch == self.epoch and len(self) > 0 and self.seqs[self.start] <= seq

    def clear(self) -> int:
        freed = self.bytes
        self.epoch += 1
        self.seqs, self.items, self.at, self.start, self.bytes = [], [], [], 0, 0
        return freed


class History:
    """A node's recently published messages, per type, bounded.

    Args:
        limits: the limits of every type without its own.
        total_bytes: most bytes kept for all types together (0 keeps nothing).
        per_type: limits of particular types.
        boot: the node's boot counter (the boot every kept number belongs to).
    """

    def __init__(self, limits: HistoryLimits = DEFAULT_LIMITS, *,
                 total_bytes: int = DEFAULT_TOTAL_BYTES,
                 per_type: Mapping[str, HistoryLimits] | None = None, boot: int = 0) -> None:
        if total_bytes < 0:
            raise ValueError(f"history total_bytes must be >= 0, got {total_bytes!r}")
        self.limits = limits
        self.total_bytes = total_bytes
        self.boot = boot
        self._per_type: dict[str, HistoryLimits] = dict(per_type or {})
        self._types: dict[str, _TypeHistory] = {}
        # (type, seq) in recording order, for the node-wide bound: the oldest of all
        # types goes first. Entries already evicted by their type's bounds are skipped.
        self._order: collections.deque[tuple[_TypeHistory, int, int]] = collections.deque()
        self._bytes = 0
        self.counts: collections.Counter[str] = collections.Counter()

    # -- configuration -----------------------------------------------------------

    def set_limits(self, type_name: str, limits: HistoryLimits) -> None:
        """Give ``type_name`` its own limits (what it holds beyond them goes at once)."""
        self._per_type[type_name] = limits
        entry = self._types.get(type_name)
        if entry is not None:
            entry.limits = limits
            if limits.off:
                self._bytes -= entry.clear()
            else:
                self._evict_type(entry, None)

    def limits_of(self, type_name: str) -> HistoryLimits:
        """The limits that apply to ``type_name``."""
        return self._per_type.get(type_name, self.limits)

    def enabled(self, type_name: str) -> bool:
        """Whether messages of ``type_name`` are kept (cheap: ask once per route)."""
        return self.total_bytes > 0 and not self._per_type.get(type_name, self.limits).off

    # -- recording ---------------------------------------------------------------

    def record(self, type_name: str, seq: int, sent_ns: int, payload: bytes,
               now: float) -> None:
        """Keep one published message.

        Args:
            type_name: its type.
            seq: its sequence number (this boot); numbers only grow per type.
            sent_ns: its timestamp as sent.
            payload: its CBOR payload as sent.
            now: the current time (monotonic seconds).
        """
        entry = self._types.get(type_name)
        if entry is None:
            limits = self.limits_of(type_name)
            if limits.off or self.total_bytes == 0:
                return
            entry = self._types[type_name] = _TypeHistory(limits)
        elif entry.limits.off:
            return
        if entry.last_seq is not None and seq <= entry.last_seq:
            # Numbers only grow within a boot: a smaller one means the numbering
            # restarted (a new boot): what is kept belongs to the old one.
            self.counts["history_renumbered"] += 1
            self._bytes -= entry.clear()
        size = len(payload) + ENTRY_OVERHEAD
        if size > entry.limits.max_bytes or size > self.total_bytes:
            self.counts["history_too_large"] += 1
            entry.last_seq, entry.last_at = seq, now
            return
        entry.seqs.append(seq)
        entry.items.append((seq, sent_ns, payload))
        entry.at.append(now)
        entry.bytes += size
        entry.last_seq, entry.last_at = seq, now
        self._bytes += size
        self._order.append((entry, entry.epoch, seq))
        self._evict_type(entry, now)
        self._evict_total()

    # -- questions ---------------------------------------------------------------

    def lookup(self, type_name: str, first: int, last: int,
               now: float) -> tuple[list[Message], list[tuple[int, int]]]:
        """The kept messages numbered ``first..last`` and the numbers no longer held.

        Numbers above the last one published are neither: they may still come.

        Returns:
            ``(found, gone)``: found messages ascending, and ``[first, last]``
            ranges of numbers this node does not hold and never will again.
        """
        entry = self._types.get(type_name)
        if entry is None or entry.last_seq is None:
            return [], [(first, last)]
        self._evict_type(entry, now)
        last = min(last, entry.last_seq)
        if last < first:
            return [], []
        seqs = entry.seqs
        lo = bisect.bisect_left(seqs, first, entry.start)
        hi = bisect.bisect_right(seqs, last, lo)
        found = entry.items[lo:hi]
        gone: list[tuple[int, int]] = []
        expected = first
        for seq, _ts, _payload in found:
            if seq > expected:
                gone.append((expected, seq - 1))
            expected = seq + 1
        if expected <= last:
            gone.append((expected, last))
        return found, gone

    def since(self, type_name: str, sent_ns: int, now: float) -> list[Message]:
        """The kept messages of ``type_name`` with a timestamp at or after ``sent_ns``."""
        entry = self._types.get(type_name)
        if entry is None:
            return []
        self._evict_type(entry, now)
        return [item for item in entry.items[entry.start:] if item[1] >= sent_ns]

    def last_seq(self, type_name: str) -> int | None:
        """The last number recorded for ``type_name`` (None: nothing recorded)."""
        entry = self._types.get(type_name)
        return None if entry is None else entry.last_seq

    def tails(self, now: float, *, quiet: float, limit: int = 32) -> list[tuple[str, int]]:
        """The types to announce in a heartbeat's ``tails``, most recent first.

        Args:
            now: the current time.
            quiet: a type is listed once nothing was recorded for it for this long.
            limit: most entries returned.

        Returns:
            ``(type_name, last_seq)`` of each type recorded within its history age
            and quiet for at least ``quiet`` seconds.
        """
        found = [(entry.last_at, name, entry.last_seq)
                 for name, entry in self._types.items()
                 if entry.last_seq is not None
                 and quiet <= now - entry.last_at <= entry.limits.max_age]
        found.sort(reverse=True)
        return [(name, seq) for _at, name, seq in found[:limit]]

    def stats(self) -> dict[str, int]:
        """Bytes and messages kept, and eviction counters."""
        return {"history_bytes": self._bytes,
                "history_messages": sum(len(e) for e in self._types.values()),
                "history_types": len(self._types), **self.counts}

    def bytes_of(self, type_name: str) -> int:
        """Bytes kept for one type."""
        entry = self._types.get(type_name)
        return 0 if entry is None else entry.bytes

    # -- eviction ----------------------------------------------------------------

    def _evict_type(self, entry: _TypeHistory, now: float | None) -> None:
        limits = entry.limits
        while len(entry) and entry.bytes > limits.max_bytes:
            self._bytes -= entry.pop_oldest()
            self.counts["history_evicted_bytes"] += 1
        if now is None:
            return
        oldest = now - limits.max_age
        while len(entry) and entry.at[entry.start] < oldest:
            self._bytes -= entry.pop_oldest()
            self.counts["history_evicted_age"] += 1

    def _evict_total(self) -> None:
        order = self._order
        while order and self._bytes > self.total_bytes:
            entry, epoch, seq = order.popleft()
            if entry.holds(epoch, seq) and entry.seqs[entry.start] == seq:
                self._bytes -= entry.pop_oldest()
                self.counts["history_evicted_total"] += 1
        # Entries evicted by their own type's bounds leave dead (type, seq) pairs
        # behind; drop them at the front, and rebuild the deque when most of it is
        # dead (a fast type behind a slow one), so it stays about as long as the
        # history itself: amortised O(1) per message.
        while order and not order[0][0].holds(order[0][1], order[0][2]):
            order.popleft()
        if len(order) > 64 + 2 * sum(len(e) for e in self._types.values()):
            self._order = collections.deque(
                item for item in order if item[0].holds(item[1], item[2]))
