"""The sender's side of repair: answering requests from the history, within a budget.

Theory of operation (docs/protocol.md 7.7): a :class:`~ganglion.repair.messages.RepairRequest`
addressed to this node and to its current boot is looked up in the
:class:`~ganglion.repair.history.History`. What is found waits a short ``hold``
(a few ms) so that requests of several receivers for the same or neighbouring
numbers are answered together: one :class:`~ganglion.repair.messages.Repair` per
type and boot carries every message due, as published, split so each fits
``max_bytes``. Numbers not held (evicted, never kept, or of an older boot: a
restarted sender has none of its old numbers) are answered as ``gone``, so the
requester stops asking. A number repaired within the last ``guard`` seconds is not
sent again: the repair went to the group, so a second receiver asking for it at
once is a request that crossed the repair in flight (its retry, later, is
answered).

A :class:`~ganglion.repair.messages.HistoryRequest` is answered with the kept
messages at or after its ``since_ns``, in Repairs tagged with the requester's id
and the request's nonce.

**Budget.** Every message sent costs a token of the requester's bucket and of the
node's (``ganglion.defaults.REPAIR_PER_REQUESTER``/``REPAIR_TOTAL``, and the
``HISTORY_*`` pair for history answers); what the buckets refuse is counted
(``repair_rate_limited``) and not sent. A request is charged one token before
any work is done (it pays for the first message or for a gone answer), so a flood
is turned away at the price of a bucket check.
Answers waiting to be sent are bounded (``max_queued`` Repairs, ``max_pending``
messages): a flood of requests can neither make the node send more than the
buckets allow nor grow its memory. Repairs leave at most ``per_poll`` at a time,
``pace`` seconds apart, so a large history answer does not overrun a socket
buffer or a Wi-Fi queue.

Pure: time is an argument.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from ganglion import defaults
from ganglion.ratelimit import KeyedBuckets, TokenBucket
from ganglion.repair.history import History, Message
from ganglion.repair.messages import (
    HistoryRequest,
    Repair,
    RepairRequest,
    count_numbers,
    valid_ranges,
)
from ganglion.types import FINGERPRINT_SIZE, encode_payload, is_valid_type_name

__all__ = ["Responder"]

#: Longest history-request nonce accepted (ours are 8 bytes).
MAX_NONCE = 32
#: The per-type counters :meth:`Responder.stats` reports.
TYPE_COUNTERS = ("repair_requests_received", "repaired_sent", "gone_sent",
                 "repair_rate_limited", "history_requests_received", "history_sent",
                 "repairs_sent")


def _uint_size(n: int) -> int:
    """Bytes of a CBOR unsigned integer (or of a length head)."""
    return 1 if n < 24 else 2 if n < 256 else 3 if n < 65536 else 5 if n < 1 << 32 else 9


def _message_size(item: Message) -> int:
    seq, sent_ns, payload = item
    return _uint_size(seq) + _uint_size(sent_ns) + _uint_size(len(payload)) + len(payload)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


class _Pending:
    """What one (type, boot) will answer at ``due``."""

    __slots__ = ("due", "found", "gone")

    def __init__(self, due: float) -> None:
        self.due = due
        self.found: dict[int, Message] = {}
        self.gone: list[tuple[int, int]] = []


class Responder:
    """Answers repair and history requests addressed to this node (sans-IO).

    Args:
        history: this node's history (its ``boot`` is the boot answered).
        node_id: this node's id (requests whose ``to`` is another node are ignored).
        fingerprint: the schema fingerprint of a type this node publishes, or None.
        clock_synced: whether this node's clock is synchronised now.
        max_bytes: most payload bytes of one Repair message (a big answer is split);
            a single message too large for it goes alone, up to ``hard_max_bytes``.
        hard_max_bytes: a message whose Repair would exceed this is answered as gone.
        hold: seconds a repair waits for other requests to join it.
        guard: seconds during which a number just repaired is not sent again.
        per_poll: most Repairs :meth:`poll` returns at once.
        pace: seconds between two polls that send (when more is queued).
        max_pending: most messages waiting for their hold to end, all types.
        max_queued: most Repairs built and waiting to be sent.
        now: the current time, for the buckets.
    """

    def __init__(self, history: History, *, node_id: bytes = b"\0" * 8,
                 fingerprint: Callable[[str], bytes | None] = lambda _name: None,
                 clock_synced: Callable[[], bool] = lambda: True,
                 max_bytes: int = 1200, hard_max_bytes: int = 15_000,
                 hold: float = 0.080, guard: float = 0.050, per_poll: int = 16,
                 pace: float = 0.002, max_pending: int = 4096, max_queued: int = 512,
                 max_keys: int = defaults.RATE_TABLE_KEYS, now: float = 0.0) -> None:
        self.history = history
        self.node_id = node_id
        self.int_id = int.from_bytes(node_id, "big")
        self._fingerprint = fingerprint
        self._clock_synced = clock_synced
        self.max_bytes = max_bytes
        self.hard_max_bytes = max(hard_max_bytes, max_bytes)
        self.hold = hold
        self.guard = guard
        self.per_poll = per_poll
        self.pace = pace
        self.max_pending = max_pending
        self.max_queued = max_queued
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._pending_count = 0
        self._queue: collections.deque[Repair] = collections.deque()
        self._next_send = float("-inf")
        # Numbers repaired recently, per type: seq -> when (pruned past ``guard``).
        self._recent: dict[str, dict[int, float]] = {}
        self._by_requester: KeyedBuckets[bytes] = KeyedBuckets(
            *defaults.REPAIR_PER_REQUESTER, max_keys=max_keys)
        self._total = TokenBucket(*defaults.REPAIR_TOTAL, now=now)
        self._history_by_requester: KeyedBuckets[bytes] = KeyedBuckets(
            *defaults.HISTORY_PER_REQUESTER, max_keys=max_keys)
        self._history_total = TokenBucket(*defaults.HISTORY_TOTAL, now=now)
        self._types: dict[str, collections.Counter[str]] = {}
        #: Node-wide counters: repair_malformed, repair_boot_unknown, repair_queue_full, ...
        self.counts: collections.Counter[str] = collections.Counter()

    # -- requests ----------------------------------------------------------------

    def on_request(self, requester: bytes, req: RepairRequest, now: float) -> None:
        """A repair request arrived (ignored unless addressed to this node and boot)."""
        if not (isinstance(req, RepairRequest) and type(req.to) is int
                and type(req.boot) is int and isinstance(req.type_name, str)
                and is_valid_type_name(req.type_name) and valid_ranges(req.ranges)):
            self.counts["repair_malformed"] += 1
            return
        if req.to != self.int_id:
            return
        history = self.history
        counts = self._counts(req.type_name)
        counts["repair_requests_received"] += 1
        if req.boot > history.boot:
            self.counts["repair_boot_unknown"] += 1  # not a boot of ours: forged or confused
            return
        # One token before any work: a requester (or the node) out of budget costs a
        # bisection-free refusal, so a flood is cheap to turn away.
        if not (self._by_requester.take(requester, now) and self._total.take(now)):
            counts["repair_rate_limited"] += count_numbers(req.ranges)
            return
        key = (req.type_name, req.boot)
        pending = self._pending.get(key)
        found: list[Message] = []
        gone: list[tuple[int, int]] = []
        for first, last in req.ranges:
            if req.boot < history.boot:
                gone.append((first, last))  # an older boot: none of it is held
                continue
            got, lost = history.lookup(req.type_name, first, last, now)
            found += got
            gone += lost
        recent = self._recent.get(req.type_name)
        if pending is not None or recent:
            held = pending.found if pending is not None else {}
            ok = recent or {}
            fresh = [item for item in found if item[0] not in held
                     and now - ok.get(item[0], -1e300) >= self.guard]
        else:
            fresh = found
        # The token taken pays for the first message (or for the gone answer).
        room = self.max_pending - self._pending_count
        allowed = max(0, min(len(fresh), 1, room))
        while (allowed < len(fresh) and allowed < room
               and self._by_requester.take(requester, now) and self._total.take(now)):
            allowed += 1
        if allowed < len(fresh):
            counts["repair_rate_limited"] += len(fresh) - allowed
        if not allowed and not gone:
            return
        if pending is None:
            pending = self._pending[key] = _Pending(now + self.hold)
        for item in fresh[:allowed]:
            pending.found[item[0]] = item
        self._pending_count += allowed
        pending.gone += gone

    def on_history_request(self, requester: bytes, req: HistoryRequest, now: float) -> None:
        """A history request arrived (answered if this node holds messages of the type)."""
        if not (isinstance(req, HistoryRequest) and isinstance(req.type_name, str)
                and is_valid_type_name(req.type_name) and type(req.since_ns) is int
                and req.since_ns >= 0 and isinstance(req.nonce, bytes)
                and 0 < len(req.nonce) <= MAX_NONCE):
            self.counts["history_malformed"] += 1
            return
        if self.history.last_seq(req.type_name) is None:
            return  # never published (or not kept): other publishers answer
        counts = self._counts(req.type_name)
        counts["history_requests_received"] += 1
        found = self.history.since(req.type_name, req.since_ns, now)
        allowed = 0
        while (allowed < len(found) and self._history_by_requester.take(requester, now)
               and self._history_total.take(now)):
            allowed += 1
        if allowed < len(found):
            counts["repair_rate_limited"] += len(found) - allowed
        if not allowed:
            return
        kept = found[len(found) - allowed:]  # the newest, like last values
        built = self._build(req.type_name, self.history.boot, kept, [],
                            to=int.from_bytes(requester, "big"), nonce=req.nonce)
        counts["history_sent"] += len(kept)
        self._enqueue(req.type_name, built)

    # -- answers -----------------------------------------------------------------

    def poll(self, now: float) -> list[Repair]:
        """The answers due now, each fitting ``max_bytes`` (see the class docstring)."""
        for key in [k for k, p in self._pending.items() if p.due <= now]:
            pending = self._pending.pop(key)
            self._pending_count -= len(pending.found)
            type_name, boot = key
            items = [pending.found[s] for s in sorted(pending.found)]
            recent = self._recent.setdefault(type_name, {})
            for seq, _ts, _payload in items:
                recent[seq] = now
            gone = _merge(pending.gone)
            counts = self._counts(type_name)
            counts["repaired_sent"] += len(items)
            counts["gone_sent"] += sum(b - a + 1 for a, b in gone)
            self._enqueue(type_name, self._build(type_name, boot, items, gone))
        self._prune(now)
        if not self._queue or now < self._next_send:
            return []
        out = [self._queue.popleft() for _ in range(min(self.per_poll, len(self._queue)))]
        self._next_send = now + self.pace
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to send (None: nothing pending)."""
        due = min((p.due for p in self._pending.values()), default=None)
        if self._queue:
            due = self._next_send if due is None else min(due, self._next_send)
        return due

    def stats(self) -> dict[str, dict[str, int]]:
        """Per type: the counters of :data:`TYPE_COUNTERS`."""
        return {name: {k: c[k] for k in TYPE_COUNTERS} for name, c in self._types.items()}

    @property
    def pending(self) -> int:
        """Messages waiting for their hold to end, and Repairs waiting to be sent."""
        return self._pending_count + len(self._queue)

    # -- helpers -----------------------------------------------------------------

    def _counts(self, type_name: str) -> collections.Counter[str]:
        counts = self._types.get(type_name)
        if counts is None:
            if len(self._types) >= 1024 and self.history.last_seq(type_name) is None:
                return self.counts  # bounded: a flood of made-up names lands here
            counts = self._types[type_name] = collections.Counter()
        return counts

    def _enqueue(self, type_name: str, built: list[Repair]) -> None:
        room = self.max_queued - len(self._queue)
        if len(built) > room:
            self.counts["repair_queue_full"] += len(built) - max(room, 0)
            built = built[:max(room, 0)]
        self._queue.extend(built)
        self._counts(type_name)["repairs_sent"] += len(built)

    def _prune(self, now: float) -> None:
        for type_name in list(self._recent):
            recent = self._recent[type_name]
            stale = [s for s, at in recent.items() if now - at >= self.guard]
            for seq in stale:
                del recent[seq]
            if not recent:
                del self._recent[type_name]

    def _build(self, type_name: str, boot: int, items: list[Message],
               gone: list[tuple[int, int]], *, to: int | None = None,
               nonce: bytes | None = None) -> list[Repair]:
        """Repairs carrying ``items`` and ``gone``, each within ``max_bytes`` if it can."""
        fingerprint = self._fingerprint(type_name)
        if fingerprint is None or len(fingerprint) != FINGERPRINT_SIZE:
            # No schema known for it (never published by this run): nothing to resend.
            gone = _merge([*gone, *((s, s) for s, _ts, _p in items)])
            items = []
            fingerprint = bytes(FINGERPRINT_SIZE)
        synced = self._clock_synced()

        def empty() -> Repair:
            return Repair(type_name=type_name, fingerprint=fingerprint, boot=boot,
                          clock_synced=synced, to=to, nonce=nonce)

        # Each of the four arrays' heads may grow to 3 bytes (up to 65535 items).
        base = len(encode_payload(empty())) + 8
        out: list[Repair] = []
        current = empty()
        size = base
        for item in items:
            cost = _message_size(item)
            if base + cost > self.hard_max_bytes:
                gone = _merge([*gone, (item[0], item[0])])  # cannot be sent at all
                self.counts["repair_too_large"] += 1
                continue
            if current.seqs and size + cost > self.max_bytes:
                out.append(current)
                current, size = empty(), base
            current.seqs.append(item[0])
            current.sent_ns.append(item[1])
            current.payloads.append(item[2])
            size += cost
        for first, last in gone:
            cost = 2 + _uint_size(first) + _uint_size(last)
            if (current.seqs or current.gone) and size + cost > self.max_bytes:
                out.append(current)
                current, size = empty(), base
            current.gone.append([first, last])
            size += cost
        if current.seqs or current.gone:
            out.append(current)
        return out
