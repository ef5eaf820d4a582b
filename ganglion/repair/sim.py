"""A deterministic simulation of repair: one sender, N receivers, lossy links, a fake clock.

Theory of operation: the real state machines (:class:`~ganglion.repair.History`,
:class:`~ganglion.repair.Responder`, :class:`~ganglion.repair.Requester`, and
:class:`~ganglion.sequence.SequenceTracker` for the gaps, told of them as the
node's receive path tells them) are driven by an event queue. The sender publishes
at ``rate`` per second for ``duration`` seconds and sends a heartbeat (with
``tails``) every ``heartbeat`` seconds; every datagram it or a receiver multicasts
reaches each other node after ``latency`` (plus up to ``jitter``, so datagrams
overtake each other) unless that link drops it, independently with probability
``loss`` (the namespace harness drops per receiving interface the same way), and
arrives twice with probability ``duplicate``; a data datagram is lost for everyone
(on the sender's own link) with probability ``sender_loss``. Requests and repairs are control
datagrams and suffer the same loss. The sender may restart at ``sender_restart``
(a new boot, an empty history, numbers from 0 again) and receivers at
``receiver_restarts`` (fresh state: a new baseline). After the sender stops, the
run goes on for ``drain`` seconds so tails and retries can finish.

Every receiver sends a heartbeat every ``heartbeat`` seconds too, on the same grid
as everyone's (the wall clock's multiples, each node up to ``jitter`` off), and
its first requests ride it when the requester's config lets them
(``RequesterConfig.carry_wait``; 0 sends every request alone). A heartbeat is a
datagram sent anyway: the requests it carries are counted (``carried``) but cost
no datagram of their own.

Each node wakes at its machines' ``next_deadline()``, as the control channel's
timer makes it; nothing here reads a clock or the OS's randomness, so a seed
gives one run exactly. :func:`simulate` reports what each receiver delivered, what
it recorded as permanently lost, and every datagram sent, so tests check that
nothing is silently lost, nothing delivered twice, and what repair costs per lost
datagram.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import random
from collections.abc import Callable, Mapping

from ganglion.repair.history import History, HistoryLimits
from ganglion.repair.messages import Repair, RepairRequest
from ganglion.repair.requester import PermanentGap, Requester, RequesterConfig
from ganglion.repair.responder import Responder
from ganglion.sequence import SequenceTracker, Verdict

__all__ = ["SimResult", "simulate"]

_SENDER = b"\x00" * 7 + b"\x01"
_TYPE = "sim.Reading"
_FINGERPRINT = b"\x11" * 8
#: A published message: (boot, seq).
Number = tuple[int, int]


@dataclasses.dataclass
class SimResult:
    """What one run did.

    Attributes:
        published: every (boot, seq) the sender published.
        held: per receiver, the (boot, seq) it delivered (each once per run of it).
        required: per receiver, what it must hold or have recorded lost: from the
            baseline of its last run on (what came before, it never heard of).
        duplicates_delivered: deliveries of a number already delivered (must be 0).
        permanent: per receiver, the numbers recorded as permanently lost.
        data_lost: data datagrams dropped on a link (one per receiver that missed it).
        requests: repair requests sent (all receivers).
        repairs: Repair datagrams sent.
        suppressed: requests held back because another receiver's was overheard.
        latencies: seconds from first sending to delivery of each repaired message.
        common_losses: data datagrams lost on the sender's link (by every receiver).
        carried: requests carried in receivers' heartbeats (no datagram of their own).
    """

    published: set[Number]
    held: list[set[Number]]
    required: list[set[Number]]
    duplicates_delivered: int
    permanent: list[set[Number]]
    data_lost: int
    requests: int
    repairs: int
    suppressed: int
    latencies: list[float]
    common_losses: int = 0
    carried: int = 0

    @property
    def overhead(self) -> float:
        """Requests plus repairs per data datagram lost (the issue's target: <= 1.5)."""
        return (self.requests + self.repairs) / max(self.data_lost, 1)

    def silently_lost(self) -> list[set[Number]]:
        """Per receiver, required numbers neither held nor recorded lost (must be empty)."""
        return [req - held - perm for req, held, perm in
                zip(self.required, self.held, self.permanent, strict=True)]


class _Receiver:
    """One receiver process (a restart makes a new one)."""

    def __init__(self, node_id: bytes, rng: random.Random, config: RequesterConfig) -> None:
        self.id = node_id
        self.tracker = SequenceTracker(strict=True)  # a keyed network: boots only grow
        self.requester = Requester(config, rng=rng)
        self.held: set[Number] = set()
        self.permanent: set[Number] = set()
        self.baseline: Number | None = None
        #: Per boot left behind (the sender restarted): the highest number known of it
        #: then. What it sent above that, this receiver never heard of: a sender that
        #: restarts before its last messages arrive loses them (docs/guide.md).
        self.ended: dict[int, int] = {}
        self.duplicates = 0

    def deliver(self, boot: int, seq: int, now: float) -> bool:
        """One message, through the tracker and the gap hooks (as ``Incoming`` does)."""
        tracker = self.tracker
        highest, lost, tracker_boot = tracker.highest, tracker.lost, tracker.boot
        if highest is not None and boot == tracker.boot and seq <= highest and (
                highest - seq >= tracker.window or tracker.below_baseline(seq, boot)):
            return False
        verdict = tracker.observe(seq, boot)
        if not verdict.deliver:
            return False
        key = (_SENDER, _TYPE, boot)
        if self.baseline is None:
            self.baseline = (boot, seq)
        if verdict is Verdict.LATE:
            self.requester.on_filled(key, seq, now)
        elif verdict is Verdict.RESTART:
            if highest is not None and tracker_boot is not None:
                self.ended[tracker_boot] = highest
            self.requester.on_restart(_SENDER, _TYPE, boot, now)
        if tracker.lost > lost and verdict is not Verdict.LATE:
            self.requester.on_gap(key, seq - (tracker.lost - lost), seq - 1, now)
        if (boot, seq) in self.held:
            self.duplicates += 1
        self.held.add((boot, seq))
        return True

    def tail(self, boot: int, last_seq: int, now: float) -> None:
        """A heartbeat's tail (as ``Incoming.note_tail`` does)."""
        tracker = self.tracker
        highest = tracker.highest
        if tracker.boot != boot or highest is None:
            return
        if tracker.extend(last_seq):
            self.requester.on_gap((_SENDER, _TYPE, boot), highest + 1, last_seq, now)


class _Sender:
    def __init__(self, boot: int, limits: HistoryLimits, hold: float) -> None:
        self.boot = boot
        self.history = History(limits, boot=boot)
        self.responder = Responder(self.history, node_id=_SENDER,
                                   fingerprint=lambda _n: _FINGERPRINT, hold=hold)
        self.next_seq = 0


def simulate(*, receivers: int = 3, loss: float = 0.1, rate: float = 50.0,
             duration: float = 10.0, seed: int = 0, latency: float = 0.001,
             jitter: float = 0.002, duplicate: float = 0.0, sender_loss: float = 0.0,
             heartbeat: float = 0.5,
             drain: float = 15.0, config: RequesterConfig | None = None, hold: float = 0.080,
             history: HistoryLimits | None = None, sender_restart: float | None = None,
             receiver_restarts: Mapping[int, float] | None = None) -> SimResult:
    """Run one simulation (see the module docstring) and return what happened."""
    rng = random.Random(seed)
    cfg = config or RequesterConfig()
    limits = history or HistoryLimits(max_bytes=1 << 20, max_age=60.0)
    sender = _Sender(1, limits, hold)
    nodes = [_Receiver((i + 2).to_bytes(8, "big"), random.Random(rng.random()), cfg)
             for i in range(receivers)]
    runs: list[list[_Receiver]] = [[n] for n in nodes]  # every run of each receiver
    queue: list[tuple[float, int, Callable[[float], None]]] = []
    order = [0]
    counts = {"data_lost": 0, "requests": 0, "repairs": 0, "suppressed": 0,
              "common_losses": 0, "carried": 0}
    # Each receiver's heartbeats fall on the common grid, a little off it.
    offsets = [rng.uniform(0.0, jitter) for _ in range(receivers)]

    def carrier(index: int, now: float) -> float:
        """When receiver ``index``'s next heartbeat leaves (strictly after now)."""
        off = offsets[index]
        return off + heartbeat * (int((now - off) // heartbeat) + 1)
    woken: dict[int, float] = {}  # node index (-1: the sender) -> wake time queued
    published: set[Number] = set()
    sent_at: dict[Number, float] = {}
    latencies: list[float] = []

    def at(when: float, action: Callable[[float], None]) -> None:
        order[0] += 1
        heapq.heappush(queue, (when, order[0], action))

    def multicast(source: int, now: float, handle: Callable[[int, float], None],
                  kind: str) -> None:
        if kind == "data" and sender_loss and rng.random() < sender_loss:
            counts["data_lost"] += receivers  # lost on the sender's link: by everyone
            counts["common_losses"] += 1
            return
        # Every node but the source, each link losing (and duplicating) on its own.
        for dest in range(-1, receivers):
            if dest == source:
                continue
            if rng.random() < loss:
                if kind == "data":
                    counts["data_lost"] += 1
                continue
            copies = 2 if rng.random() < duplicate else 1
            for _ in range(copies):
                at(now + latency + rng.uniform(0.0, jitter), functools.partial(handle, dest))

    def wake(index: int, deadline: float | None, now: float) -> None:
        if deadline is None:
            return
        deadline = max(deadline, now)
        if woken.get(index, float("inf")) <= deadline:
            return
        woken[index] = deadline
        at(deadline, functools.partial(run, index))

    def run(index: int, now: float) -> None:
        if woken.get(index) == now:
            del woken[index]
        if index < 0:
            for repair in sender.responder.poll(now):
                counts["repairs"] += 1
                multicast(-1, now, functools.partial(on_repair, repair), "repair")
            wake(-1, sender.responder.next_deadline(), now)
            return
        node = nodes[index]
        for action in node.requester.poll(now, carrier=carrier(index, now)):
            if isinstance(action, PermanentGap):
                node.permanent.update((action.key[2], s)
                                      for s in range(action.first, action.last + 1))
            else:
                counts["requests"] += 1
                multicast(index, now, functools.partial(on_request, node.id, action.request),
                          "request")
        wake(index, node.requester.next_deadline(), now)

    def on_data(number: Number, dest: int, now: float) -> None:
        if dest >= 0:
            nodes[dest].deliver(*number, now)
            wake(dest, nodes[dest].requester.next_deadline(), now)

    def on_request(requester: bytes, req: RepairRequest, dest: int, now: float) -> None:
        if dest < 0:
            sender.responder.on_request(requester, req, now)
            wake(-1, sender.responder.next_deadline(), now)
        else:
            nodes[dest].requester.on_overheard(requester, req, now)
            wake(dest, nodes[dest].requester.next_deadline(), now)

    def on_repair(repair: Repair, dest: int, now: float) -> None:
        if dest < 0:
            return
        node = nodes[dest]
        key = (_SENDER, repair.type_name, repair.boot)
        for seq in repair.seqs:
            if node.requester.abandoned(key, seq):
                continue  # its gap is recorded: as the control channel does
            if node.deliver(repair.boot, seq, now):
                latencies.append(now - sent_at[(repair.boot, seq)])
        for first, last in repair.gone:
            node.requester.on_gone(key, first, last, now)
        wake(dest, node.requester.next_deadline(), now)

    def on_tail(boot: int, last_seq: int, dest: int, now: float) -> None:
        if dest >= 0:
            nodes[dest].tail(boot, last_seq, now)
            wake(dest, nodes[dest].requester.next_deadline(), now)

    def publish(now: float) -> None:
        number = (sender.boot, sender.next_seq)
        sender.next_seq += 1
        published.add(number)
        sent_at[number] = now
        sender.history.record(_TYPE, number[1], int(now * 1e9),
                              b"\xa1ax" + number[1].to_bytes(4, "big"), now)
        multicast(-1, now, functools.partial(on_data, number), "data")

    def heartbeat_tick(now: float) -> None:
        for _type_name, last in sender.history.tails(now, quiet=heartbeat):
            multicast(-1, now, functools.partial(on_tail, sender.boot, last), "heartbeat")
        if now < duration + drain:
            at(now + heartbeat, heartbeat_tick)

    def receiver_heartbeat(index: int, now: float) -> None:
        node = nodes[index]
        for req in node.requester.carry(now):
            counts["carried"] += 1
            multicast(index, now, functools.partial(on_request, node.id, req), "heartbeat")
        wake(index, node.requester.next_deadline(), now)
        if now < duration + drain:
            at(now + heartbeat, functools.partial(receiver_heartbeat, index))

    def restart_sender(now: float) -> None:
        nonlocal sender
        sender = _Sender(sender.boot + 1, limits, hold)
        woken.pop(-1, None)

    def restart_receiver(index: int, now: float) -> None:
        woken.pop(index, None)
        node = nodes[index] = _Receiver(nodes[index].id, random.Random(rng.random()), cfg)
        runs[index].append(node)

    for i in range(int(duration * rate)):
        at(i / rate, publish)
    at(heartbeat, heartbeat_tick)
    for index in range(receivers):
        at(heartbeat + offsets[index], functools.partial(receiver_heartbeat, index))
    if sender_restart is not None:
        at(sender_restart, restart_sender)
    for index, when in (receiver_restarts or {}).items():
        at(when, functools.partial(restart_receiver, index))
    end = duration + drain
    steps = 0
    while queue and queue[0][0] <= end:
        now, _n, action = heapq.heappop(queue)
        action(now)
        steps += 1
        if steps > 50_000_000:  # bounded whatever the parameters
            raise RuntimeError("simulation did not settle")

    def required(run: _Receiver) -> set[Number]:
        # From the baseline on; of a boot the sender left, only up to the highest the
        # receiver knew of it (the rest went with the old process: docs/guide.md); of
        # a boot it never heard a message of, nothing (its tails name another boot).
        if run.baseline is None:
            return set()
        base = run.baseline
        ended = dict(run.ended)
        current, highest = run.tracker.boot, run.tracker.highest
        if current is not None and highest is not None and current < sender.boot:
            ended[current] = highest
        heard = {*ended, current}
        return {n for n in published
                if n >= base and n[0] in heard and n[1] <= ended.get(n[0], n[1])}

    for node_runs in runs:
        for run_ in node_runs:
            stats = run_.requester.stats()
            counts["suppressed"] += sum(s.repair_requests_suppressed for s in stats.values())
    return SimResult(
        published=published,
        held=[set().union(*(r.held for r in rs)) for rs in runs],
        required=[_required_of(rs, required) for rs in runs],
        duplicates_delivered=sum(r.duplicates for rs in runs for r in rs),
        permanent=[set().union(*(r.permanent for r in rs)) for rs in runs],
        data_lost=counts["data_lost"], requests=counts["requests"],
        repairs=counts["repairs"], suppressed=counts["suppressed"], latencies=latencies,
        common_losses=counts["common_losses"], carried=counts["carried"])


def _required_of(runs: list[_Receiver],
                 required: Callable[[_Receiver], set[Number]]) -> set[Number]:
    """What a receiver must account for: its last run's numbers from its baseline on.

    A run that stopped (a receiver restart) took what it was still waiting for with it:
    a new process knows nothing of it (``subscribe(..., history=...)`` is the remedy);
    of such runs only exactly-once is checked.
    """
    return required(runs[-1])
