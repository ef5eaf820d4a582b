"""The control channel's repair glue: requests, repairs, history answers and tails.

Theory of operation (docs/protocol.md 7.7): the sans-IO machines of
:mod:`ganglion.repair` do the deciding; this module moves their input and output
between them and the control endpoint, and wakes them on time.

* **Receiving.** A ``RepairRequest`` addressed to this node goes to the
  :class:`~ganglion.repair.Responder`; one addressed to another node is
  overheard by the :class:`~ganglion.repair.Requester` (suppression). A ``Repair``
  to the group hands each message to the data endpoint's ``deliver_repair`` (the
  sequence tracking decides: once per number, and the requester is told through
  the endpoint's gap hooks) and its ``gone`` ranges to the requester. A ``Repair``
  addressed to this node answers a ``HistoryRequest``: it is delivered only for a
  nonce this node issued for that type in the last :data:`HISTORY_ANSWER_SECONDS`,
  so a recorded answer replayed later delivers nothing. A heartbeat's ``tails``
  go to the data endpoint's ``note_tail`` (stream = the heartbeat's sender, the
  type, the heartbeat's boot), which turns a higher last number into a gap. A
  heartbeat's ``repairs`` are requests carried in it: each is taken exactly as if it
  had come alone (answered when addressed to this node, overheard otherwise).
* **Sending.** The machines' ``poll()`` runs from one timer set for the earlier of
  their ``next_deadline()``: repair waits are milliseconds, far below the
  consensus's ticks, so this timer is not the tick clock's (which would round them
  up to a tick). Requests and repairs are published on the control endpoint; a
  Repair goes out alone (one per poll, ``REPAIR_PACE`` apart) so that it travels
  as one datagram of at most ``MAX_DATAGRAM`` bytes, never an IP-fragmented batch
  (on Wi-Fi, losing one fragment loses them all). First requests may instead ride
  the node's next heartbeat (``Requester.poll``'s ``carrier``: the control channel
  says when that leaves, :attr:`RepairGlue.carrier`); the heartbeat takes them from
  :meth:`RepairGlue.carried`.
* **Permanent gaps** are handed to ``on_gap`` (the node's stats and logger) and
  kept in a bounded list for whoever asks later.

Malformed input is counted (``repair_malformed``, ``history_malformed``,
``tails_malformed``, ``repair_unsolicited``) and dropped.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from ganglion import defaults
from ganglion.repair import (
    History,
    HistoryRequest,
    PermanentGap,
    Repair,
    RepairRequest,
    Requester,
    Responder,
    StreamKey,
    Tail,
)
from ganglion.repair.messages import valid_ranges
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import FINGERPRINT_SIZE, encode_payload, is_valid_type_name
from ganglion.wire import overhead

__all__ = ["HISTORY_ANSWER_SECONDS", "MAX_CARRIED", "MAX_TAILS", "RepairGlue", "RepairParts"]

_log = logging.getLogger(__name__)

#: Seconds after a HistoryRequest during which answers to its nonce are delivered.
HISTORY_ANSWER_SECONDS = 10.0
#: History requests remembered at most (their nonces).
MAX_NONCES = 256
#: Most entries of a heartbeat's ``tails`` sent or read.
MAX_TAILS = 32
#: Most requests a heartbeat's ``repairs`` carries (sent: the requester's
#: ``carry_streams``, 8 by default) or that are read from one.
MAX_CARRIED = 16
#: Most bytes the requests carried in one heartbeat take (a heartbeat must stay within
#: the control datagram's 16 KiB with its longest ``subscribes``: 12,000 bytes).
MAX_CARRIED_BYTES = 1024
#: Seconds between two Repairs sent (each its own datagram).
REPAIR_PACE = 0.001
#: Permanent gaps kept for :meth:`RepairGlue.permanent_gaps`.
MAX_GAPS_KEPT = 1024
#: Bytes a Repair may take in one datagram (an unfragmented data-sized datagram, with
#: room for the envelope of an encrypted network and the message's framing).
_REPAIR_NAME = "ganglion.control.Repair"
REPAIR_MAX_BYTES = (defaults.MAX_DATAGRAM - overhead(_REPAIR_NAME, signed=True, encrypted=True)
                    - 16)


class DeliverRepair(Protocol):
    """``Endpoint.deliver_repair`` of the data endpoint."""

    def __call__(self, type_name: str, fingerprint: bytes, *, sender: bytes, boot: int,
                 seq: int, sent_ns: int, payload: bytes, clock_synced: bool = ...,
                 source: tuple[str, int] | None = ..., history: bool = ...) -> bool: ...


@dataclasses.dataclass
class RepairParts:
    """What the node gives the control channel for repair (docs/protocol.md 7.7).

    Attributes:
        history: this node's history of what it published; None answers every
            request with "gone" (nothing kept).
        requester: the requester the data endpoint's gap hooks feed; None when this
            node does not ask for repairs (``--no-repair``).
        deliver: the data endpoint's ``deliver_repair``.
        note_tail: the data endpoint's ``note_tail(sender, type, boot, last_seq)``.
        fingerprint: the schema fingerprint of a type this node publishes, or None.
        boot: the boot of the data endpoint (the numbers the history holds).
        on_gap: told of every permanent gap (stats, the logger), or None.
    """

    deliver: DeliverRepair
    note_tail: Callable[[bytes, str, int, int], int]
    fingerprint: Callable[[str], bytes | None]
    boot: int
    history: History | None = None
    requester: Requester | None = None
    on_gap: Callable[[PermanentGap], None] | None = None


class RepairGlue:
    """Repair on one control channel (see the module docstring).

    Args:
        parts: what the node gives.
        endpoint: the control endpoint (already started by the channel).
        node_id: this node's id.
        clock_synced: whether this node's clock is synchronised.
        heartbeat_seconds: a type is announced in ``tails`` once it was quiet this long.
    """

    def __init__(self, parts: RepairParts, endpoint: Endpoint, *, node_id: bytes,
                 clock_synced: Callable[[], bool], heartbeat_seconds: float) -> None:
        self.parts = parts
        self.endpoint = endpoint
        self.node_id = node_id
        self.int_id = int.from_bytes(node_id, "big")
        self.history = parts.history if parts.history is not None else History(
            total_bytes=0, boot=parts.boot)
        self.history.boot = parts.boot  # the data endpoint's: the numbers it holds
        self.requester = parts.requester
        loop = asyncio.get_running_loop()
        self.responder = Responder(self.history, node_id=node_id, fingerprint=parts.fingerprint,
                                   clock_synced=clock_synced, max_bytes=REPAIR_MAX_BYTES,
                                   per_poll=1, pace=REPAIR_PACE, now=loop.time())
        self._quiet = heartbeat_seconds
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._nonces: collections.OrderedDict[bytes, tuple[str, float]] = \
            collections.OrderedDict()
        self._gaps: collections.deque[PermanentGap] = collections.deque(maxlen=MAX_GAPS_KEPT)
        self.counts: collections.Counter[str] = collections.Counter()
        #: When this node's next heartbeat leaves (loop time), or None: set by the
        #: control channel, so first requests may ride it (docs/protocol.md 7.7).
        self.carrier: Callable[[], float | None] | None = None
        self._closed = False

    def start(self) -> None:
        """Subscribe to the repair messages on the control endpoint."""
        if self.requester is not None:
            # The receive path reports gaps to the requester directly: re-arm the timer.
            self.requester.on_change = self.schedule
        ep = self.endpoint
        ep.subscribe(RepairRequest, callback=self._on_request)
        ep.subscribe(Repair, callback=self._on_repair)
        ep.subscribe(HistoryRequest, callback=self._on_history_request)

    def close(self) -> None:
        """Stop the timer (nothing is sent after)."""
        self._closed = True
        if self.requester is not None and self.requester.on_change == self.schedule:
            self.requester.on_change = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- asked by the node -------------------------------------------------------

    def request_history(self, type_name: str, seconds: float) -> bytes:
        """Ask every publisher of ``type_name`` for what it holds of the last ``seconds``.

        Returns:
            The request's nonce (answers to it are delivered for
            :data:`HISTORY_ANSWER_SECONDS`).
        """
        now = asyncio.get_running_loop().time()
        nonce = os.urandom(8)
        self._nonces[nonce] = (type_name, now + HISTORY_ANSWER_SECONDS)
        while len(self._nonces) > MAX_NONCES:
            self._nonces.popitem(last=False)
        since = max(0, time.time_ns() - int(seconds * 1e9))
        self.endpoint.publish(HistoryRequest(type_name=type_name, since_ns=since, nonce=nonce))
        self.counts["history_requests_sent"] += 1
        return nonce

    def tails(self) -> list[Tail] | None:
        """The heartbeat's ``tails``: quiet types with their last number (None: none)."""
        found = self.history.tails(asyncio.get_running_loop().time(), quiet=self._quiet,
                                   limit=MAX_TAILS)
        return [Tail(type_name=name, last_seq=seq) for name, seq in found] or None

    def carried(self) -> list[RepairRequest] | None:
        """The heartbeat's ``repairs``: the requests riding it (None: none).

        Called as the heartbeat is built; the numbers count as asked for from now.
        """
        if self.requester is None or self._closed or not self.requester.outstanding:
            return None  # (the idle case costs one attribute read per heartbeat)
        found = self.requester.carry(asyncio.get_running_loop().time(),
                                     max_bytes=MAX_CARRIED_BYTES)
        self.schedule()  # what did not fit is due at once, and the retries
        if not found:
            return None
        self.counts["repair_requests_carried"] += len(found)
        # What they add to the heartbeat (the field's null is there anyway): reported
        # by bench/repair.py beside the datagrams they save.
        self.counts["repair_carried_bytes"] += sum(len(encode_payload(r)) for r in found)
        return found

    # -- the data path's gap hooks (ganglion.runtime._incoming.GapHooks) ------------
    # The receive path tells the requester of gaps through these (Node.start sets them),
    # so that the timer is set for the request they make due. A requester told
    # directly wakes the glue too (Requester.on_change, set in start()): either way.

    def on_gap(self, key: StreamKey, first: int, last: int, now: float) -> None:
        """Numbers ``first .. last`` of a stream were skipped: ask for them in time."""
        if self.requester is not None:
            self.requester.on_gap(key, first, last, now)  # on_change sets the timer

    def on_filled(self, key: StreamKey, seq: int, now: float) -> None:
        """A missing number arrived after all."""
        if self.requester is not None:
            self.requester.on_filled(key, seq, now)

    def on_restart(self, sender: bytes, type_name: str, boot: int, now: float) -> None:
        """The sender started a new boot: its older boots' gaps are permanent now."""
        if self.requester is not None:
            self.requester.on_restart(sender, type_name, boot, now)
            self.schedule()

    def on_tails(self, tails: object, info: MessageInfo) -> None:
        """A peer's heartbeat ``tails``: each may reveal a gap in one of its streams."""
        if tails is None or info.local:
            return
        if not isinstance(tails, list):
            self.counts["tails_malformed"] += 1
            return
        for tail in tails[:MAX_TAILS]:
            if not (isinstance(tail, Tail) and isinstance(tail.type_name, str)
                    and is_valid_type_name(tail.type_name) and type(tail.last_seq) is int
                    and 0 <= tail.last_seq < 1 << 64):
                self.counts["tails_malformed"] += 1
                continue
            if self.parts.note_tail(info.sender, tail.type_name, info.boot, tail.last_seq):
                self.counts["tail_gaps"] += 1
        self.schedule()

    def on_carried(self, repairs: object, info: MessageInfo) -> None:
        """A peer's heartbeat ``repairs``: requests taken as if each came alone."""
        if repairs is None or info.local:
            return
        if not isinstance(repairs, list):
            self.counts["repair_malformed"] += 1
            return
        if len(repairs) > MAX_CARRIED:
            self.counts["repair_malformed"] += len(repairs) - MAX_CARRIED
        now = asyncio.get_running_loop().time()
        for req in repairs[:MAX_CARRIED]:
            self._take_request(req, info, now)
        self.schedule()

    def permanent_gaps(self) -> list[PermanentGap]:
        """The latest permanent gaps (at most :data:`MAX_GAPS_KEPT`), oldest first."""
        return list(self._gaps)

    def stats(self) -> dict[str, Any]:
        """Counters (for the control channel's stats), and the machines' own."""
        out: dict[str, Any] = {**self.counts, **self.responder.counts}
        if self.requester is not None:
            out.update({f"requester_{k}": v for k, v in self.requester.counts.items()})
            out["repair_outstanding"] = self.requester.outstanding
        out["repair_pending"] = self.responder.pending
        return out

    # -- receiving ---------------------------------------------------------------

    def _on_request(self, req: RepairRequest, info: MessageInfo) -> None:
        if info.local:
            return
        self._take_request(req, info, asyncio.get_running_loop().time())
        self.schedule()

    def _take_request(self, req: object, info: MessageInfo, now: float) -> None:
        """One request, alone or carried by a heartbeat: answered or overheard."""
        if not (isinstance(req, RepairRequest) and type(req.to) is int
                and isinstance(req.type_name, str) and is_valid_type_name(req.type_name)
                and type(req.boot) is int and valid_ranges(req.ranges)):
            self.counts["repair_malformed"] += 1
            return
        if req.to == self.int_id:
            self.responder.on_request(info.sender, req, now)
        elif self.requester is not None:
            self.requester.on_overheard(info.sender, req, now)

    def _on_history_request(self, req: HistoryRequest, info: MessageInfo) -> None:
        if info.local:
            return
        if not isinstance(req, HistoryRequest):
            self.counts["history_malformed"] += 1
            return
        self.responder.on_history_request(info.sender, req,
                                          asyncio.get_running_loop().time())
        self.schedule()

    def _on_repair(self, rep: Repair, info: MessageInfo) -> None:
        if info.local:
            return
        if not _plausible_repair(rep):
            self.counts["repair_malformed"] += 1
            return
        now = asyncio.get_running_loop().time()
        history = rep.to is not None
        if history:
            if rep.to != self.int_id:
                return
            asked = self._nonces.get(rep.nonce or b"")
            if asked is None or asked[0] != rep.type_name or asked[1] < now:
                self.counts["repair_unsolicited"] += 1  # a replay, or an answer too late
                return
        deliver = self.parts.deliver
        key = (info.sender, rep.type_name, rep.boot)
        requester = self.requester
        for seq, sent_ns, payload in zip(rep.seqs, rep.sent_ns, rep.payloads, strict=True):
            if not history and requester is not None and requester.abandoned(key, seq):
                # Its gap is recorded already (an answer to another receiver's retry):
                # delivering it now would contradict the record.
                self.counts["repair_after_gap"] += 1
                continue
            if deliver(rep.type_name, rep.fingerprint, sender=info.sender, boot=rep.boot,
                       seq=seq, sent_ns=sent_ns, payload=payload,
                       clock_synced=rep.clock_synced, source=info.source, history=history):
                self.counts["repaired_received"] += 1
        if requester is not None and not history:
            for first, last in rep.gone:
                requester.on_gone(key, first, last, now)
        self.schedule()

    # -- the timer ---------------------------------------------------------------

    def schedule(self) -> None:
        """Set the timer for the machines' next deadline (call after every input)."""
        if self._closed:
            return
        deadlines = [self.responder.next_deadline()]
        if self.requester is not None:
            deadlines.append(self.requester.next_deadline())
        due = min((d for d in deadlines if d is not None), default=None)
        if due is None:
            return
        if self._timer is not None:
            if self._timer_at <= due:
                return
            self._timer.cancel()
        self._timer_at = due
        self._timer = asyncio.get_running_loop().call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        try:
            self._poll(asyncio.get_running_loop().time())
        except Exception:
            self.counts["repair_errors"] += 1
            _log.exception("repair step failed")
        finally:
            self.schedule()

    def _poll(self, now: float) -> None:
        ep = self.endpoint
        if self.requester is not None:
            carrier = self.carrier() if self.carrier is not None else None
            for action in self.requester.poll(now, carrier=carrier):
                if isinstance(action, PermanentGap):
                    self._gaps.append(action)
                    if self.parts.on_gap is not None:
                        try:
                            self.parts.on_gap(action)
                        except Exception:
                            _log.exception("recording a permanent gap failed")
                else:
                    ep.publish(action.request)
                    self.counts["repair_requests_sent"] += 1
        for repair in self.responder.poll(now):
            ep.publish(repair)
            self.counts["repairs_sent"] += 1
        # Forget nonces whose answers are no longer taken.
        while self._nonces:
            nonce, (_name, until) = next(iter(self._nonces.items()))
            if until >= now:
                break
            del self._nonces[nonce]


def _plausible_repair(rep: object) -> bool:
    """Every field of a Repair within what a real one holds (docs/protocol.md 7.7)."""
    if not (isinstance(rep, Repair) and isinstance(rep.type_name, str)
            and is_valid_type_name(rep.type_name) and isinstance(rep.fingerprint, bytes)
            and len(rep.fingerprint) == FINGERPRINT_SIZE and type(rep.boot) is int
            and 0 <= rep.boot < 1 << 32 and isinstance(rep.clock_synced, bool)
            and (rep.to is None or (type(rep.to) is int and 0 <= rep.to < 1 << 64))
            and (rep.nonce is None or (isinstance(rep.nonce, bytes) and 0 < len(rep.nonce) <= 32))
            and isinstance(rep.seqs, list) and isinstance(rep.sent_ns, list)
            and isinstance(rep.payloads, list)
            and len(rep.seqs) == len(rep.sent_ns) == len(rep.payloads)):
        return False
    previous = -1
    for seq, sent_ns, payload in zip(rep.seqs, rep.sent_ns, rep.payloads, strict=True):
        if not (type(seq) is int and previous < seq < 1 << 64 and type(sent_ns) is int
                and 0 <= sent_ns < 1 << 64 and isinstance(payload, bytes) and payload):
            return False
        previous = seq
    return valid_ranges(rep.gone, max_ranges=1024, max_numbers=None)
