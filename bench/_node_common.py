"""Shared pieces of the node benchmark: the message type, ports, the line protocol.

Theory of operation: the benchmark's orchestrator (``bench/node.py``) and its
worker processes (``bench/_node_worker.py``) talk over the workers' stdin and
stdout. The orchestrator writes one command per line (``go``, ``quit``, ``expect
NAME``, ...); a worker answers with one JSON object per line, always with an
``event`` key. Worker stdout carries nothing else (logging goes to stderr).

Times that cross processes are ``time.monotonic_ns()`` readings: CLOCK_MONOTONIC
is one system-wide clock on Linux, so the orchestrator subtracts a worker's
reading from its own (or another worker's) directly.

Every measurement uses its own data port (the control port is the next one),
so a straggler of one measurement can never be heard by another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ganglion import message

#: Data port per measurement (control = port + 1); all on 127.0.0.1 in the namespace.
PORTS = {
    "startup": 47810,
    "agree3": 47820,
    "agree10": 47830,
    "e2e_internal": 47840,
    "e2e_bus": 47850,
    "rss_idle": 47860,
    "rss_idle_nomdns": 47870,
    "rss_types": 47880,
    "inprocess": 47890,
    "bus_local": 47900,
    "bus_latency": 47910,
    "idle": 47920,
    "idle_peers": 47930,
    "idle_uvloop": 47940,
}

#: The only interface the benchmark uses.
LOOPBACK = "127.0.0.1"

#: Phases carried in :class:`NodeReading`: warm-up messages are not measured.
WARMUP, MEASURED = 0, 1


@message("bench.NodeReading")
@dataclass(slots=True)
class NodeReading:
    """A small reading with what a receiver needs to measure it.

    Attributes:
        seq: 0..count-1 in the measured phase, so receivers count distinct messages.
        phase: :data:`WARMUP` or :data:`MEASURED`.
        mono_ns: the sender's ``time.monotonic_ns()`` just before publishing.
        celsius: a value, as a real sensor would send.
        sensor: the sensor's identity.
    """

    seq: int
    phase: int
    mono_ns: int
    celsius: float
    sensor: str


def emit(event: str, **fields: Any) -> None:
    """Print one protocol line (a JSON object with ``event``) and flush it.

    Args:
        event: what happened (``ready``, ``result``, ...).
        fields: more JSON-serialisable keys.
    """
    print(json.dumps({"event": event, **fields}, separators=(",", ":")), flush=True)


def parse_line(line: str) -> dict[str, Any] | None:
    """Parse a worker's output line; None when it is not a protocol line.

    Args:
        line: one line of a worker's stdout.

    Returns:
        The JSON object when the line is one with an ``event`` key, else None.
    """
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        return None
    return obj


class Tally:
    """A receiver's ledger of measured messages: distinct count, arrival span, latencies.

    Args:
        count: messages the sender will send (seq 0..count-1).
        keep_latency: record one-way latencies (paced runs).
    """

    def __init__(self, count: int, *, keep_latency: bool) -> None:
        self.count = count
        self.seen = bytearray(count)
        self.received = 0
        self.duplicates = 0
        self.first_ns = 0
        self.last_ns = 0
        self.keep_latency = keep_latency
        self.latencies_us: list[float] = []

    def add(self, seq: int, sent_ns: int, now_ns: int) -> None:
        """Record one measured message that arrived at ``now_ns``.

        Args:
            seq: its sequence number (ignored when out of range).
            sent_ns: the sender's monotonic timestamp.
            now_ns: this process's monotonic time of arrival.
        """
        if not 0 <= seq < self.count:
            return
        if self.seen[seq]:
            self.duplicates += 1
            return
        self.seen[seq] = 1
        self.received += 1
        if self.received == 1:
            self.first_ns = now_ns
        self.last_ns = now_ns
        if self.keep_latency:
            self.latencies_us.append((now_ns - sent_ns) / 1000.0)

    @property
    def complete(self) -> bool:
        """True once every message has arrived."""
        return self.received >= self.count

    def result(self) -> dict[str, Any]:
        """The tally as JSON-ready numbers (rate: received / first-to-last arrival span, as in transport.py)."""
        span = (self.last_ns - self.first_ns) / 1e9
        rate = self.received / span if span > 0 else 0.0
        return {"received": self.received, "duplicates": self.duplicates,
                "rx_seconds": span, "delivered_per_s": rate,
                "latencies_us": self.latencies_us}
