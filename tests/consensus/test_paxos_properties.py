"""Hypothesis stateful tests: a single acceptor, and a small cluster under faults.

``RuleBasedStateMachine`` explores random schedules (cf. raft ``confchange/quick_test.go``):
Hypothesis picks which message to deliver, drop or duplicate, which node to tick, crash
or restart, and shrinks any failure to a short schedule.
"""

from __future__ import annotations

import random

import cbor2
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from paxos_helpers import drain, make_node, messages

from consensus.journal import JournalRecord
from consensus.messages import (
    Accept,
    Accepted,
    Ballot,
    Message,
    Nack,
    Prepare,
    Promise,
    message_from_wire,
)
from consensus.node import Config, PaxosNode
from consensus.sim.scenario import colliding_names

TYPES = ["a.One", "a.Two", *colliding_names(1)[0]]
VALUES = [b"assign a.One 239.255.1.1", b"assign a.Two 239.255.1.2"]


class SingleAcceptor(RuleBasedStateMachine):
    """One member fed arbitrary Prepare/Accept traffic from peers 2 and 3."""

    def __init__(self) -> None:
        super().__init__()
        self.node = make_node(1, (1, 2, 3))
        self.journal: list[JournalRecord] = []
        self.promised: dict[int, Ballot] = {}

    @rule(slot=st.integers(0, 2), rnd=st.integers(0, 6), sender=st.sampled_from([2, 3]))
    def prepare(self, slot: int, rnd: int, sender: int) -> None:
        ballot = Ballot(rnd, sender)
        self.node.step(Prepare(sender=sender, slot=slot, ballot=ballot))
        for msg in self._drain():
            if isinstance(msg, Promise) and msg.sender == 1:
                assert ballot >= self.promised.get(slot, ballot)
                self.promised[slot] = ballot
            elif isinstance(msg, Nack):
                assert msg.promised > ballot

    @rule(slot=st.integers(0, 2), rnd=st.integers(0, 6), sender=st.sampled_from([2, 3]),
          value=st.sampled_from(VALUES))
    def accept(self, slot: int, rnd: int, sender: int, value: bytes) -> None:
        ballot = Ballot(rnd, sender)
        self.node.step(Accept(sender=sender, slot=slot, ballot=ballot, value=value))
        for msg in self._drain():
            if isinstance(msg, Accepted):
                assert ballot >= self.promised.get(slot, ballot)
                self.promised[slot] = ballot

    @rule()
    def restart(self) -> None:
        self.node = PaxosNode(self.node.config, rng=random.Random(1), records=self.journal)
        self.node.set_view((1, 2, 3))

    @rule(n=st.integers(1, 12))
    def tick(self, n: int) -> None:
        for _ in range(n):
            self.node.tick()
            self._drain()

    @rule(name=st.sampled_from(TYPES))
    def propose(self, name: str) -> None:
        self.node.propose(name)
        self._drain()

    @invariant()
    def promises_are_never_lowered(self) -> None:
        for slot, ballot in self.promised.items():
            current = self.node.acceptor.promised(slot)
            assert current is None or current >= ballot  # None once the slot is learned

    def _drain(self) -> list[Message]:
        return messages(drain(self.node, self.journal))


class SmallCluster(RuleBasedStateMachine):
    """Three members with static views; Hypothesis schedules the network and crashes."""

    IDS = (1, 2, 3)

    def __init__(self) -> None:
        super().__init__()
        self.journals: dict[int, list[bytes]] = {i: [] for i in self.IDS}
        self.nodes: dict[int, PaxosNode | None] = {i: self._boot(i) for i in self.IDS}
        self.queue: list[tuple[int, int, bytes]] = []
        self.learned: dict[int, bytes] = {}

    def _boot(self, i: int) -> PaxosNode:
        from consensus.journal import record_from_wire

        records = [record_from_wire(cbor2.loads(b)) for b in self.journals[i]]
        cfg = Config(node_id=i, retry_ticks=4, backoff_ticks=2, heartbeat_ticks=6, catchup_ticks=3,
                     follow_leader=i != 3)
        node = PaxosNode(cfg, rng=random.Random(i), records=records)
        node.set_view(self.IDS)
        return node

    def _collect(self, i: int) -> None:
        node = self.nodes[i]
        assert node is not None
        if not node.has_ready():
            return
        rd = node.ready()
        self.journals[i].extend(cbor2.dumps(r.to_wire()) for r in rd.to_persist)
        rd.mark_persisted()
        for env in rd.outbox:
            data = cbor2.dumps(env.msg.to_wire())
            targets = [env.to] if env.to is not None else [j for j in self.IDS if j != i]
            self.queue.extend((i, dst, data) for dst in targets)
        node.advance(rd)
        for slot, value in rd.decided:
            assert self.learned.setdefault(slot, value) == value, f"two values in slot {slot}"

    @rule(i=st.sampled_from(IDS), name=st.sampled_from(TYPES))
    def propose(self, i: int, name: str) -> None:
        node = self.nodes[i]
        if node is not None:
            node.propose(name)
            self._collect(i)

    @precondition(lambda self: self.queue)
    @rule(k=st.integers(0, 1000), mode=st.sampled_from(["deliver", "deliver", "deliver", "drop", "dup"]))
    def network(self, k: int, mode: str) -> None:
        src, dst, data = self.queue[k % len(self.queue)]
        if mode != "dup":
            self.queue.remove((src, dst, data))
        node = self.nodes[dst]
        if mode != "drop" and node is not None:
            node.step(message_from_wire(cbor2.loads(data)))
            self._collect(dst)

    @rule(i=st.sampled_from(IDS), n=st.integers(1, 8))
    def tick(self, i: int, n: int) -> None:
        for _ in range(n):
            if self.nodes[i] is not None:
                self.nodes[i].tick()  # type: ignore[union-attr]
                self._collect(i)

    @rule(i=st.sampled_from(IDS))
    def crash(self, i: int) -> None:
        self.nodes[i] = None

    @rule(i=st.sampled_from(IDS))
    def restart(self, i: int) -> None:
        if self.nodes[i] is None:
            self.nodes[i] = self._boot(i)
            self._collect(i)

    @invariant()
    def no_two_types_share_a_group(self) -> None:
        for node in self.nodes.values():
            if node is not None:
                assert len(set(node.groups.values())) == len(node.groups)

    @invariant()
    def every_node_agrees_with_every_slot_learned(self) -> None:
        for node in self.nodes.values():
            if node is not None:
                for slot, value in node.entries():
                    assert self.learned.get(slot, value) == value

    def teardown(self) -> None:
        # Liveness once the faults stop: restart everyone, run the network, converge.
        for i in self.IDS:
            if self.nodes[i] is None:
                self.nodes[i] = self._boot(i)
                self._collect(i)
        for _ in range(300):
            while self.queue:
                _src, dst, data = self.queue.pop(0)
                self.nodes[dst].step(message_from_wire(cbor2.loads(data)))  # type: ignore[union-attr]
                self._collect(dst)
            for i in self.IDS:
                self.nodes[i].tick()  # type: ignore[union-attr]
                self._collect(i)
        maps = [dict(n.groups) for n in self.nodes.values() if n is not None]
        assert all(m == maps[0] for m in maps)


TestSingleAcceptor = SingleAcceptor.TestCase
TestSingleAcceptor.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestSmallCluster = SmallCluster.TestCase
TestSmallCluster.settings = settings(max_examples=120, stateful_step_count=50, deadline=None)
