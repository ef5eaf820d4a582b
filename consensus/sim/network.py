"""SimNetwork: real PaxosNodes over a simulated, faulty, fully deterministic network.

Theory of operation (modelled on raft's ``raft_test.go: network`` and ``rafttest``):
the network owns N :class:`~consensus.node.PaxosNode` objects, their durable journals
and a queue of datagrams in flight. Every random choice (delay, loss, duplication, the
nodes' own RNGs) comes from one ``random.Random`` built from the seed, so one seed is one
exact run. Every message is encoded with CBOR on send and decoded with
:func:`~consensus.messages.message_from_wire` on delivery, exactly as the node will do on
the wire; every journal record goes through CBOR on restart. That is why the
simulator imports cbor2, the one import outside the standard library in ``consensus``
(on purpose: a wire bug then shows up in the consensus tests; docs/architecture.md).

Time is an integer tick. ``tick()`` advances every live node by one tick and delivers
the datagrams that are due; a datagram's delay (in ticks) is drawn when it is sent, so
random delays reorder messages. Faults: per-link loss and duplication probabilities,
``cut``/``isolate``/``partition``/``heal``, ``crash`` (volatile state lost, journal kept,
optionally after persisting but before sending), ``restart``, ``join`` and ``leave``.

Views: by default each node's membership view is what an ideal heartbeat detector would
give: the live members it can currently reach (so a partition shrinks views and each
side decides alone). ``static_views=True`` gives every member the full membership
forever: classic Paxos, where a minority side cannot decide.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import cbor2

from consensus.journal import AcceptedRecord, JournalRecord, record_from_wire
from consensus.messages import Accept, Message, message_from_wire
from consensus.node import Config, PaxosNode
from consensus.ready import Outbound, Ready

__all__ = ["Faults", "SimNetwork", "TraceLine"]


@dataclass(slots=True)
class Faults:
    """Network fault settings; probabilities are per datagram per destination."""

    loss: float = 0.0
    duplicate: float = 0.0
    min_delay: int = 1
    max_delay: int = 1


@dataclass(frozen=True, slots=True)
class TraceLine:
    """One simulator event; formatted only when someone reads the trace."""

    tick: int
    what: str
    src: int | None = None
    dst: int | None = None
    msg: Message | None = None

    def format(self) -> str:
        """Return the event as one line."""
        if self.msg is None:
            return f"t={self.tick:<5} {self.what}"
        return f"t={self.tick:<5} {self.what:<7} {self.src}->{self.dst}  {self.msg.describe()}"


@dataclass(order=True, slots=True)
class _Datagram:
    due: int
    seq: int
    src: int = field(compare=False)
    dst: int = field(compare=False)
    data: bytes = field(compare=False)


class SimNetwork:
    """N consensus nodes on a deterministic simulated network (see module docstring)."""

    def __init__(
        self,
        members: Iterable[int],
        *,
        seed: int,
        observers: Iterable[int] = (),
        faults: Faults | None = None,
        static_views: bool = False,
        make_config: Callable[[int, bool], Config] | None = None,
        trace: bool = True,
        auto_deliver: bool = True,
    ) -> None:
        """Build the network and start every node.

        Args:
            members: ids of member nodes.
            seed: the one seed every random choice derives from.
            observers: ids of observer nodes (never in any view).
            faults: loss, duplication and delay settings.
            static_views: give members the full membership forever (classic Paxos).
            make_config: builds a node's Config from ``(node_id, observer)``.
            trace: keep a trace of every event (needed for failure reports).
            auto_deliver: ``tick()`` delivers due datagrams; False leaves delivery to
                ``deliver_next``/``stabilize`` (golden scripts drive it by hand).
        """
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.static_views = static_views
        self.now = 0
        self.members: set[int] = set()
        self.observers: set[int] = set(observers)
        self.nodes: dict[int, PaxosNode] = {}
        self.journals: dict[int, list[bytes]] = {}
        self.down: set[int] = set()
        self.cuts: set[tuple[int, int]] = set()
        self.in_flight: list[_Datagram] = []
        self.trace: list[TraceLine] = []
        self.keep_trace = trace
        self.auto_deliver = auto_deliver
        self.sent = 0
        self.delivered = 0
        self.msg_hook: Callable[[int, int, Message], bool] | None = None
        self.ready_hook: Callable[[int, Ready], None] | None = None
        self.accepts: dict[tuple[int, object], tuple[bytes, set[int]]] = {}
        self.ballot_values: dict[tuple[int, object], bytes] = {}
        self.anomalies: list[str] = []
        self._make_config = make_config or (lambda i, obs: Config(node_id=i, observer=obs))
        self._seq = 0
        for node_id in sorted(self.observers):
            self._start(node_id)
        for node_id in sorted(members):
            self.members.add(node_id)
            self._start(node_id)
        self.update_views()

    # -- driving -------------------------------------------------------------------

    def up(self) -> list[int]:
        """Return the ids of running nodes (members and observers), sorted."""
        return sorted(i for i in self.nodes if i not in self.down)

    def live_members(self) -> list[int]:
        """Return the ids of running members, sorted."""
        return sorted(i for i in self.members if i not in self.down)

    def propose(self, node_id: int, type_name: str) -> None:
        """Have ``node_id`` propose ``type_name`` and send the result."""
        self._log(f"propose {node_id} {type_name}")
        self.nodes[node_id].propose(type_name)
        self.flush(node_id)

    def retire(self, node_id: int, type_name: str) -> None:
        """Have ``node_id`` ask for ``type_name`` to be retired and send the result."""
        self._log(f"retire {node_id} {type_name}")
        self.nodes[node_id].retire(type_name)
        self.flush(node_id)

    def tick(self) -> None:
        """Advance time one tick: tick every running node, then deliver what is due."""
        self.now += 1
        for node_id in self.up():
            self.nodes[node_id].tick()
            self.flush(node_id)
        while self.auto_deliver and self.in_flight and self.in_flight[0].due <= self.now:
            self._deliver(heapq.heappop(self.in_flight))

    def deliver_next(self, *, drop: bool = False) -> bool:
        """Deliver (or drop) the earliest datagram in flight, ignoring its due time.

        Returns:
            False when nothing was in flight.
        """
        if not self.in_flight:
            return False
        dgram = heapq.heappop(self.in_flight)
        if drop:
            self._log("drop", dgram.src, dgram.dst, message_from_wire(cbor2.loads(dgram.data)))
        else:
            self._deliver(dgram)
        return True

    def stabilize(self, limit: int = 100_000) -> int:
        """Deliver datagrams in order until none is in flight (at most ``limit``).

        Returns:
            How many datagrams were delivered.
        """
        count = 0
        while count < limit and self.deliver_next():
            count += 1
        return count

    def flush(self, node_id: int) -> None:
        """Carry out a node's ``Ready``: persist, then send, then advance."""
        node = self.nodes[node_id]
        if not node.has_ready():
            return
        rd = node.ready()
        self._persist(node_id, rd.to_persist)
        rd.mark_persisted()
        for env in rd.outbox:
            self._send(node_id, env)
        node.advance(rd)
        if self.ready_hook is not None:
            self.ready_hook(node_id, rd)

    def inject(self, msg: Message, *, to: int | None = None, src: int = -1) -> None:
        """Send a forged datagram from a host that is not a node (byzantine input).

        It goes through the CBOR codec and the usual delay, loss and partitions, but is
        left out of the ballot bookkeeping: a forged ``Accept`` reusing an honest
        ballot is the attacker's, not a proposer's mistake.

        Args:
            msg: any valid message, whatever its ``sender`` claims.
            to: one node, or None for every node.
            src: the datagram's source (not a node id); only traces show it.
        """
        self._log("forge", src, to, msg)
        data = cbor2.dumps(msg.to_wire())
        f = self.faults
        for dst in [to] if to is not None else sorted(self.nodes):
            if dst not in self.nodes or (f.loss and self.rng.random() < f.loss):
                continue
            delay = f.min_delay if f.min_delay == f.max_delay else self.rng.randint(f.min_delay, f.max_delay)
            self._seq += 1
            heapq.heappush(self.in_flight, _Datagram(self.now + delay, self._seq, src, dst, data))

    # -- faults --------------------------------------------------------------------

    def cut(self, a: int, b: int) -> None:
        """Drop every datagram between ``a`` and ``b`` in both directions."""
        self.cuts.update({(a, b), (b, a)})
        self.update_views()

    def partition(self, *sides: Iterable[int]) -> None:
        """Split the network: nodes in different sides cannot talk (others unaffected)."""
        groups = [set(side) for side in sides]
        self._log("partition " + " | ".join(",".join(map(str, sorted(g))) for g in groups))
        for i, ga in enumerate(groups):
            for gb in groups[i + 1 :]:
                for a in ga:
                    for b in gb:
                        self.cuts.update({(a, b), (b, a)})
        self.update_views()

    def heal(self) -> None:
        """Remove every cut."""
        self._log("heal")
        self.cuts.clear()
        self.update_views()

    def crash(self, node_id: int, *, lose_outbox: bool = False) -> None:
        """Stop a node: its volatile state is gone, its journal stays.

        Args:
            node_id: the node.
            lose_outbox: first persist its pending ``Ready`` but never send it (the
                crash point right after the fsync).
        """
        self._log(f"crash {node_id}" + (" (after persist, before send)" if lose_outbox else ""))
        node = self.nodes[node_id]
        if lose_outbox and node.has_ready():
            rd = node.ready()
            self._persist(node_id, rd.to_persist)
        self.down.add(node_id)
        self.update_views()

    def restart(self, node_id: int) -> None:
        """Start a crashed node again from its journal (through the CBOR codec)."""
        self._log(f"restart {node_id}")
        self.down.discard(node_id)
        self._start(node_id)
        self.update_views()

    def join(self, node_id: int) -> None:
        """Add a brand-new member with an empty journal."""
        self._log(f"join {node_id}")
        self.members.add(node_id)
        self._start(node_id)
        self.update_views()

    def leave(self, node_id: int) -> None:
        """Remove a member for good (it stops and leaves every view)."""
        self._log(f"leave {node_id}")
        self.members.discard(node_id)
        self.down.add(node_id)
        self.update_views()

    def connected(self, a: int, b: int) -> bool:
        """Tell whether datagrams from ``a`` can currently reach ``b``."""
        return (a, b) not in self.cuts and a not in self.down and b not in self.down

    def update_views(self) -> None:
        """Give every running node the view an ideal failure detector would give it."""
        live = self.live_members()
        for node_id in self.up():
            if self.static_views:
                view = sorted(self.members)
            else:
                view = [m for m in live if m == node_id or self.connected(m, node_id)]
            node = self.nodes[node_id]
            if node.view != frozenset(view) - (
                {node_id} if node_id in self.observers else set()
            ):
                node.set_view(view)
                self.flush(node_id)

    # -- internals -----------------------------------------------------------------

    def _start(self, node_id: int) -> None:
        journal = self.journals.setdefault(node_id, [])
        records = [record_from_wire(cbor2.loads(data)) for data in journal]
        cfg = self._make_config(node_id, node_id in self.observers)
        rng = random.Random(self.rng.getrandbits(64))
        self.nodes[node_id] = PaxosNode(cfg, rng=rng, records=records)

    def _persist(self, node_id: int, records: Iterable[JournalRecord]) -> None:
        journal = self.journals[node_id]
        for rec in records:
            journal.append(cbor2.dumps(rec.to_wire()))
            if isinstance(rec, AcceptedRecord):
                key = (rec.slot, rec.ballot)
                _, who = self.accepts.setdefault(key, (rec.value, set()))
                who.add(node_id)

    def _send(self, src: int, env: Outbound) -> None:
        self.sent += 1
        msg = env.msg
        if isinstance(msg, Accept):
            prior = self.ballot_values.setdefault((msg.slot, msg.ballot), msg.value)
            if prior != msg.value:
                self.anomalies.append(
                    f"ballot {msg.ballot} reused in slot {msg.slot} for a second value"
                )
        data = cbor2.dumps(msg.to_wire())
        targets = [env.to] if env.to is not None else [i for i in self.nodes if i != src]
        f = self.faults
        for dst in targets:
            if dst not in self.nodes:
                continue
            copies = 1
            if f.loss and self.rng.random() < f.loss:
                copies = 0
                self._log("lost", src, dst, msg)
            elif f.duplicate and self.rng.random() < f.duplicate:
                copies = 2
            for _ in range(copies):
                delay = f.min_delay if f.min_delay == f.max_delay else self.rng.randint(
                    f.min_delay, f.max_delay
                )
                self._seq += 1
                heapq.heappush(self.in_flight, _Datagram(self.now + delay, self._seq, src, dst, data))

    def _deliver(self, dgram: _Datagram) -> None:
        msg = message_from_wire(cbor2.loads(dgram.data))
        if not self.connected(dgram.src, dgram.dst):
            self._log("cut", dgram.src, dgram.dst, msg)
            return
        if self.msg_hook is not None and not self.msg_hook(dgram.src, dgram.dst, msg):
            self._log("hooked", dgram.src, dgram.dst, msg)
            return
        self.delivered += 1
        self._log("deliver", dgram.src, dgram.dst, msg)
        self.nodes[dgram.dst].step(msg)
        self.flush(dgram.dst)

    def _log(
        self, what: str, src: int | None = None, dst: int | None = None, msg: Message | None = None
    ) -> None:
        if self.keep_trace:
            self.trace.append(TraceLine(self.now, what, src, dst, msg))
