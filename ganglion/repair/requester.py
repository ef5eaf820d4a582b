"""The receiver's side of repair: which missing numbers to ask for, when, and when to give up.

Theory of operation: see docs/protocol.md 7.7. Stub of the interface; the body follows.
"""

from __future__ import annotations

import dataclasses
import random

from ganglion.repair.messages import RepairRequest

__all__ = ["PermanentGap", "RepairStreamStats", "RequestAction", "Requester", "RequesterConfig",
           "StreamKey"]

#: A stream: (sender node id, type name, boot).
StreamKey = tuple[bytes, str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class RequesterConfig:
    """Timing and bounds of the requester (docs/protocol.md 7.7 gives the defaults' reasons).

    Attributes:
        delay: a first request waits uniformly in [0, delay] seconds (suppression).
        retry: the first retry waits this long after a request (then doubles).
        attempts: requests per number before it is permanently lost.
        max_missing: most numbers one stream may be missing; beyond, the oldest are given up.
        max_outstanding: most numbers missing in all streams together.
        max_streams: most streams with something missing.
        requests_per_second: node-wide rate of requests (a bucket of ``request_burst``).
        request_burst: requests that may go at once after a quiet spell.
    """

    delay: float = 0.010
    retry: float = 0.040
    attempts: int = 4
    max_missing: int = 1024
    max_outstanding: int = 8192
    max_streams: int = 256
    requests_per_second: float = 200.0
    request_burst: int = 64


@dataclasses.dataclass(frozen=True, slots=True)
class RequestAction:
    """Send ``request`` to the control group (it is addressed to the stream's sender)."""

    key: StreamKey
    request: RepairRequest


@dataclasses.dataclass(frozen=True, slots=True)
class PermanentGap:
    """Numbers ``first..last`` of stream ``key`` will never arrive: record the gap.

    ``reason`` is ``"gone"`` (the sender said so), ``"timeout"`` (no answer after
    every attempt), ``"restart"`` (the sender restarted), ``"behind"`` (given up:
    too many missing, see the module docstring) or ``"unsubscribed"``.
    """

    key: StreamKey
    first: int
    last: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class RepairStreamStats:
    """One stream's repair counters.

    Attributes:
        repaired: missing numbers that arrived after all (a repair or a late datagram).
        repair_requests_sent: requests this node sent for the stream.
        repair_requests_suppressed: requests held back because another node asked first.
        numbers_requested: sequence numbers asked for (all requests, retries included).
        permanently_lost: numbers given up (gone, timed out, restarted, behind).
        gone: of those, the numbers the sender said it no longer holds.
        missing: numbers missing now and still awaited.
    """

    repaired: int = 0
    repair_requests_sent: int = 0
    repair_requests_suppressed: int = 0
    numbers_requested: int = 0
    permanently_lost: int = 0
    gone: int = 0
    missing: int = 0


class Requester:
    """Asks senders for what this node missed (sans-IO: the caller sends and records).

    Args:
        config: timing and bounds.
        rng: randomness for the request delays (seed it in tests).
    """

    def __init__(self, config: RequesterConfig | None = None, *,
                 rng: random.Random | None = None) -> None:
        self.config = config or RequesterConfig()
        self._rng = rng or random.Random()

    def on_gap(self, key: StreamKey, first: int, last: int, now: float) -> None:
        """Numbers ``first..last`` of ``key`` are missing (a jump in the numbering)."""
        raise NotImplementedError

    def on_filled(self, key: StreamKey, seq: int, now: float) -> None:
        """A missing number of ``key`` arrived (late or repaired)."""
        raise NotImplementedError

    def on_tail(self, key: StreamKey, last_seq: int, highest: int | None, now: float) -> None:
        """The sender's heartbeat says its last number; ``highest`` is ours (None: no baseline)."""
        raise NotImplementedError

    def on_overheard(self, sender: bytes, req: RepairRequest, now: float) -> None:
        """Another node asked ``req.to`` for numbers: hold back our request for them."""
        raise NotImplementedError

    def on_gone(self, key: StreamKey, first: int, last: int, now: float) -> None:
        """The sender no longer holds ``first..last``: they are lost for good."""
        raise NotImplementedError

    def on_restart(self, sender: bytes, type_name: str, boot: int, now: float) -> None:
        """``sender`` restarted with ``boot``: older boots' missing numbers are lost."""
        raise NotImplementedError

    def forget(self, type_name: str) -> None:
        """Nobody subscribes to ``type_name`` any more: stop asking for it."""
        raise NotImplementedError

    def poll(self, now: float) -> list[RequestAction | PermanentGap]:
        """What to send and record now."""
        raise NotImplementedError

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to do (None: nothing pending)."""
        raise NotImplementedError

    def stats(self) -> dict[StreamKey, RepairStreamStats]:
        """Counters of every stream that had something missing."""
        raise NotImplementedError
