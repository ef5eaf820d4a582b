"""The receiver's side of repair: which missing numbers to ask for, when, and when to give up.

Theory of operation (docs/protocol.md 7.7): the node tells the :class:`Requester`
what its sequence tracking sees: numbers skipped (:meth:`~Requester.on_gap`),
numbers that arrived after all (:meth:`~Requester.on_filled`), a sender's
heartbeat naming the last number of a quiet stream (:meth:`~Requester.on_tail`),
other receivers' requests (:meth:`~Requester.on_overheard`), "gone" answers and
restarts. :meth:`~Requester.poll` says what to send and what to record.

* **Delay and suppression.** A missing number is first asked for after a random
  delay, uniform in ``[0, delay]``. Every receiver that missed the same datagram
  notices at about the same moment (when the next one arrives); the first whose
  delay ends asks, on the control group, and the others overhear that request and
  treat it as their own (an attempt made, the retry timer started): one request
  instead of one per receiver. Numbers noticed while a request waits join it.
* **Retries.** A number still missing ``retry`` seconds after it was asked for
  (by us or by someone we overheard) is asked for again; the wait doubles each
  time (at most ``max_retry``). After ``attempts`` attempts the number is
  permanently lost (:class:`PermanentGap`, reason ``timeout``): a sender of an
  older version never answers, and that costs a bounded number of requests.
* **Giving up.** A sender that says "gone" ends the wait at once. A stream
  missing more than ``max_missing`` numbers (the sequence tracker's window: older
  numbers could not be delivered anyway) gives up its oldest; so does the stream
  missing most when the node misses more than ``max_outstanding`` in all, and a
  stream pushed out of the ``max_streams`` table. Requests leave at most at
  ``requests_per_second`` (a token bucket); a node hopelessly behind thus records
  its gaps (reason ``behind``) instead of storming the network with requests.
* **Tails.** A heartbeat's tail names a sender's last number; if the receiver's
  highest is lower, the numbers in between are a gap like any other. Each number
  is reported once per stream: numbers at or below what was already seen missing
  (``known``) are not taken again, so a tail repeated by every heartbeat of a quiet
  sender costs nothing after the first.
* **Carried in the heartbeat.** Every node sends a heartbeat anyway (every 0.5 s).
  When a first request falls due, the node's next heartbeat is at most
  ``carry_wait`` away (the caller says when: ``poll(now, carrier=...)``) and the
  stream's numbers waiting for it stay within ``carry_max``, the numbers *ride*: they
  wait for that heartbeat, and :meth:`~Requester.carry` hands the heartbeat its
  ``repairs`` (the same requests, in a field of a datagram sent anyway). An isolated
  loss then costs one repair instead of a request and a repair, at the price of up to
  one heartbeat interval of latency; and since heartbeats fall on the wall clock's
  grid, the requests of every receiver reach the sender together and share one
  repair. Bursts (more than ``carry_max`` numbers), retries, and a heartbeat further
  off than ``carry_wait`` go as requests of their own; so do riding numbers whose
  heartbeat is ``carry_grace`` late (never a wait without end).

Pure: time is an argument and randomness comes from the ``rng`` given.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Callable, Iterable

from ganglion.ratelimit import TokenBucket
from ganglion.repair.messages import MAX_RANGES, MAX_REQUESTED, RepairRequest
from ganglion.types import encode_payload

__all__ = ["PermanentGap", "RepairStreamStats", "RequestAction", "Requester", "RequesterConfig",
           "StreamKey", "to_ranges"]

#: A stream: (sender node id, type name, boot).
StreamKey = tuple[bytes, str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class RequesterConfig:
    """Timing and bounds of the requester (docs/protocol.md 7.7 gives the reasons).

    Attributes:
        delay: a first request waits uniformly in [0, delay] seconds (suppression).
        retry: the first retry waits this long after a request (then doubles).
        max_retry: the longest wait between two attempts.
        attempts: requests per number (ours or overheard) before it is permanently lost.
        max_missing: most numbers one stream may be missing; beyond, the oldest are given up.
        max_outstanding: most numbers missing in all streams together.
        max_streams: most streams remembered (their counters and what was seen missing).
        requests_per_second: node-wide rate of requests (a bucket of ``request_burst``).
        request_burst: requests that may go at once after a quiet spell.
        carry_wait: a first request rides the next heartbeat when it is due within
            this many seconds (0: never; see the module docstring).
        carry_max: most numbers of one stream riding a heartbeat (more: a burst, asked
            for at once in a request of its own).
        carry_streams: most streams whose requests ride one heartbeat.
        carry_grace: riding numbers whose heartbeat is this late are asked for alone.
    """

    delay: float = 0.100
    retry: float = 0.150
    max_retry: float = 1.0
    attempts: int = 10
    max_missing: int = 1024
    max_outstanding: int = 8192
    max_streams: int = 1024
    requests_per_second: float = 200.0
    request_burst: int = 64
    carry_wait: float = 0.35
    carry_max: int = 16
    carry_streams: int = 8
    carry_grace: float = 0.1

    def __post_init__(self) -> None:
        if not (self.delay >= 0 and self.retry > 0 and self.max_retry >= self.retry):
            raise ValueError("repair delay must be >= 0 and 0 < retry <= max_retry")
        if self.attempts < 1 or self.max_missing < 1 or self.max_outstanding < 1:
            raise ValueError("repair attempts and bounds must be at least 1")
        if self.max_streams < 1 or self.request_burst < 1 or self.requests_per_second < 0:
            raise ValueError("repair stream bound and request rate out of range")
        if not (self.carry_wait >= 0 and self.carry_grace > 0 and self.carry_max >= 1
                and self.carry_streams >= 1):
            raise ValueError("repair carry_wait must be >= 0, carry_grace > 0 and the "
                             "carry bounds at least 1")


@dataclasses.dataclass(frozen=True, slots=True)
class RequestAction:
    """Send ``request`` to the control group (it is addressed to the stream's sender)."""

    key: StreamKey
    request: RepairRequest


@dataclasses.dataclass(frozen=True, slots=True)
class PermanentGap:
    """Numbers ``first..last`` of stream ``key`` will never arrive: record the gap.

    ``reason`` is ``"gone"`` (the sender said so), ``"timeout"`` (no answer after
    every attempt), ``"restart"`` (the sender restarted) or ``"behind"`` (given up:
    too many missing, see the module docstring).
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
        repair_requests_sent: requests this node sent for the stream (alone, or
            carried in its heartbeat).
        repair_requests_carried: of those, the ones carried in a heartbeat.
        repair_requests_suppressed: requests held back because another node asked first.
        numbers_requested: sequence numbers asked for (all requests, retries included).
        permanently_lost: numbers given up (gone, timed out, restarted, behind).
        gone: of those, the numbers the sender said it no longer holds.
        missing: numbers missing now and still awaited.
    """

    repaired: int = 0
    repair_requests_sent: int = 0
    repair_requests_carried: int = 0
    repair_requests_suppressed: int = 0
    numbers_requested: int = 0
    permanently_lost: int = 0
    gone: int = 0
    missing: int = 0


class _Stream:
    """What one stream misses: number -> [due time, attempts made, riding].

    ``riding`` is 1.0 while the number waits for the node's next heartbeat to carry
    its first request (its due time is then the heartbeat's plus the grace).
    """

    __slots__ = ("counts", "known", "missing", "next_due")

    def __init__(self) -> None:
        self.missing: dict[int, list[float]] = {}
        self.known = -1  # the highest number ever seen missing or reported
        self.next_due = float("inf")
        self.counts: collections.Counter[str] = collections.Counter()

    def recompute(self) -> None:
        self.next_due = min((m[0] for m in self.missing.values()), default=float("inf"))


def to_ranges(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted numbers as inclusive ``(first, last)`` ranges of consecutive ones."""
    ranges: list[tuple[int, int]] = []
    for n in numbers:
        if ranges and ranges[-1][1] + 1 == n:
            ranges[-1] = (ranges[-1][0], n)
        else:
            ranges.append((n, n))
    return ranges


class Requester:
    """Asks senders for what this node missed (sans-IO: the caller sends and records).

    Args:
        config: timing and bounds.
        rng: randomness for the request delays (seed it in tests).
        now: the current time, for the request bucket.
    """

    def __init__(self, config: RequesterConfig | None = None, *,
                 rng: random.Random | None = None, now: float = 0.0) -> None:
        self.config = config or RequesterConfig()
        self._rng = rng or random.Random()
        self._streams: collections.OrderedDict[StreamKey, _Stream] = collections.OrderedDict()
        self._active: set[StreamKey] = set()  # streams missing something
        self._outstanding = 0  # numbers missing, all streams
        self._gaps: list[PermanentGap] = []  # to hand out at the next poll
        # Numbers given up lately, all streams, oldest first (at most max_outstanding):
        # a repair of one arriving afterwards (an answer to another receiver's retry)
        # is not delivered, so a recorded gap stays a gap.
        self._abandoned: collections.OrderedDict[tuple[StreamKey, int], None] = \
            collections.OrderedDict()
        # Streams with numbers riding the next heartbeat (see carry()).
        self._riding: set[StreamKey] = set()
        self._bucket = TokenBucket(self.config.requests_per_second,
                                   self.config.request_burst, now)
        #: Node-wide counters: streams_evicted, request_rate_limited, given_up_behind.
        self.counts: collections.Counter[str] = collections.Counter()
        #: Called when :meth:`next_deadline` may have come nearer outside the driver's
        #: own calls (a gap reported by the receive path): the driver re-arms its timer.
        self.on_change: Callable[[], None] | None = None

    # -- what the node saw -------------------------------------------------------

    def on_gap(self, key: StreamKey, first: int, last: int, now: float) -> None:
        """Numbers ``first..last`` of ``key`` are missing (a jump in the numbering)."""
        stream = self._stream(key)
        first = max(first, stream.known + 1)
        if last < first:
            return
        stream.known = last
        window = self.config.max_missing
        if last - first + 1 > window:
            # More than the tracker's window: the older ones could not be delivered.
            self._give_up(key, stream, [(first, last - window)], "behind")
            first = last - window + 1
        due = now + self._rng.uniform(0.0, self.config.delay)
        missing = stream.missing
        for seq in range(first, last + 1):
            missing[seq] = [due, 0.0, 0.0]
        self._outstanding += last - first + 1
        stream.next_due = min(stream.next_due, due)
        self._active.add(key)
        # Numbers that fell out of the window below the newest one are hopeless. Numbers
        # enter ``missing`` ascending (each gap lies above ``known``), so the dict's
        # order is ascending: the hopeless ones are at its front.
        floor = last - window + 1
        old = []
        for seq in missing:
            if seq >= floor:
                break
            old.append(seq)
        if old:
            self._drop(key, stream, old, "behind")
        self._enforce_outstanding()
        if self.on_change is not None:
            self.on_change()

    def on_filled(self, key: StreamKey, seq: int, now: float) -> None:
        """A missing number of ``key`` arrived (late or repaired)."""
        stream = self._streams.get(key)
        if stream is None or stream.missing.pop(seq, None) is None:
            return
        self._outstanding -= 1
        stream.counts["repaired"] += 1
        if not stream.missing:
            self._active.discard(key)
            stream.next_due = float("inf")

    def abandoned(self, key: StreamKey, seq: int) -> bool:
        """Whether ``seq`` of ``key`` was given up (recorded as a permanent gap) lately.

        The node drops a repair of such a number: it arrives after its gap was
        recorded (an answer to another receiver's retry), and delivering it would
        contradict the record. The last ``max_outstanding`` numbers given up (the
        last ``max_missing`` of each gap) are known.
        """
        return (key, seq) in self._abandoned

    def on_tail(self, key: StreamKey, last_seq: int, highest: int | None, now: float) -> None:
        """The sender's heartbeat says its last number; ``highest`` is ours (None: no baseline)."""
        if highest is None or highest >= last_seq:
            return
        self.on_gap(key, highest + 1, last_seq, now)

    def on_overheard(self, sender: bytes, req: RepairRequest, now: float) -> None:
        """Another node asked ``req.to`` for numbers: count that as our attempt too."""
        try:
            to = req.to.to_bytes(8, "big")
        except (OverflowError, AttributeError):
            return
        key = (to, req.type_name, req.boot)
        stream = self._streams.get(key)
        if stream is None or not stream.missing:
            return
        missing = stream.missing
        held = False
        for first, last in req.ranges:
            if last - first >= len(missing):
                numbers: Iterable[int] = [s for s in missing if first <= s <= last]
            else:
                numbers = range(first, last + 1)
            for seq in numbers:
                entry = missing.get(seq)
                if entry is None:
                    continue
                # As if we had sent it: the answer (to the group) reaches us too (a
                # number riding our next heartbeat need not ride it any more).
                entry[1] += 1
                entry[0] = now + self._backoff(int(entry[1]))
                entry[2] = 0.0
                held = True
        if held:
            stream.counts["repair_requests_suppressed"] += 1
            stream.recompute()

    def on_gone(self, key: StreamKey, first: int, last: int, now: float) -> None:
        """The sender no longer holds ``first..last``: they are lost for good."""
        stream = self._streams.get(key)
        if stream is None:
            return
        missing = stream.missing
        if last - first >= len(missing):
            numbers = sorted(s for s in missing if first <= s <= last)
        else:
            numbers = [s for s in range(first, last + 1) if s in missing]
        if numbers:
            self._drop(key, stream, numbers, "gone")

    def on_restart(self, sender: bytes, type_name: str, boot: int, now: float) -> None:
        """``sender`` restarted with ``boot``: older boots' missing numbers are lost."""
        for key in [k for k in self._streams if k[0] == sender and k[1] == type_name
                    and k[2] < boot]:
            stream = self._streams[key]
            if stream.missing:
                self._drop(key, stream, sorted(stream.missing), "restart")

    def forget(self, type_name: str) -> None:
        """Nobody subscribes to ``type_name`` any more: stop asking for it.

        What its streams miss is dropped without a :class:`PermanentGap` (nobody
        records the type now); their counters stay, so the node's statistics still
        say what repair did for them (a logger's summary after it unsubscribed).
        """
        for key in [k for k in self._active if k[1] == type_name]:
            stream = self._streams[key]
            self._outstanding -= len(stream.missing)
            stream.missing.clear()
            stream.next_due = float("inf")
            self._active.discard(key)

    # -- what to do --------------------------------------------------------------

    def poll(self, now: float, *, carrier: float | None = None
             ) -> list[RequestAction | PermanentGap]:
        """What to send and record now: requests due, numbers given up.

        Args:
            now: the current time.
            carrier: when this node's next heartbeat leaves (None: no heartbeat will
                carry requests); first requests may ride it (see the module docstring).
        """
        out: list[RequestAction | PermanentGap] = []
        cfg = self.config
        if carrier is not None:
            carrier = max(carrier, now)
            if carrier - now > cfg.carry_wait:
                carrier = None
        for key in sorted(self._active, key=lambda k: (self._streams[k].next_due, k)):
            stream = self._streams[key]
            if stream.next_due > now:
                break
            missing = stream.missing
            expired = sorted(s for s, m in missing.items()
                             if m[0] <= now and m[1] >= cfg.attempts)
            if expired:
                self._drop(key, stream, expired, "timeout")
            # Due now, and those waiting for their first request that are due within
            # one delay (one request instead of two; not those held back by an
            # overheard request: that would undo the suppression, nor those riding).
            soon = now + cfg.delay
            due = sorted(s for s, m in missing.items()
                         if m[0] <= now or (m[0] <= soon and m[1] == 0 and not m[2]))
            if carrier is not None and due:
                due = self._ride(key, stream, due, carrier)
            while due:
                if not self._bucket.take(now):
                    self.counts["request_rate_limited"] += 1
                    later = now + 1.0 / max(cfg.requests_per_second, 1.0)
                    for seq in due:
                        missing[seq][0] = max(missing[seq][0], later)
                    break
                ranges, due = _first_request(due)
                self._asked(stream, ranges, now)
                out.append(RequestAction(key, RepairRequest(
                    to=int.from_bytes(key[0], "big"), type_name=key[1], boot=key[2],
                    ranges=[[a, b] for a, b in ranges])))
            stream.recompute()
            if not missing:
                self._active.discard(key)
        gaps, self._gaps = self._gaps, []
        return [*gaps, *out]

    def carry(self, now: float, *, max_bytes: int | None = None) -> list[RepairRequest]:
        """The requests the heartbeat leaving now carries (its ``repairs``).

        Every riding number is asked for, and so is every number still waiting for its
        first request's random delay when its stream's first requests stay within
        ``carry_max`` (the heartbeat costs nothing, and a number that waited would
        miss it and ride the next one). Each counts as an attempt made, its retry
        timer started, as if sent alone; at most ``carry_streams`` requests, and at
        most ``max_bytes`` of them encoded (None: no bound). What finds no room is
        asked for alone, at once. The caller sends the heartbeat at once.
        """
        out: list[RepairRequest] = []
        cfg = self.config
        size = 0
        riding, self._riding = self._riding, set()
        keys = riding | self._active if cfg.carry_wait > 0 else riding
        for key in sorted(keys):
            stream = self._streams.get(key)
            if stream is None:
                continue
            missing = stream.missing
            numbers = sorted(s for s, m in missing.items() if m[2] or m[1] == 0)
            if len(numbers) > cfg.carry_max:
                numbers = [s for s in numbers if missing[s][2]]  # a burst goes alone
            if not numbers:
                continue
            ranges, rest = _first_request(numbers)
            req = RepairRequest(to=int.from_bytes(key[0], "big"), type_name=key[1],
                                boot=key[2], ranges=[[a, b] for a, b in ranges])
            cost = len(encode_payload(req)) if max_bytes is not None else 0
            if len(out) >= cfg.carry_streams or (max_bytes is not None
                                                 and size + cost > max_bytes):
                rest = numbers  # no room: asked for alone, at once
            else:
                self._asked(stream, ranges, now)
                stream.counts["repair_requests_carried"] += 1
                out.append(req)
                size += cost
            for seq in rest:
                entry = missing[seq]
                entry[0], entry[2] = min(entry[0], now), 0.0
            stream.recompute()
        return out

    @property
    def riding(self) -> int:
        """Numbers waiting for the next heartbeat to carry their first request."""
        return sum(1 for key in self._riding if key in self._streams
                   for m in self._streams[key].missing.values() if m[2])

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to do (None: nothing pending)."""
        if self._gaps:
            return float("-inf")
        due = min((self._streams[k].next_due for k in self._active), default=None)
        return due

    def stats(self) -> dict[StreamKey, RepairStreamStats]:
        """Counters of every stream remembered."""
        return {key: RepairStreamStats(
                    repaired=s.counts["repaired"],
                    repair_requests_sent=s.counts["repair_requests_sent"],
                    repair_requests_carried=s.counts["repair_requests_carried"],
                    repair_requests_suppressed=s.counts["repair_requests_suppressed"],
                    numbers_requested=s.counts["numbers_requested"],
                    permanently_lost=s.counts["permanently_lost"],
                    gone=s.counts["gone"], missing=len(s.missing))
                for key, s in self._streams.items()}

    @property
    def outstanding(self) -> int:
        """Numbers missing and awaited, all streams."""
        return self._outstanding

    # -- bookkeeping -------------------------------------------------------------

    def _asked(self, stream: _Stream, ranges: list[tuple[int, int]], now: float) -> None:
        """One request for ``ranges`` went out (alone or carried): an attempt each."""
        missing = stream.missing
        for first, last in ranges:
            for seq in range(first, last + 1):
                entry = missing[seq]
                entry[1] += 1
                entry[0] = now + self._backoff(int(entry[1]))
                entry[2] = 0.0
        stream.counts["repair_requests_sent"] += 1
        stream.counts["numbers_requested"] += sum(b - a + 1 for a, b in ranges)

    def _ride(self, key: StreamKey, stream: _Stream, due: list[int],
              carrier: float) -> list[int]:
        """Let ``due``'s first requests wait for the heartbeat at ``carrier`` if they
        may (see the module docstring); returns the numbers still to ask for now."""
        cfg = self.config
        missing = stream.missing
        first = [s for s in due if missing[s][1] == 0 and not missing[s][2]]
        if not first:
            return due
        if key not in self._riding and len(self._riding) >= cfg.carry_streams:
            return due
        waiting = sum(1 for m in missing.values() if m[2])
        if waiting + len(first) > cfg.carry_max:
            return due  # a burst: asked for at once, alone
        for seq in first:
            entry = missing[seq]
            entry[0], entry[2] = carrier + cfg.carry_grace, 1.0
        self._riding.add(key)
        riding = set(first)
        return [s for s in due if s not in riding]

    def _backoff(self, attempts: int) -> float:
        cfg = self.config
        return min(cfg.max_retry, cfg.retry * (1 << min(attempts - 1, 30)))

    def _stream(self, key: StreamKey) -> _Stream:
        stream = self._streams.get(key)
        if stream is not None:
            self._streams.move_to_end(key)
            return stream
        if len(self._streams) >= self.config.max_streams:
            # Least recently used first: a stream missing nothing forgets little.
            old_key, old = next(iter(self._streams.items()))
            for k, s in self._streams.items():
                if not s.missing:
                    old_key, old = k, s
                    break
            if old.missing:
                self._drop(old_key, old, sorted(old.missing), "behind")
            del self._streams[old_key]
            self._active.discard(old_key)
            self.counts["streams_evicted"] += 1
        stream = self._streams[key] = _Stream()
        return stream

    def _drop(self, key: StreamKey, stream: _Stream, numbers: list[int], reason: str) -> None:
        """Stop waiting for ``numbers`` (sorted, all missing) and record them lost."""
        for seq in numbers:
            del stream.missing[seq]
        self._outstanding -= len(numbers)
        self._give_up(key, stream, to_ranges(numbers), reason)
        if not stream.missing:
            self._active.discard(key)
        stream.recompute()

    def _give_up(self, key: StreamKey, stream: _Stream, ranges: list[tuple[int, int]],
                 reason: str) -> None:
        window = self.config.max_missing
        abandoned = self._abandoned
        for first, last in ranges:
            for seq in range(max(first, last - window + 1), last + 1):
                abandoned[(key, seq)] = None
            while len(abandoned) > self.config.max_outstanding:
                abandoned.popitem(last=False)
            count = last - first + 1
            stream.counts["permanently_lost"] += count
            if reason == "gone":
                stream.counts["gone"] += count
            if reason == "behind":
                self.counts["given_up_behind"] += count
            self._gaps.append(PermanentGap(key, first, last, reason))
        if len(self._gaps) > 4 * self.config.max_outstanding:
            # Never polled: keep the newest (the caller counts per stream anyway).
            del self._gaps[:len(self._gaps) - self.config.max_outstanding]
            self.counts["gaps_dropped"] += 1

    def _enforce_outstanding(self) -> None:
        while self._outstanding > self.config.max_outstanding:
            key = max(self._active, key=lambda k: len(self._streams[k].missing))
            stream = self._streams[key]
            excess = self._outstanding - self.config.max_outstanding
            oldest = sorted(stream.missing)[:excess]
            self._drop(key, stream, oldest, "behind")


def _first_request(due: list[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """The ranges of one request from sorted ``due`` numbers, and the numbers left over."""
    ranges: list[tuple[int, int]] = []
    for i, seq in enumerate(due):
        if ranges and ranges[-1][1] + 1 == seq:
            ranges[-1] = (ranges[-1][0], seq)
        elif len(ranges) == MAX_RANGES:
            return ranges, due[i:]
        else:
            ranges.append((seq, seq))
        if i + 1 == MAX_REQUESTED:
            return ranges, due[i + 1:]
    return ranges, []
