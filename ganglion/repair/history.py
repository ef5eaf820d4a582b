"""The sender's history: its recently published messages, kept to repair gaps.

Theory of operation: for every type it publishes, a node keeps the messages as
they were published (``seq``, original timestamp ``sent_ns``, CBOR payload), sent
or not: a message nobody wanted yet is still kept, so a late subscriber's history
request gets it. Each type's history is bounded in bytes and in age
(:class:`HistoryLimits`), and all types together in bytes (``total_bytes``).
Eviction is oldest first: per type by age and bytes, then across types (the
oldest message of the whole node) while the total is over its bound. Every message
costs its payload plus :data:`ENTRY_OVERHEAD` bytes, and every chunk (below)
:data:`CHUNK_OVERHEAD`, what they take in memory, so the bound is one on memory,
not only on payload bytes.

Recording is on the publish path, so it must cost next to nothing per message,
and it creates no Python object per message: the publisher (and the compiled send
lane, in C) appends each payload to the type's *keep buffer* and a 24-byte entry
``(seq, sent_ns, end offset)`` (native ``=QQQ``, :data:`ENTRY`) to its index
(:meth:`History.keep` gives the pair of bytearrays; :func:`keep_append` appends
from Python). :meth:`History.fold`, once per event-loop iteration (and before any
question is answered), accounts what was appended; a keep buffer that holds
:data:`SEAL_COUNT` messages, a sixteenth of the type's bytes or a second's worth
is *sealed*: copied into a *chunk* (two bytes objects) and emptied. Bounds are
enforced per chunk: a small one leaves whole, a big one is trimmed message by
message (a bisection over its end offsets). Kept as per-message tuples instead,
the history made the publish path ~0.6 us slower per message: building them, the
cache misses of freeing them a history later, and the garbage collections they
caused. Ages are those of the fold that first took a chunk's messages, so a
message may leave up to a second (or a quarter of ``max_age``) early.

A type's chunks sit in a list with a moving start (amortised O(1) append and
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
import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_LIMITS", "DEFAULT_TOTAL_BYTES", "ENTRY", "ENTRY_OVERHEAD", "History",
           "HistoryLimits", "Keep", "Message", "keep_append"]

#: A keep buffer's index entry: seq, sent_ns, and where the payload ends in the buffer's
#: payloads laid end to end (native byte order: ganglion/_c/send.c writes it with memcpy).
ENTRY = struct.Struct("=QQQ")
#: What one kept message costs besides its payload: its index entry.
ENTRY_OVERHEAD = ENTRY.size
#: What one chunk costs besides its messages (its objects).
CHUNK_OVERHEAD = 256
#: A keep buffer is sealed into a chunk once it holds this many messages (or a sixteenth
#: of the type's bytes, or was first folded SEAL_SECONDS ago).
SEAL_COUNT = 256
SEAL_SECONDS = 1.0
#: A message of the history: (seq, sent_ns, payload).
Message = tuple[int, int, bytes]
#: A type's keep buffer: [index, payloads], appended to by the publish path: a bytearray
#: of ENTRY entries and a list of the payloads as published (the bytes objects the
#: publish path made anyway: appending one costs no copy, and sealing joins them into
#: one bytes object, freeing them while still in the CPU's cache). The compiled lane
#: reads the two from the list at every message; sealing puts fresh ones in their place.
Keep = list[Any]

_pack_entry = ENTRY.pack
_unpack_entry = ENTRY.unpack_from


def _seal_age(limits: HistoryLimits) -> float:
    """A keep buffer this old (since its first fold) is sealed: its messages' ages are
    off by at most this much."""
    return min(SEAL_SECONDS, limits.max_age / 4)


def keep_append(keep: Keep, seq: int, sent_ns: int, payload: bytes) -> None:
    """Append one published message to a keep buffer (what the compiled lane does in C)."""
    index, payloads = keep
    end = _unpack_entry(index, len(index) - ENTRY.size)[2] if index else 0
    payloads.append(payload)
    index += _pack_entry(seq, sent_ns, end + len(payload))


def _end(index: bytearray | bytes, count: int) -> int:
    """Where the first ``count`` payloads of a keep buffer end (their bytes)."""
    return int(_unpack_entry(index, (count - 1) * ENTRY.size)[2]) if count else 0


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


#: Per type: 256 KiB and 60 s (a 50 Hz sensor of 60-byte readings fills 60 s in ~250 KiB
#: with the overhead, so its history holds about the minute; so does a 1 Hz one).
DEFAULT_LIMITS = HistoryLimits()
#: Per node, all types together: 4 MiB, small next to a Raspberry Pi's memory.
DEFAULT_TOTAL_BYTES = 4 * 1024 * 1024


class _Chunk:
    """Messages sealed from a keep buffer, ascending, the first ``start`` evicted."""

    __slots__ = ("at", "base", "blob", "bytes", "index", "n", "start")

    def __init__(self, index: bytes | bytearray, blob: bytes | bytearray, at: float,
                 base: int = 0) -> None:
        self.index = memoryview(index).cast("Q")  # seq, sent_ns, end: 3 per message
        self.blob = blob
        self.base = base  # the ends count from this offset (a keep buffer's tail)
        self.n = len(self.index) // 3
        self.start = 0
        self.bytes = len(blob) + ENTRY_OVERHEAD * self.n  # of the live messages
        self.at = at  # when its first messages were folded (the caller's clock)

    def __len__(self) -> int:
        return self.n

    def live(self) -> int:
        return self.n - self.start

    def seq(self, i: int) -> int:
        return int(self.index[3 * i])

    def first(self) -> int:
        return self.seq(self.start)

    def offset(self, i: int) -> int:
        """Where message ``i``'s payload starts in blob."""
        return int(self.index[3 * i - 1]) - self.base if i else 0

    def message(self, i: int) -> Message:
        index = self.index
        return (int(index[3 * i]), int(index[3 * i + 1]),
                bytes(memoryview(self.blob)[self.offset(i):index[3 * i + 2] - self.base]))

    def find(self, first: int, last: int) -> tuple[int, int]:
        """The live messages numbered ``first .. last``: indices ``lo .. hi-1``."""
        span = range(self.start, self.n)
        lo = bisect.bisect_left(span, first, key=self.seq) + self.start
        hi = bisect.bisect_right(span, last, lo - self.start, key=self.seq) + self.start
        return lo, hi

    def trim(self, excess: int) -> int:
        """Evict messages from the front until ``excess`` bytes are freed (or none is
        left); return the bytes freed."""
        start, index = self.start, self.index
        base = self.offset(start) + self.base

        def freed_to(k: int) -> int:  # bytes freed by evicting start .. k-1
            return int(index[3 * k - 1]) - base + ENTRY_OVERHEAD * (k - start)

        k = bisect.bisect_left(range(start + 1, self.n + 1), excess, key=freed_to) + start + 1
        k = min(k, self.n)
        freed = freed_to(k)
        self.start = k
        self.bytes -= freed
        return freed

    def messages(self) -> list[Message]:
        return [self.message(i) for i in range(self.start, self.n)]


class _TypeHistory:
    """One type's kept messages: sealed chunks, oldest first, and the keep buffer."""

    __slots__ = ("bytes", "chunks", "count", "folded", "folded_blob", "keep", "last_at",
                 "last_seq", "limits", "open_at", "start")

    def __init__(self, limits: HistoryLimits) -> None:
        self.limits = limits
        self.chunks: list[_Chunk] = []
        self.start = 0  # chunks before it are evicted
        self.bytes = 0  # messages (sealed or folded) and chunks, with their overheads
        self.count = 0  # messages held (sealed or folded)
        #: Appended to by the publish path (the same two bytearrays for the history's
        #: whole life: a compiled lane holds them); sealing empties them.
        self.keep: Keep = [bytearray(), []]
        self.folded = 0  # messages of the keep buffer already accounted
        self.folded_blob = 0  # and their payload bytes
        self.open_at: float | None = None  # when the keep buffer's first were folded
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
        self.count -= chunk.live()
        freed = chunk.bytes
        chunk.start, chunk.bytes = chunk.n, 0  # dead (History._order skips it)
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
        if chunk.start >= chunk.n:  # its last message was the one that sufficed
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

    def open_chunk(self) -> _Chunk | None:
        """The folded messages of the keep buffer as a chunk of their own (a copy, for
        reading), or None."""
        if not self.folded:
            return None
        index, payloads = self.keep
        return _Chunk(bytes(memoryview(index)[:self.folded * ENTRY.size]),
                      b"".join(payloads[:self.folded]),
                      self.open_at if self.open_at is not None else float("-inf"))

    def take_folded(self) -> tuple[bytes | bytearray, bytes | bytearray]:
        """Remove the folded messages from the keep buffer: (their index, their blob).

        When they are all it holds (the common case) the index is taken as it is and
        fresh buffers put in the keep list. Messages appended since the last fold stay,
        their end offsets moved down.
        """
        index, payloads = self.keep
        size, shift, count = self.folded * ENTRY.size, self.folded_blob, self.folded
        if len(index) == size:
            self.keep[0], self.keep[1] = bytearray(), []
            self.folded = self.folded_blob = 0
            self.open_at = None
            return index, b"".join(payloads)
        taken = bytes(memoryview(index)[:size]), b"".join(payloads[:count])
        rest = bytearray()
        for at in range(size, len(index), ENTRY.size):
            seq, sent_ns, end = _unpack_entry(index, at)
            rest += _pack_entry(seq, sent_ns, end - shift)
        self.keep[0], self.keep[1] = rest, payloads[count:]
        self.folded = self.folded_blob = 0
        self.open_at = None
        return taken

    def clear(self) -> int:
        """Forget every message (folded ones too); return the bytes freed."""
        freed = self.bytes
        for chunk in self.live():
            chunk.start, chunk.bytes = chunk.n, 0
        self.chunks, self.start, self.bytes, self.count = [], 0, 0, 0
        self.take_folded()
        return freed

    def items(self) -> list[Message]:
        chunks = self.live()
        opened = self.open_chunk()
        if opened is not None:
            chunks.append(opened)
        return [item for chunk in chunks for item in chunk.messages()]


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
        # Sealed chunks in sealing order, for the node-wide bound: the oldest of all types
        # goes first. Chunks already evicted by their type's bounds are skipped (dropped).
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

        A publisher holding the type's keep buffer must ask :meth:`keep` again (the
        endpoint drops its routes): a type turned off takes no more messages.
        """
        self._per_type[type_name] = limits
        entry = self._types.get(type_name)
        if entry is not None:
            self.fold(self._now)
            entry.limits = limits
            if limits.off:
                self._bytes -= entry.clear()
                entry.keep[0], entry.keep[1] = bytearray(), []
            else:
                self._evict_type(entry, None)

    def limits_of(self, type_name: str) -> HistoryLimits:
        """The limits that apply to ``type_name``."""
        return self._per_type.get(type_name, self.limits)

    def enabled(self, type_name: str) -> bool:
        """Whether messages of ``type_name`` are kept (cheap: ask once per route)."""
        return self.total_bytes > 0 and not self._per_type.get(type_name, self.limits).off

    # -- recording ---------------------------------------------------------------

    def keep(self, type_name: str) -> Keep | None:
        """The keep buffer the publish path appends each published message of
        ``type_name`` to (:func:`keep_append`; numbers ascending), or None when the
        type's history is off.

        Appending is all a publish costs; :meth:`fold` takes the messages in. Ask
        once per route (the same buffer is returned while the type is kept).
        """
        if not self.enabled(type_name):
            return None
        entry = self._types.get(type_name)
        if entry is None:
            entry = self._types[type_name] = _TypeHistory(self.limits_of(type_name))
        return entry.keep

    def record(self, type_name: str, seq: int, sent_ns: int, payload: bytes,
               now: float) -> None:
        """Keep one published message (:meth:`keep`, :func:`keep_append` and
        :meth:`fold` in one call).

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
        keep_append(keep, seq, sent_ns, payload)
        self.fold(now)

    def fold(self, now: float) -> None:
        """Take in every message appended to a keep buffer since the last fold."""
        if now > self._now:
            self._now = now
        for entry in self._types.values():
            if len(entry.keep[0]) > entry.folded * ENTRY.size:
                self._fold_type(entry, now)

    def _fold_type(self, entry: _TypeHistory, now: float) -> None:
        # On the publish path once per loop iteration: a few operations per type.
        limits = entry.limits
        if not self._account(entry, now):
            return
        if entry.folded_blob + ENTRY_OVERHEAD * entry.folded > limits.max_bytes:
            self._cut(entry, now)  # a burst larger than the bound: keep only its end
        if entry.folded >= SEAL_COUNT or entry.folded_blob >= limits.max_bytes >> 4 \
                or now - (now if entry.open_at is None else entry.open_at) >= _seal_age(limits):
            self._seal(entry)
        if entry.bytes > limits.max_bytes or (entry.count and self._oldest_at(entry)
                                              < now - limits.max_age):
            self._evict_type(entry, now)
        if self._bytes > self.total_bytes:
            self._evict_total()

    def _account(self, entry: _TypeHistory, now: float) -> bool:
        """Count what was appended to the keep buffer since the last look; False when
        the type keeps nothing (then the buffer is emptied)."""
        index = entry.keep[0]
        if entry.limits.off or self.total_bytes == 0:
            entry.keep[0], entry.keep[1] = bytearray(), []
            entry.folded = entry.folded_blob = 0
            return False
        if len(index) == entry.folded * ENTRY.size:
            return True
        if entry.folded and now - (now if entry.open_at is None else entry.open_at) >= _seal_age(entry.limits):
            # The folded ones are old enough to be a chunk: the new ones start the next
            # (else they would take the old ones' age).
            self._seal(entry, only_folded=True)
            index = entry.keep[0]  # sealing put a fresh buffer in
        if entry.last_seq is not None and \
                _unpack_entry(index, entry.folded * ENTRY.size)[0] <= entry.last_seq:
            # Numbers only grow within a boot: a smaller one means the numbering
            # restarted (a new boot): what is kept belongs to the old one.
            self.renumbered += 1
            self._bytes -= entry.clear()
        total = len(index) // ENTRY.size
        new = total - entry.folded
        end = _end(index, total)
        added = end - entry.folded_blob + ENTRY_OVERHEAD * new
        entry.folded, entry.folded_blob = total, end
        entry.bytes += added
        entry.count += new
        self._bytes += added
        if entry.open_at is None:
            entry.open_at = now
        entry.last_seq = _unpack_entry(index, (total - 1) * ENTRY.size)[0]
        entry.last_at = now
        return True

    def _seal(self, entry: _TypeHistory, *, only_folded: bool = False) -> None:
        """Copy the keep buffer's messages (folded first, unless ``only_folded``: those
        folded before) into a chunk, and take them out of it."""
        if not only_folded and not self._account(entry, self._now):
            return
        if not entry.folded:
            return
        at = entry.open_at if entry.open_at is not None else self._now
        chunk = _Chunk(*entry.take_folded(), at)
        entry.chunks.append(chunk)
        self._order.append((entry, chunk))
        entry.bytes += CHUNK_OVERHEAD
        self._bytes += CHUNK_OVERHEAD

    def _cut(self, entry: _TypeHistory, now: float) -> None:
        """The keep buffer alone holds more than the type's bound (a burst between two
        folds): evict everything older than its newest ``max_bytes`` and seal those,
        copying only them (never the whole burst)."""
        index, payloads = entry.keep
        n, limit, total = entry.folded, entry.limits.max_bytes, entry.folded_blob

        def held_from(k: int) -> int:  # bytes of messages k .. n-1
            return total - _end(index, k) + ENTRY_OVERHEAD * (n - k)

        k = bisect.bisect_left(range(n), -limit, key=lambda k: -held_from(k))
        if k >= n:
            k = n - 1  # one message larger than the bound: it goes at the next eviction
        start = _end(index, k)
        chunk = _Chunk(bytes(memoryview(index)[k * ENTRY.size:]), b"".join(payloads[k:]),
                       now, base=start)
        before = entry.count
        self._bytes -= entry.bytes
        for dead in entry.live():
            dead.start, dead.bytes = dead.n, 0
        entry.chunks, entry.start = [chunk], 0
        entry.keep[0], entry.keep[1] = bytearray(), []
        entry.folded = entry.folded_blob = 0
        entry.open_at = None
        self._order.append((entry, chunk))
        entry.bytes = chunk.bytes + CHUNK_OVERHEAD
        entry.count = chunk.n
        self._bytes += entry.bytes
        self.evicted_bytes += before - entry.count

    @staticmethod
    def _oldest_at(entry: _TypeHistory) -> float:
        oldest = entry.oldest()
        if oldest is not None:
            return oldest.at
        return entry.open_at if entry.open_at is not None else float("inf")

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
        candidates = chunks[at:]
        opened = entry.open_chunk()
        if opened is not None:
            candidates.append(opened)
        found: list[Message] = []
        for chunk in candidates:
            lo, hi = chunk.find(first, last)
            found += [chunk.message(i) for i in range(lo, hi)]
            if hi < chunk.n:
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
        index = entry.keep[0]
        if len(index) > entry.folded * ENTRY.size:
            return int(_unpack_entry(index, len(index) - ENTRY.size)[0])
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
        small = limits.max_bytes >> 3  # a keep buffer is sealed at a sixteenth
        while excess > 0 and entry.count:
            if entry.oldest() is None:
                self._seal(entry)  # only the keep buffer holds messages: seal it to trim
                excess = entry.bytes - limits.max_bytes
                continue
            # A small oldest chunk (an eighth of the bound at most: sealed ones are about
            # a sixteenth) leaves whole, so the type holds up to that much less than it
            # may, and evictions come once per chunk, not per fold; a big one is trimmed.
            chunk = entry.chunks[entry.start]
            freed = entry.drop_oldest() if chunk.bytes <= small \
                else entry.trim_oldest(excess)
            self._bytes -= freed
            excess -= freed
        self.evicted_bytes += before - entry.count
        if now is None:
            return
        oldest = now - limits.max_age
        before = entry.count
        while entry.count and self._oldest_at(entry) < oldest:
            if entry.oldest() is None:
                self._seal(entry)
            self._bytes -= entry.drop_oldest()
        self.evicted_age += before - entry.count

    def _evict_total(self) -> None:
        if self._bytes <= self.total_bytes:
            return
        for entry in self._types.values():
            self._seal(entry)  # every message in a chunk, in the node-wide order
        order = self._order
        # The oldest live chunk of the node is its type's oldest (types evict oldest
        # first), so trimming it keeps every type's chunks in order.
        while order and self._bytes > self.total_bytes:
            entry, chunk = order[0]
            if chunk.start >= chunk.n or entry.oldest() is not chunk:
                order.popleft()
                continue
            before = entry.count
            self._bytes -= entry.trim_oldest(self._bytes - self.total_bytes)
            self.evicted_total += before - entry.count
        while order and (order[0][1].start >= order[0][1].n
                         or order[0][0].oldest() is not order[0][1]):
            order.popleft()
