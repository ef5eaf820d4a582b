"""Receive-side sequence tracking per (sender, type): gaps, duplicates, reordering, replays.

Theory of operation: every sender numbers the messages of each type 0, 1, 2, ...
and stamps each datagram with its *boot* counter, which it increases (and
persists) every time it starts; sequence numbers restart from 0 with each boot.
A :class:`SequenceTracker` keeps, for one (sender, type), the current boot, the
highest sequence number seen ``H`` and a sliding bitmap of which of
``H - window + 1 .. H`` arrived (the anti-replay window of RFC 4303 section
3.4.3 and appendix A). :meth:`SequenceTracker.observe` classifies each message:

* ``NEW``: above ``H``. A jump counts the skipped numbers as *lost*.
* ``LATE``: below ``H`` inside the window and not seen yet: a reordered late
  arrival. It is delivered, counted as *reordered*, and fills its gap
  (*lost* goes down by one).
* ``DUPLICATE``: inside the window and already seen. Dropped.
* ``STALE``: older than the window, so it cannot be told from a replay. Dropped
  and counted; with a network key this is the replay defence.
* ``RESTART``: the sender restarted (a higher boot). State is reset; the
  numbers 0..seq-1 of the new boot that did not arrive count as lost.

Strict mode (use it with a network key, where boot and sequence are covered by
the MAC) accepts a restart only as a *higher* boot, so replaying an old boot's
datagrams yields ``STALE``. Without a key, nothing stops a forger anyway, so the
tracker is lenient with senders that do not persist their boot counter: any
boot change is a restart, and so is a jump back to a sequence number below the
window size with the same boot, *if* the message's timestamp is newer than any
seen from that sender (a duplicate delayed past the window has an old one).

The first message seen from a sender sets the baseline: a receiver that joins
a running stream counts no losses for what came before, and takes every number
below the baseline as already seen (``STALE``): a receiver that restarted cannot
tell a datagram sent before it listened from a replay of a recorded one, so with
a network key a recording replayed after a receiver's restart is not delivered
again. The same holds after :meth:`SequenceTracker.rebase`. A forward jump larger
than ``max_gap`` is treated as a resynchronisation (``RESTART``) rather than
billions of losses. Time and memory per message are bounded whatever the
numbers: a jump of a window or more resets the bitmap instead of shifting it.
Memory is bounded: a tracker is a few ints, and
:class:`SequenceTable` keeps at most ``max_entries`` trackers, evicting the
least recently used.

Pure logic: no clock, no I/O; the same calls give the same verdicts.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import OrderedDict

#: Default replay/reorder window in messages.
DEFAULT_WINDOW = 1024
#: Default largest forward jump still counted as lost messages.
DEFAULT_MAX_GAP = 1 << 32


class Verdict(enum.Enum):
    """What :meth:`SequenceTracker.observe` decided about one message."""

    NEW = "new"
    LATE = "late"
    DUPLICATE = "duplicate"
    STALE = "stale"
    RESTART = "restart"

    @property
    def deliver(self) -> bool:
        """True if the message should be handed to subscribers."""
        return self in _DELIVER


_DELIVER = frozenset({Verdict.NEW, Verdict.LATE, Verdict.RESTART})


@dataclasses.dataclass(frozen=True, slots=True)
class SequenceStats:
    """A snapshot of one (sender, type)'s counters.

    Attributes:
        received: messages delivered (NEW, LATE and RESTART verdicts).
        lost: sequence numbers skipped and not (yet) filled by a late arrival.
        duplicates: messages seen twice within the window (dropped).
        reordered: late arrivals that filled a gap (delivered).
        stale: messages older than the window or from an older boot (dropped;
            with a network key these are replays).
        restarts: sender restarts and resynchronisations.
        schema_mismatches: messages whose schema fingerprint differed from ours.
        highest: the highest sequence number seen in the current boot.
        boot: the sender's current boot counter.
        repaired: messages delivered from a repair or a history answer (NACK
            repair, ``ganglion.repair``): a gap filled by its publisher (so
            also counted in ``reordered``, and no longer in ``lost``), or a
            message from before this receiver listened.
        repair_requests_sent: repair requests this node sent for the stream.
        repair_requests_suppressed: requests held back because another receiver
            asked for the same numbers first.
        permanently_lost: numbers given up for good (gone from the publisher's
            history, no answer after the retries, or too far behind); still
            counted in ``lost``.

    The last three come from the node's repair requester (``Endpoint.stats``
    fills them in); a bare tracker leaves them 0.
    """

    received: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    stale: int = 0
    restarts: int = 0
    schema_mismatches: int = 0
    highest: int | None = None
    boot: int | None = None
    repaired: int = 0
    repair_requests_sent: int = 0
    repair_requests_suppressed: int = 0
    permanently_lost: int = 0


class SequenceTracker:
    """Sequence state of one (sender, type).

    Args:
        window: how many sequence numbers below the highest are remembered.
        strict: replay-safe mode for keyed networks (see the module docstring).
        max_gap: largest forward jump counted as losses; larger is a resync.

    Raises:
        ValueError: ``window`` or ``max_gap`` is not positive.
    """

    __slots__ = (
        "_boot",
        "_floor",
        "_highest",
        "_mask",
        "_newest_ts",
        "_resync",
        "_seen",
        "duplicates",
        "lost",
        "max_gap",
        "received",
        "reordered",
        "repaired",
        "restarts",
        "schema_mismatches",
        "stale",
        "strict",
        "window",
    )

    def __init__(
        self, *, window: int = DEFAULT_WINDOW, strict: bool = False,
        max_gap: int = DEFAULT_MAX_GAP,
    ) -> None:
        if window < 1 or max_gap < 1:
            raise ValueError(f"window and max_gap must be positive, got {window}, {max_gap}")
        self.window = window
        self.strict = strict
        self.max_gap = max_gap
        self._mask = (1 << window) - 1
        self._highest = -1
        self._boot: int | None = None
        self._seen = 0  # bit i set: sequence number _highest - i arrived
        self._floor = 0  # gaps below this were never counted as lost
        self._newest_ts = -1  # newest sender timestamp seen (lenient restart check)
        self._resync = False  # rebase(): the next new message is a baseline
        self.received = 0
        self.lost = 0
        self.duplicates = 0
        self.reordered = 0
        self.stale = 0
        self.restarts = 0
        self.schema_mismatches = 0
        self.repaired = 0

    @property
    def boot(self) -> int | None:
        """The sender's current boot counter; None before the first message."""
        return self._boot

    @property
    def highest(self) -> int | None:
        """The highest sequence number seen in the current boot; None before the first."""
        return None if self._boot is None else self._highest

    def below_baseline(self, seq: int, boot: int) -> bool:
        """Whether ``seq`` of ``boot`` is below this tracker's baseline: sent before this
        receiver started listening to the stream (or before a rebase), so never judged
        here and never counted as lost (a history answer may deliver it)."""
        return boot == self._boot and seq < self._floor

    def extend(self, last: int) -> int:
        """Take ``highest + 1 .. last`` as sent and not (yet) arrived: a gap the sender
        announced (its last sequence number, a heartbeat's tail) rather than one seen
        by a later message.

        They count as lost, and each arriving later is LATE (delivered, filling its
        gap), exactly as after a jump to ``last + 1``; only ``last`` itself is not
        taken as seen. Nothing is done before the first message, while a rebase is
        pending, or when ``last`` is not above the highest (or is a jump larger than
        ``max_gap``).

        Returns:
            How many numbers were added to the gap (0: nothing done).
        """
        jump = last - self._highest
        if self._boot is None or self._resync or jump < 1 or jump > self.max_gap:
            return 0
        self._seen = (self._seen << jump) & self._mask if jump < self.window else 0
        self._highest = last
        self.lost += jump
        return jump

    def observe(self, seq: int, boot: int = 0, ts_ns: int = -1) -> Verdict:
        """Classify one message and update the counters.

        Args:
            seq: the message's sequence number (>= 0).
            boot: the sender's boot counter from the envelope.
            ts_ns: the sender's timestamp of the message; only used (when not
                strict) to tell a same-boot restart from a very late duplicate.

        Returns:
            The :class:`Verdict`; deliver the message iff ``verdict.deliver``.
        """
        if ts_ns > self._newest_ts:
            newer, self._newest_ts = True, ts_ns
        else:
            newer = False
        if boot != self._boot:
            if self._boot is None:
                return self._start(seq, boot, count_lost=False)
            if boot > self._boot or not self.strict:
                self.restarts += 1
                return self._start(seq, boot, count_lost=not self._resync)
            self.stale += 1
            return Verdict.STALE
        highest = self._highest
        if seq > highest:
            jump = seq - highest
            if jump > self.max_gap:
                self.restarts += 1
                return self._start(seq, boot, count_lost=False)
            if self._resync:
                self._resync = False
                self._floor = seq  # a pause in sending, not loss
            else:
                self.lost += jump - 1
            # A jump of a window or more leaves only this number in the window; shifting
            # by the jump would build a jump-bit integer first (2**32 bits: 1 GB, seconds).
            self._seen = ((self._seen << jump) | 1) & self._mask if jump < self.window else 1
            self._highest = seq
            self.received += 1
            return Verdict.NEW
        offset = highest - seq
        # Older than the window, or below the baseline: sent before this receiver started
        # listening (or before a resynchronisation), which cannot be told from a replay of
        # a recorded datagram, so it counts as already seen.
        if offset >= self.window or seq < self._floor:
            if not self.strict and seq < self.window and newer:
                self.restarts += 1  # back near 0, same boot, newer clock: a restart
                return self._start(seq, boot, count_lost=not self._resync)
            self.stale += 1
            return Verdict.STALE
        bit = 1 << offset
        if self._seen & bit:
            self.duplicates += 1
            return Verdict.DUPLICATE
        self._seen |= bit
        self.received += 1
        self.reordered += 1
        self.lost -= 1  # seq >= _floor: its gap was counted
        return Verdict.LATE

    def observe_run(self, first_seq: int, count: int, boot: int, newest_ts: int) -> bool:
        """Accept ``count`` consecutive messages at once when they simply continue the stream.

        The common case of a datagram: same boot, numbers ``first_seq`` .. ``first_seq
        + count - 1`` right after the highest seen, no rebase pending. Then the
        outcome of :meth:`observe` for each is known (every one NEW, nothing lost),
        and this applies it in one step: the same counters, window and newest
        timestamp that ``count`` calls of :meth:`observe` would leave.

        Args:
            first_seq: the first message's sequence number.
            count: how many messages (>= 1).
            boot: the sender's boot counter from the envelope.
            newest_ts: the largest timestamp among the messages.

        Returns:
            True if all were accepted as NEW; False if nothing was done (call
            :meth:`observe` per message instead).
        """
        # ganglion/_c/receive.c (observe_run) does these same steps for the compiled
        # receive path: a change here must be made there too (the tests compare them).
        if boot != self._boot or first_seq != self._highest + 1 or self._resync or count < 1:
            return False
        if newest_ts > self._newest_ts:
            self._newest_ts = newest_ts
        self._seen = ((self._seen << count) | ((1 << count) - 1)) & self._mask
        self._highest = first_seq + count - 1
        self.received += count
        return True

    def rebase(self) -> None:
        """Start a new baseline at the next message, keeping the counters.

        The next message that is newer than any seen (or from a new boot) is
        taken as the first one is: the numbers the sender skipped meanwhile are
        not counted as lost. Older messages are still judged against the window,
        so a replayed or duplicated one is still dropped. A receiver calls this
        when it stops listening to the type, as its senders may then stop sending
        (publisher-side matching) while still numbering their messages.
        """
        self._resync = True

    def note_schema_mismatch(self) -> bool:
        """Count a message whose fingerprint differs from ours.

        Returns:
            True the first time for this (sender, type), so the caller logs once.
        """
        self.schema_mismatches += 1
        return self.schema_mismatches == 1

    def stats(self) -> SequenceStats:
        """Return a snapshot of the counters."""
        return SequenceStats(
            received=self.received,
            lost=self.lost,
            duplicates=self.duplicates,
            reordered=self.reordered,
            stale=self.stale,
            restarts=self.restarts,
            schema_mismatches=self.schema_mismatches,
            highest=None if self._boot is None else self._highest,
            boot=self._boot,
            repaired=self.repaired,
        )

    def _start(self, seq: int, boot: int, *, count_lost: bool) -> Verdict:
        """Begin a new boot at ``seq``; after a restart numbers 0..seq-1 are lost."""
        first = self._boot is None
        self._resync = False
        self._boot = boot
        self._highest = seq
        self._seen = 1
        if count_lost:
            self.lost += min(seq, self.max_gap)
            self._floor = 0
        else:
            self._floor = seq
        self.received += 1
        return Verdict.NEW if first else Verdict.RESTART


class SequenceTable:
    """Trackers for every (sender node id, type name), bounded in number.

    Args:
        window: passed to each :class:`SequenceTracker`.
        strict: passed to each tracker; True on networks with a key.
        max_entries: most trackers kept; the least recently used is evicted.

    Raises:
        ValueError: ``max_entries`` is not positive.
    """

    def __init__(
        self, *, window: int = DEFAULT_WINDOW, strict: bool = False, max_entries: int = 4096
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        self.window = window
        self.strict = strict
        self.max_entries = max_entries
        self.evicted = 0
        self._trackers: OrderedDict[tuple[bytes, str], SequenceTracker] = OrderedDict()

    def tracker(self, node_id: bytes, type_name: str) -> SequenceTracker:
        """Return the tracker of (``node_id``, ``type_name``), creating it if needed."""
        key = (node_id, type_name)
        trackers = self._trackers
        tracker = trackers.get(key)
        if tracker is None:
            if len(trackers) >= self.max_entries:
                trackers.popitem(last=False)
                self.evicted += 1
            tracker = trackers[key] = SequenceTracker(window=self.window, strict=self.strict)
        else:
            trackers.move_to_end(key)
        return tracker

    def peek_tracker(self, node_id: bytes, type_name: str) -> SequenceTracker | None:
        """The tracker of (``node_id``, ``type_name``) if there is one (never creates one,
        nor counts as a use)."""
        return self._trackers.get((node_id, type_name))

    def peek(self, node_id: bytes, type_name: str) -> SequenceStats | None:
        """Return the counters of (``node_id``, ``type_name``) without creating a tracker."""
        tracker = self._trackers.get((node_id, type_name))
        return None if tracker is None else tracker.stats()

    def observe(
        self, node_id: bytes, type_name: str, seq: int, boot: int = 0, ts_ns: int = -1
    ) -> Verdict:
        """Classify one message of ``type_name`` from ``node_id``.

        Args:
            node_id: the sender's node id.
            type_name: the message's type name.
            seq: its sequence number.
            boot: the sender's boot counter.
            ts_ns: the sender's timestamp of the message (see
                :meth:`SequenceTracker.observe`).

        Returns:
            The :class:`Verdict`.
        """
        return self.tracker(node_id, type_name).observe(seq, boot, ts_ns)

    def rebase(self, type_name: str) -> int:
        """:meth:`SequenceTracker.rebase` every sender's tracker of ``type_name``.

        Returns:
            How many trackers were rebased.
        """
        trackers = [t for (_node, name), t in self._trackers.items() if name == type_name]
        for tracker in trackers:
            tracker.rebase()
        return len(trackers)

    def note_schema_mismatch(self, node_id: bytes, type_name: str) -> bool:
        """Count a fingerprint mismatch; True the first time per (sender, type)."""
        return self.tracker(node_id, type_name).note_schema_mismatch()

    def stats(self) -> dict[tuple[bytes, str], SequenceStats]:
        """Return a snapshot of every tracker's counters, keyed by (node id, type name)."""
        return {key: t.stats() for key, t in self._trackers.items()}

    def __len__(self) -> int:
        return len(self._trackers)
