"""A deterministic simulation of repair: one sender, N receivers, lossy links, a fake clock.

Theory of operation: the real state machines (:class:`~ganglion.repair.History`,
:class:`~ganglion.repair.Responder`, :class:`~ganglion.repair.Requester`, and
:class:`~ganglion.sequence.SequenceTracker` for the gaps) are driven by an event
queue. The sender publishes at ``rate`` per second for ``duration`` seconds and
sends a heartbeat (with ``tails``) every ``heartbeat`` seconds; every datagram it
or a receiver multicasts reaches each other node after ``latency`` (plus up to
``jitter``) unless that link drops it, independently with probability ``loss``
(the namespace harness drops per receiving interface the same way). Requests
and repairs are control datagrams and suffer the same loss. After the sender
stops, the run goes on for ``drain`` seconds so tails and retries can finish.

Each node wakes at its machines' ``next_deadline()``, as the control channel's
timer makes it; nothing here reads a clock or the OS's randomness, so a seed
gives one run exactly. :func:`simulate` reports what each receiver holds, what
was recorded as permanently lost, and every datagram sent, so tests can check
that nothing is silently lost and what repair costs per lost datagram.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections.abc import Callable
from typing import Any

from ganglion.repair.history import History, HistoryLimits
from ganglion.repair.messages import Repair, RepairRequest
from ganglion.repair.requester import PermanentGap, RequestAction, Requester, RequesterConfig
from ganglion.repair.responder import Responder
from ganglion.sequence import SequenceTracker, Verdict

__all__ = ["SimResult", "simulate"]

_SENDER = b"\x00" * 7 + b"\x01"
_TYPE = "sim.Reading"
_FINGERPRINT = b"\x11" * 8


@dataclasses.dataclass
class SimResult:
    """What one run did.

    Attributes:
        published: readings the sender published (numbered 0..published-1).
        held: per receiver, the numbers it delivered (each once).
        duplicates_delivered: deliveries of a number already delivered (must be 0).
        permanent: per receiver, the numbers recorded as permanently lost.
        data_lost: data datagrams dropped on a link (one per receiver that missed it).
        requests: repair requests sent (all receivers).
        repairs: Repair datagrams sent.
        suppressed: requests held back because another receiver's was overheard.
    """

    published: int
    held: list[set[int]]
    duplicates_delivered: int
    permanent: list[set[int]]
    data_lost: int
    requests: int
    repairs: int
    suppressed: int

    @property
    def overhead(self) -> float:
        """Requests plus repairs per data datagram lost (the issue's target: <= 1.5)."""
        return (self.requests + self.repairs) / max(self.data_lost, 1)

    def baselines(self) -> list[int]:
        """Per receiver, the first number it delivered (its tracker's baseline).

        What came before was sent before the receiver heard the stream: it cannot
        know of it (a late subscriber asks for history instead).
        """
        return [min(held, default=self.published) for held in self.held]

    def silently_lost(self) -> list[set[int]]:
        """Per receiver, numbers from its baseline on neither held nor recorded as lost."""
        return [set(range(base, self.published)) - held - perm
                for base, held, perm in zip(self.baselines(), self.held, self.permanent,
                                            strict=True)]


class _Receiver:
    def __init__(self, index: int, rng: random.Random, config: RequesterConfig) -> None:
        self.id = (index + 2).to_bytes(8, "big")
        self.tracker = SequenceTracker()
        self.requester = Requester(config, rng=rng)
        self.held: set[int] = set()
        self.permanent: set[int] = set()
        self.duplicates = 0

    def deliver(self, seq: int, boot: int, now: float) -> None:
        key = (_SENDER, _TYPE, boot)
        highest = self.tracker.stats().highest
        verdict = self.tracker.observe(seq, boot)
        if not verdict.deliver:
            return
        if seq in self.held:
            self.duplicates += 1
        self.held.add(seq)
        if verdict is Verdict.NEW and highest is not None and seq > highest + 1:
            self.requester.on_gap(key, highest + 1, seq - 1, now)
        self.requester.on_filled(key, seq, now)


def simulate(*, receivers: int = 3, loss: float = 0.1, rate: float = 50.0,
             duration: float = 10.0, seed: int = 0, latency: float = 0.001,
             jitter: float = 0.002, heartbeat: float = 0.5, drain: float = 5.0,
             config: RequesterConfig | None = None, hold: float = 0.030,
             history: HistoryLimits | None = None) -> SimResult:
    """Run one simulation (see the module docstring) and return what happened."""
    rng = random.Random(seed)
    cfg = config or RequesterConfig()
    hist = History(history or HistoryLimits(max_bytes=1 << 20, max_age=60.0), boot=1)
    responder = Responder(hist, node_id=_SENDER, fingerprint=lambda _n: _FINGERPRINT,
                          hold=hold)
    nodes = [_Receiver(i, random.Random(rng.random()), cfg) for i in range(receivers)]
    queue: list[tuple[float, int, Callable[[float], None]]] = []
    order = [0]
    counts = {"data_lost": 0, "requests": 0, "repairs": 0}
    woken: dict[int, float] = {}  # node index (-1: sender) -> wake time already queued

    def at(when: float, action: Callable[[float], None]) -> None:
        order[0] += 1
        heapq.heappush(queue, (when, order[0], action))

    def multicast(source: int, now: float, handle: Callable[[int, float], None],
                  kind: str) -> None:
        # Every node but the source, each link losing on its own.
        for dest in range(-1, receivers):
            if dest == source:
                continue
            if rng.random() < loss:
                if kind == "data":
                    counts["data_lost"] += 1
                continue
            at(now + latency + rng.uniform(0.0, jitter),
               lambda t, d=dest: handle(d, t))

    def wake(index: int, deadline: float | None, now: float) -> None:
        if deadline is None:
            return
        deadline = max(deadline, now)
        if woken.get(index, float("inf")) <= deadline:
            return
        woken[index] = deadline
        at(deadline, lambda t: run(index, t))

    def run(index: int, now: float) -> None:
        if woken.get(index) == now:
            del woken[index]
        if index < 0:
            for repair in responder.poll(now):
                counts["repairs"] += 1
                multicast(-1, now, lambda d, t, r=repair: on_repair(d, r, t), "repair")
            wake(-1, responder.next_deadline(), now)
            return
        node = nodes[index]
        for action in node.requester.poll(now):
            if isinstance(action, PermanentGap):
                node.permanent.update(range(action.first, action.last + 1))
            elif isinstance(action, RequestAction):
                counts["requests"] += 1
                multicast(index, now, lambda d, t, a=action, i=index:
                          on_request(d, nodes[i].id, a.request, t), "request")
        wake(index, node.requester.next_deadline(), now)

    def on_data(dest: int, seq: int, now: float) -> None:
        if dest >= 0:
            nodes[dest].deliver(seq, hist.boot, now)
            wake(dest, nodes[dest].requester.next_deadline(), now)

    def on_request(dest: int, requester: bytes, req: RepairRequest, now: float) -> None:
        if dest < 0:
            responder.on_request(requester, req, now)
            wake(-1, responder.next_deadline(), now)
        else:
            nodes[dest].requester.on_overheard(requester, req, now)
            wake(dest, nodes[dest].requester.next_deadline(), now)

    def on_repair(dest: int, repair: Repair, now: float) -> None:
        if dest < 0:
            return
        node = nodes[dest]
        key = (_SENDER, repair.type_name, repair.boot)
        for seq in repair.seqs:
            node.deliver(seq, repair.boot, now)
        for first, last in repair.gone:
            node.requester.on_gone(key, first, last, now)
        wake(dest, node.requester.next_deadline(), now)

    def on_tail(dest: int, last_seq: int, now: float) -> None:
        if dest < 0:
            return
        node = nodes[dest]
        node.requester.on_tail((_SENDER, _TYPE, hist.boot), last_seq,
                               node.tracker.stats().highest, now)
        wake(dest, node.requester.next_deadline(), now)

    published = int(duration * rate)

    def publish(seq: int, now: float) -> None:
        hist.record(_TYPE, seq, int(now * 1e9), b"\xa1ax" + seq.to_bytes(4, "big"), now)
        multicast(-1, now, lambda d, t: on_data(d, seq, t), "data")

    def heartbeat_tick(now: float) -> None:
        for type_name, last in hist.tails(now, quiet=heartbeat):
            assert type_name == _TYPE
            multicast(-1, now, lambda d, t, s=last: on_tail(d, s, t), "heartbeat")
        if now < duration + drain:
            at(now + heartbeat, heartbeat_tick)

    for seq in range(published):
        at(seq / rate, lambda t, s=seq: publish(s, t))
    at(heartbeat, heartbeat_tick)
    end = duration + drain
    steps = 0
    while queue and queue[0][0] <= end:
        now, _n, action = heapq.heappop(queue)
        action(now)
        steps += 1
        if steps > 50_000_000:  # bounded whatever the parameters
            raise RuntimeError("simulation did not settle")
    stats: dict[Any, Any] = {}
    for node in nodes:
        stats.update(node.requester.stats())
    suppressed = sum(n.requester.stats().get((_SENDER, _TYPE, hist.boot),
                                            _zero()).repair_requests_suppressed for n in nodes)
    return SimResult(published=published, held=[n.held for n in nodes],
                     duplicates_delivered=sum(n.duplicates for n in nodes),
                     permanent=[n.permanent for n in nodes], data_lost=counts["data_lost"],
                     requests=counts["requests"], repairs=counts["repairs"],
                     suppressed=suppressed)


def _zero() -> Any:
    from ganglion.repair.requester import RepairStreamStats
    return RepairStreamStats()
