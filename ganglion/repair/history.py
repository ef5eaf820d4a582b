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

Recording is on the publish path, so it costs one list append per message: the
publisher (and the compiled send lane) appends ``(seq, sent_ns, payload)`` to the
type's *keep list* (:meth:`History.keep`), and :meth:`History.fold` moves every keep
list into the history as one *chunk* per type, once per event-loop iteration (and
before any question is answered, so nothing appended is ever missed). A chunk is
the messages of one fold (small ones are merged into the chunk before them), with
its bytes and the time it was folded: bounds are enforced per chunk (a whole chunk
leaves at once; the byte bounds trim the oldest chunk message by message), so the
cost per message is a few tens of nanoseconds however full the history is
(``bench/transport.py``'s ``ganglion+hist`` row). Ages are the fold time's, at most
:data:`MERGE_SECONDS` early. A type's chunks sit in a list with a moving start
(amortised O(1) append and eviction, compacted when half of it is dead), ascending
by sequence number (numbers within one boot only grow), so a range lookup is a
bisection. A restarted sender starts with an empty history: the numbers of its
previous boot are gone and are never answered with new data; :attr:`History.boot` is
the boot the history belongs to.

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
#: What one chunk costs besides its messages.
CHUNK_OVERHEAD = 160
#: A fold of few messages joins the chunk before it when that one was folded at most this
#: many seconds ago and holds fewer than :data:`MERGE_COUNT` (a slow type would else make
#: a chunk per message).
MERGE_SECONDS = 1.0
MERGE_COUNT = 256
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


class _Chunk:
    """Messages of one fold (or a few merged), ascending, the first ``start`` evicted."""

    __slots__ = ("at", "bytes", "items", "start")

    def __init__(self, items: list[Message], size: int, at: float) -> None:
        self.items = items
        self.start = 0
        self.bytes = size  # of the live messages, with their overhead (not the chunk's)
        self.at = at  # when it was folded (the caller's clock)

    def first(self) -> int:
        return self.items[self.start][0]

    def trim(self, excess: int) -> int:
        """Evict messages from the front until ``excess`` bytes are freed (or none is
        left); return the bytes freed."""
        items, i, freed = self.items, self.start, 0
        end = len(items)
        while freed < excess and i < end:
            freed += len(items[i][2]) + ENTRY_OVERHEAD
            i += 1
        self.start = i
        self.bytes -= freed
        return freed


class _TypeHistory:
    """One type's kept messages: chunks, oldest first, and the keep list."""

    __slots__ = ("bytes", "chunks", "count", "keep", "last_at", "last_seq", "limits", "start")

    def __init__(self, limits: HistoryLimits) -> None:
        self.limits = limits
        self.chunks: list[_Chunk] = []
        self.start = 0  # chunks before it are evicted
        self.bytes = 0  # messages and chunks, with their overheads
        self.count = 0  # messages held
        #: Appended to by the publish path, emptied by History.fold (the same list for
        #: the history's whole life: a compiled lane holds it).
        self.keep: list[Message] = []
        self.last_seq: int | None = None
        self.last_at = float("-inf")

    def __len__(self) -> int:
        return self.count

    def live(self) -> list[_Chunk]:
        return self.chunks[self.start:]

    def oldest(self) -> _Chunk | None:
        return self.chunks[self.start] if self.start < len(self.chunks) else None

    def drop_oldest(self) -> int:
        """Evict the oldest chunk whole; return the bytes it freed."""
        chunk = self.chunks[self.start]
        self.count -= len(chunk.items) - chunk.start
        freed = chunk.bytes
        chunk.start, chunk.bytes = len(chunk.items), 0  # dead (History._order skips it)
        self.bytes -= freed
        return freed + self._pop_dead()

    def trim_oldest(self, excess: int) -> int:
        """Free at least ``excess`` bytes from the oldest chunk, message by message (all
        of it if that is not enough); return the bytes freed."""
        chunk = self.chunks[self.start]
        if chunk.bytes <= excess:
            return self.drop_oldest()
        before = chunk.start
        freed = chunk.trim(excess)
        self.count -= chunk.start - before
        self.bytes -= freed
        if chunk.start >= len(chunk.items):  # its last message was the one that sufficed
            freed += self._pop_dead()
        return freed

    def _pop_dead(self) -> int:
        """Take the (now empty) oldest chunk out; return its own bytes."""
        self.start += 1
        self.bytes -= CHUNK_OVERHEAD
        if self.start > 16 and self.start * 2 > len(self.chunks):
            del self.chunks[:self.start]
            self.start = 0
        return CHUNK_OVERHEAD

    def clear(self) -> int:
        freed = self.bytes
        for chunk in self.live():
            chunk.start, chunk.bytes = len(chunk.items), 0
        self.chunks, self.start, self.bytes, self.count = [], 0, 0, 0
        return freed

    def items(self) -> list[Message]:
        return [item for chunk in self.live() for item in chunk.items[chunk.start:]]


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
        # Chunks in folding order, for the node-wide bound: the oldest of all types goes
        # first. Chunks already evicted by their type's bounds are skipped (and dropped).
        self._order: collections.deque[tuple[_TypeHistory, _Chunk]] = collections.deque()
        self._bytes = 0
        self._now = float("-inf")  # the latest time given (for questions without one)
        # Messages evicted by each bound, refused (too large for any bound), and
        # restarts of the numbering (stats()).
        self.evicted_bytes = self.evicted_age = self.evicted_total = 0
        self.too_large = self.renumbered = 0

    # -- configuration -----------------------------------------------------------

    def set_limits(self, type_name: str, limits: HistoryLimits) -> None:
        """Give ``type_name`` its own limits (what it holds beyond them goes at once).

        A publisher holding the type's keep list must ask :meth:`keep` again (the
        endpoint drops its routes): a type turned off takes no more messages.
        """
        self._per_type[type_name] = limits
        entry = self._types.get(type_name)
        if entry is not None:
            entry.limits = limits
            if limits.off:
                entry.keep.clear()
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

    def keep(self, type_name: str) -> list[Message] | None:
        """The list the publish path appends each published ``(seq, sent_ns, payload)``
        of ``type_name`` to (numbers ascending), or None when the type's history is off.

        Appending is all a publish costs; :meth:`fold` takes the messages in. Ask
        once per route (the same list is returned while the type is kept).
        """
        if not self.enabled(type_name):
            return None
        entry = self._types.get(type_name)
        if entry is None:
            entry = self._types[type_name] = _TypeHistory(self.limits_of(type_name))
        return entry.keep

    def record(self, type_name: str, seq: int, sent_ns: int, payload: bytes,
               now: float) -> None:
        """Keep one published message (:meth:`keep` and :meth:`fold` in one call).

        Args:
            type_name: its type.
            seq: its sequence number (this boot); numbers only grow per type.
            sent_ns: its timestamp as sent.
            payload: its CBOR payload as sent.
            now: the current time (monotonic seconds).
        """
        keep = self.keep(type_name)
        if keep is None:
            return
        bound = min(self.limits_of(type_name).max_bytes, self.total_bytes)
        if len(payload) + ENTRY_OVERHEAD + CHUNK_OVERHEAD > bound:
            # Could never be kept: counted, and its number still taken as the last.
            self.fold(now)
            self.too_large += 1
            entry = self._types[type_name]
            if entry.last_seq is not None and seq <= entry.last_seq:
                self.renumbered += 1
                self._bytes -= entry.clear()
            entry.last_seq, entry.last_at = seq, now
            return
        keep.append((seq, sent_ns, payload))
        self.fold(now)

    def fold(self, now: float) -> None:
        """Take in every message appended to a keep list since the last fold."""
        if now > self._now:
            self._now = now
        for entry in self._types.values():
            if entry.keep:
                items = entry.keep.copy()
                entry.keep.clear()
                self._fold_type(entry, items, now)

    def _fold_type(self, entry: _TypeHistory, items: list[Message], now: float) -> None:
        # On the publish path once per loop iteration: per message, a length and a sum.
        if entry.limits.off or self.total_bytes == 0:
            return
        if entry.last_seq is not None and items[0][0] <= entry.last_seq:
            # Numbers only grow within a boot: a smaller one means the numbering
            # restarted (a new boot): what is kept belongs to the old one.
            self.renumbered += 1
            self._bytes -= entry.clear()
        size = sum([len(item[2]) for item in items]) + ENTRY_OVERHEAD * len(items)
        last = entry.chunks[-1] if entry.count else None
        if last is not None and now - last.at <= MERGE_SECONDS \
                and len(last.items) + len(items) <= MERGE_COUNT \
                and last.bytes + size <= entry.limits.max_bytes >> 4:
            last.items += items
            last.bytes += size
            added = size
        else:
            chunk = _Chunk(items, size, now)
            entry.chunks.append(chunk)
            self._order.append((entry, chunk))
            added = size + CHUNK_OVERHEAD
        entry.bytes += added
        entry.count += len(items)
        entry.last_seq, entry.last_at = items[-1][0], now
        self._bytes += added
        if entry.bytes > entry.limits.max_bytes or entry.chunks[entry.start].at < \
                now - entry.limits.max_age:
            self._evict_type(entry, now)
        if self._bytes > self.total_bytes:
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
        self.fold(now)
        entry = self._types.get(type_name)
        if entry is None or entry.last_seq is None:
            return [], [(first, last)]
        self._evict_type(entry, now)
        last = min(last, entry.last_seq)
        if last < first:
            return [], []
        chunks = entry.chunks
        # The last chunk starting at or before `first` (or the oldest one).
        at = max(bisect.bisect_right(chunks, first, entry.start, key=_Chunk.first) - 1,
                 entry.start)
        found: list[Message] = []
        for chunk in chunks[at:]:
            items = chunk.items
            lo = bisect.bisect_left(items, first, chunk.start, key=_seq)
            hi = bisect.bisect_right(items, last, lo, key=_seq)
            found += items[lo:hi]
            if hi < len(items):
                break
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
        self.fold(now)
        entry = self._types.get(type_name)
        if entry is None:
            return []
        self._evict_type(entry, now)
        return [item for item in entry.items() if item[1] >= sent_ns]

    def last_seq(self, type_name: str) -> int | None:
        """The last number recorded for ``type_name`` (None: nothing recorded)."""
        entry = self._types.get(type_name)
        if entry is None:
            return None
        if entry.keep:
            return entry.keep[-1][0]
        return entry.last_seq

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
        self.fold(now)
        found = [(entry.last_at, name, entry.last_seq)
                 for name, entry in self._types.items()
                 if entry.last_seq is not None
                 and quiet <= now - entry.last_at <= entry.limits.max_age]
        found.sort(reverse=True)
        return [(name, seq) for _at, name, seq in found[:limit]]

    def stats(self) -> dict[str, int]:
        """Bytes and messages kept, and counters: messages evicted by each bound,
        refused as too large, and restarts of the numbering."""
        self.fold(self._now)
        return {"history_bytes": self._bytes,
                "history_messages": sum(len(e) for e in self._types.values()),
                "history_types": len(self._types),
                "history_evicted_bytes": self.evicted_bytes,
                "history_evicted_age": self.evicted_age,
                "history_evicted_total": self.evicted_total,
                "history_too_large": self.too_large,
                "history_renumbered": self.renumbered}

    def type_stats(self) -> dict[str, tuple[int, int]]:
        """Per type: (messages held, bytes held)."""
        self.fold(self._now)
        return {name: (len(e), e.bytes) for name, e in self._types.items()}

    def bytes_of(self, type_name: str) -> int:
        """Bytes kept for one type."""
        self.fold(self._now)
        entry = self._types.get(type_name)
        return 0 if entry is None else entry.bytes

    # -- eviction ----------------------------------------------------------------

    def _evict_type(self, entry: _TypeHistory, now: float | None) -> None:
        limits = entry.limits
        before = entry.count
        excess = entry.bytes - limits.max_bytes
        small = limits.max_bytes >> 4
        while excess > 0 and entry.count:
            # A small oldest chunk leaves whole (no walk through its messages): the type
            # then holds up to a sixteenth less than it may; a big one is trimmed.
            chunk = entry.chunks[entry.start]
            freed = entry.drop_oldest() if chunk.bytes <= small \
                else entry.trim_oldest(excess)
            self._bytes -= freed
            excess -= freed
        self.evicted_bytes += before - entry.count
        if entry.count == 0 and entry.start < len(entry.chunks):
            self._bytes -= entry.clear()  # only empty chunks left: drop them
        if now is None:
            return
        oldest = now - limits.max_age
        before = entry.count
        while entry.count and entry.chunks[entry.start].at < oldest:
            self._bytes -= entry.drop_oldest()
        self.evicted_age += before - entry.count

    def _evict_total(self) -> None:
        order = self._order
        # The oldest live chunk of the node is its type's oldest (types evict oldest
        # first), so trimming it keeps every type's chunks in order.
        while order and self._bytes > self.total_bytes:
            entry, chunk = order[0]
            if chunk.start >= len(chunk.items) or entry.oldest() is not chunk:
                order.popleft()
                continue
            before = entry.count
            self._bytes -= entry.trim_oldest(self._bytes - self.total_bytes)
            self.evicted_total += before - entry.count
        while order and (order[0][1].start >= len(order[0][1].items)
                         or order[0][0].oldest() is not order[0][1]):
            order.popleft()


def _seq(item: Message) -> int:
    return item[0]
