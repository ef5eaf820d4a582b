"""Shared pieces of the transport benchmark: payload layout, receive tally, statistics.

Theory of operation: every system under test carries the same application payload,
``size`` bytes whose first 16 are a little-endian header ``(seq: u64, t_ns: u64)``.
``seq`` numbers messages 0..count-1 so a receiver counts *distinct* deliveries
(duplicates do not inflate the figure), and ``t_ns`` is the sender's
``time.monotonic_ns()`` just before the send. CLOCK_MONOTONIC is one system-wide
clock on Linux, so a receiver in another process subtracts it from its own reading
to get a one-way latency. ganglion messages carry the same two numbers as typed
fields instead of a packed header.

A :class:`Tally` is the receiver's ledger; it is the same object for every system,
so per-message bookkeeping costs the same everywhere and the comparison measures
the transports, not the harness. Nothing here does I/O.
"""

from __future__ import annotations

import math
import statistics
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: The payload header: sequence number, sender timestamp (ns, CLOCK_MONOTONIC).
HEADER = struct.Struct("<QQ")

#: Payload sizes measured by default (bytes of application payload per message).
DEFAULT_SIZES = (64, 1024)


def make_payload(size: int) -> bytearray:
    """Return a reusable payload buffer of ``size`` bytes with room for the header.

    Args:
        size: total application payload in bytes.

    Returns:
        A zero-filled ``bytearray`` of ``size`` bytes.

    Raises:
        ValueError: if ``size`` is smaller than the header.
    """
    if size < HEADER.size:
        raise ValueError(f"payload size {size} is smaller than the {HEADER.size}-byte header")
    return bytearray(size)


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0..100) of ``values`` by the nearest-rank method.

    Args:
        values: the samples, in any order.
        q: the percentile wanted, 0 < q <= 100.

    Returns:
        The smallest sample such that at least ``q`` percent of samples are <= it,
        or ``nan`` when there are no samples.

    Raises:
        ValueError: if ``q`` is outside (0, 100].
    """
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is outside (0, 100]")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def median_or_nan(values: Sequence[float]) -> float:
    """Return the median of the finite values, or ``nan`` when there are none."""
    finite = [v for v in values if not math.isnan(v)]
    return float(statistics.median(finite)) if finite else math.nan


class Tally:
    """A receiver's ledger: distinct messages, duplicates, first/last arrival, latencies.

    Args:
        count: how many messages the publisher will send (sequence numbers 0..count-1).
        record_latency: keep one latency sample per distinct message.
    """

    __slots__ = (
        "count",
        "duplicates",
        "first_rx_ns",
        "last_rx_ns",
        "latencies_ns",
        "out_of_range",
        "received",
        "record_latency",
        "seen",
    )

    def __init__(self, count: int, *, record_latency: bool) -> None:
        if count <= 0:
            raise ValueError(f"message count must be positive, got {count}")
        self.count = count
        self.record_latency = record_latency
        self.seen = bytearray(count)
        self.received = 0
        self.duplicates = 0
        self.out_of_range = 0
        self.first_rx_ns = 0
        self.last_rx_ns = 0
        self.latencies_ns: array[int] = array("q")

    def on_message(self, seq: int, t_ns: int, now_ns: int) -> None:
        """Record one arrival of message ``seq`` sent at ``t_ns`` and received at ``now_ns``."""
        if not 0 <= seq < self.count:
            self.out_of_range += 1
            return
        if self.seen[seq]:
            self.duplicates += 1
            return
        self.seen[seq] = 1
        if self.received == 0:
            self.first_rx_ns = now_ns
        self.received += 1
        self.last_rx_ns = now_ns
        if self.record_latency:
            self.latencies_ns.append(now_ns - t_ns)

    @property
    def complete(self) -> bool:
        """True once every message 0..count-1 has arrived."""
        return self.received == self.count

    def summary(self) -> dict[str, Any]:
        """Return the ledger as a JSON-ready dict (latency percentiles in µs)."""
        lat_us = [v / 1000 for v in self.latencies_ns]
        return {
            "received": self.received,
            "duplicates": self.duplicates,
            "out_of_range": self.out_of_range,
            "first_rx_ns": self.first_rx_ns,
            "last_rx_ns": self.last_rx_ns,
            "latency_samples": len(lat_us),
            "p50_us": percentile(lat_us, 50) if lat_us else None,
            "p99_us": percentile(lat_us, 99) if lat_us else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialResult:
    """One publisher/subscriber run of one system at one payload size.

    ``delivered_per_s`` is the subscriber's delivery rate, distinct messages received
    divided by the time from its first to its last arrival; the same definition holds
    for every system. ``loss`` is ``1 - received / sent``.
    """

    system: str
    mode: str
    size: int
    sent: int
    received: int
    duplicates: int
    send_seconds: float
    rx_seconds: float
    p50_us: float | None
    p99_us: float | None
    extra: dict[str, Any]

    @property
    def loss(self) -> float:
        """Fraction of sent messages that never arrived (0.0..1.0)."""
        if self.sent <= 0:
            return 0.0
        return max(0.0, 1.0 - self.received / self.sent)

    @property
    def delivered_per_s(self) -> float:
        """Distinct messages received per second of the subscriber's receive window."""
        if self.received < 2 or self.rx_seconds <= 0:
            return math.nan
        return self.received / self.rx_seconds

    @property
    def sent_per_s(self) -> float:
        """Messages the publisher handed to the system per second of its send loop."""
        if self.send_seconds <= 0:
            return math.nan
        return self.sent / self.send_seconds

    def to_json(self) -> dict[str, Any]:
        """Return the raw numbers plus the derived rates as a JSON-ready dict."""
        return {
            "system": self.system,
            "mode": self.mode,
            "size": self.size,
            "sent": self.sent,
            "received": self.received,
            "duplicates": self.duplicates,
            "send_seconds": self.send_seconds,
            "rx_seconds": self.rx_seconds,
            "loss": self.loss,
            "delivered_per_s": _finite_or_none(self.delivered_per_s),
            "sent_per_s": _finite_or_none(self.sent_per_s),
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "extra": self.extra,
        }


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: map it to null."""
    return None if math.isnan(value) else value
