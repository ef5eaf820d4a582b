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
which the caller does not feed in.

Pure: time comes in as the readings' ``received_ns``; no clock is read.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Gap", "GapTracker", "StreamKey"]

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
    """Finds gaps in per-stream sequence numbers.

    Args:
        settle_ns: how long a gap may still be filled by late arrivals.
        max_open: settling gaps kept per stream; beyond it the oldest settles early.
    """

    def __init__(self, *, settle_ns: int = 2_000_000_000, max_open: int = 64) -> None:
        self._settle_ns = settle_ns
        self._max_open = max_open
        self._expected: dict[StreamKey, int] = {}
        self._open: dict[StreamKey, list[Gap]] = {}
        self._ready: list[Gap] = []
        self.late = 0  # arrivals below the expected number that filled no settling gap

    def observe(self, stream: StreamKey, seq: int, received_ns: int) -> None:
        """Account for one received reading of ``stream``."""
        expected = self._expected.get(stream)
        if expected is None or seq == expected:
            self._expected[stream] = seq + 1
            return
        if seq > expected:
            self._expected[stream] = seq + 1
            gaps = self._open.setdefault(stream, [])
            gaps.append(Gap(stream, expected, seq - 1, received_ns))
            if len(gaps) > self._max_open:
                self._ready.append(gaps.pop(0))
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
        return out

    def _fill(self, stream: StreamKey, seq: int) -> None:
        gaps = self._open.get(stream, [])
        for i, gap in enumerate(gaps):
            if gap.first <= seq <= gap.last:
                pieces = [Gap(stream, gap.first, seq - 1, gap.detected_ns),
                          Gap(stream, seq + 1, gap.last, gap.detected_ns)]
                gaps[i:i + 1] = [p for p in pieces if p.first <= p.last]
                if not gaps:
                    del self._open[stream]
                return
        self.late += 1
