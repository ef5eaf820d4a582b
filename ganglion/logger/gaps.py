"""Gaps in what the logger received: missing runs of sequence numbers per stream.

Theory of operation: every sender numbers its messages per (sender, type), and
a new boot starts a new numbering, so a *stream* is (type, sender, boot). The
tracker remembers the next number it expects per stream. A number beyond it
opens a gap (expected .. seq - 1); a number below it is a late arrival (the
endpoint delivers reordered messages) and, when it falls inside a gap that is
still *settling*, shrinks or splits that gap. A gap settles ``settle_ns`` after
it was detected and is then final: :meth:`GapTracker.settled` hands it to the
writer. The first number seen of a stream opens no gap (the logger joined
mid-stream), and neither do last values (fetched from before the logger joined),
which the caller does not feed in -- unless the caller knows where the stream
stood before (:meth:`GapTracker.resume`: the highest number a previous logger
run stored), so what the sender published while no logger ran is a gap too.
A last value *is* a reading the log holds, though: its number is never part of a
gap (:meth:`GapTracker.hold`). Without that, a logger asking for history at
start recorded a false gap where the newest reading came as the last value (the
node delivers each number once: the history answer's copy was dropped).

Bounded, because senders choose the keys (node ids, boots): at most
``max_streams`` streams are remembered, the least recently seen is forgotten
first (its settling gaps settle at once) and counted in :attr:`GapTracker.evicted`;
at most ``max_open`` gaps settle per stream and ``max_open_total`` in all,
beyond which the oldest settle early. A forgotten stream that comes back is a
first sighting again (the writer resumes it from the database).

Pure: time comes in as the readings' ``received_ns``; no clock is read.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from ganglion.logger.budget import DEFAULT_MAX_ENTRIES

__all__ = ["Gap", "GapTracker", "StreamKey"]

#: Numbers held outside the live numbering remembered per stream (a keyed type's last
#: values: one per key).
_MAX_HELD = 256

#: (type name, sender node id, sender boot)
StreamKey = tuple[str, bytes, int]


class Gap(NamedTuple):
    """A run of sequence numbers of one stream that never arrived.

    Attributes:
        stream: (type name, sender node id, boot).
        first: the first missing sequence number.
        last: the last missing sequence number (inclusive).
        detected_ns: when the reading after the gap arrived.
    """

    stream: StreamKey
    first: int
    last: int
    detected_ns: int


class GapTracker:
    """Finds gaps in per-stream sequence numbers, remembering a bounded number of streams.

    Args:
        settle_ns: how long a gap may still be filled by late arrivals.
        max_open: settling gaps kept per stream; beyond it the oldest settles early.
        max_streams: streams remembered; beyond it the least recently seen is forgotten.
        max_open_total: settling gaps kept in all; beyond it a whole stream's settle early.

    Raises:
        ValueError: a limit is not positive.
    """

    def __init__(self, *, settle_ns: int = 2_000_000_000, max_open: int = 64,
                 max_streams: int = DEFAULT_MAX_ENTRIES,
                 max_open_total: int = DEFAULT_MAX_ENTRIES) -> None:
        if min(max_open, max_streams, max_open_total) < 1:
            raise ValueError("max_open, max_streams and max_open_total must be positive")
        self._settle_ns = settle_ns
        self._max_open = max_open
        self._max_streams = max_streams
        self._max_open_total = max_open_total
        self._expected: OrderedDict[StreamKey, int] = OrderedDict()
        # Streams with settling gaps, oldest first gap first (the first to settle early).
        self._open: OrderedDict[StreamKey, list[Gap]] = OrderedDict()
        self._open_count = 0
        self._ready: list[Gap] = []
        # Numbers held outside the live numbering (last values), above the expected
        # number: a gap opened over them leaves them out. At most _MAX_HELD per stream.
        self._held: OrderedDict[StreamKey, set[int]] = OrderedDict()
        self.late = 0  # arrivals below the expected number that filled no settling gap
        self.evicted = 0  # streams forgotten to stay within max_streams

    def knows(self, stream: StreamKey) -> bool:
        """Whether ``stream`` has a baseline (seen, or resumed, and not forgotten since)."""
        return stream in self._expected

    def highest(self, stream: StreamKey) -> int | None:
        """The highest sequence number seen of ``stream`` (None when it is not known)."""
        expected = self._expected.get(stream)
        return None if expected is None else expected - 1

    def resume(self, stream: StreamKey, last_seq: int) -> None:
        """Continue ``stream`` after ``last_seq`` (stored by an earlier run): the next
        reading above ``last_seq + 1`` opens a gap, as if ``last_seq`` had just arrived.

        Args:
            stream: (type name, sender node id, boot).
            last_seq: the highest sequence number of that stream logged before.
        """
        if stream not in self._expected:
            self._remember(stream, last_seq + 1)

    def hold(self, stream: StreamKey, seq: int) -> None:
        """Number ``seq`` of ``stream`` is logged (a last value, not fed to :meth:`observe`):
        it is never part of a gap. Opens no gap and sets no baseline."""
        expected = self._expected.get(stream)
        if expected is not None and seq < expected:
            self._fill(stream, seq, late=False)
            return
        held = self._held.get(stream)
        if held is None:
            held = self._held[stream] = set()
            while len(self._held) > self._max_streams:
                self._held.popitem(last=False)
        if len(held) < _MAX_HELD:
            held.add(seq)

    def observe(self, stream: StreamKey, seq: int, received_ns: int) -> None:
        """Account for one received reading of ``stream``.

        Args:
            stream: (type name, sender node id, boot).
            seq: its sequence number.
            received_ns: when the logger received it (the gap's ``detected_ns``).
        """
        expected = self._expected.get(stream)
        if expected is None:
            self._remember(stream, seq + 1)
            return
        self._expected.move_to_end(stream)
        if seq == expected:
            self._expected[stream] = seq + 1
            return
        if seq > expected:
            self._expected[stream] = seq + 1
            held = self._held.get(stream)
            if held:
                self._open_around(stream, expected, seq - 1, received_ns, held)
            else:
                self._open_gap(Gap(stream, expected, seq - 1, received_ns))
            return
        self._fill(stream, seq)

    def settled(self, now_ns: int) -> list[Gap]:
        """Take the gaps that can no longer change (detected ``settle_ns`` before ``now_ns``)."""
        cutoff = now_ns - self._settle_ns
        out, self._ready = self._ready, []
        for stream in list(self._open):
            gaps = self._open[stream]
            keep = [g for g in gaps if g.detected_ns > cutoff]
            out.extend(g for g in gaps if g.detected_ns <= cutoff)
            self._open_count -= len(gaps) - len(keep)
            if keep:
                self._open[stream] = keep
            else:
                del self._open[stream]
        return out

    def flush(self) -> list[Gap]:
        """Take every gap, settled or not (the logger is stopping)."""
        out, self._ready = self._ready, []
        for gaps in self._open.values():
            out.extend(gaps)
        self._open.clear()
        self._open_count = 0
        return out

    @property
    def streams(self) -> int:
        """Streams remembered now (at most ``max_streams``)."""
        return len(self._expected)

    @property
    def open_gaps(self) -> int:
        """Gaps settling now (at most ``max_open_total``)."""
        return self._open_count

    # -- helpers ---------------------------------------------------------------------------

    def _remember(self, stream: StreamKey, expected: int) -> None:
        self._expected[stream] = expected
        if len(self._expected) > self._max_streams:
            old, _ = self._expected.popitem(last=False)
            self.evicted += 1
            self._settle_early(old)  # nothing can fill them once the stream is forgotten

    def _open_gap(self, gap: Gap) -> None:
        gaps = self._open.setdefault(gap.stream, [])
        gaps.append(gap)
        self._open_count += 1
        if len(gaps) > self._max_open:
            self._ready.append(gaps.pop(0))
            self._open_count -= 1
        while self._open_count > self._max_open_total:
            self._settle_early(next(iter(self._open)))

    def _open_around(self, stream: StreamKey, first: int, last: int, received_ns: int,
                     held: set[int]) -> None:
        """Open the gap ``first .. last`` less the numbers held; forget those passed."""
        start = first
        for seq in sorted(n for n in held if first <= n <= last):
            if seq > start:
                self._open_gap(Gap(stream, start, seq - 1, received_ns))
            start = seq + 1
        if start <= last:
            self._open_gap(Gap(stream, start, last, received_ns))
        held.difference_update([n for n in held if n <= last + 1])
        if not held:
            del self._held[stream]

    def _settle_early(self, stream: StreamKey) -> None:
        gaps = self._open.pop(stream, None)
        if gaps:
            self._ready.extend(gaps)
            self._open_count -= len(gaps)

    def _fill(self, stream: StreamKey, seq: int, *, late: bool = True) -> None:
        gaps = self._open.get(stream, [])
        for i, gap in enumerate(gaps):
            if gap.first <= seq <= gap.last:
                pieces = [Gap(stream, gap.first, seq - 1, gap.detected_ns),
                          Gap(stream, seq + 1, gap.last, gap.detected_ns)]
                kept = [p for p in pieces if p.first <= p.last]
                gaps[i:i + 1] = kept
                self._open_count += len(kept) - 1
                if not gaps:
                    del self._open[stream]
                    return
                if len(gaps) > self._max_open:  # a split added one
                    self._ready.append(gaps.pop(0))
                    self._open_count -= 1
                while self._open_count > self._max_open_total:
                    self._settle_early(next(iter(self._open)))
                return
        if late:
            self.late += 1
