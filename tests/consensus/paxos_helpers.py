"""Helpers for driving PaxosNodes by hand in unit tests (h11's ConnectionPair idea)."""

from __future__ import annotations

import random

from consensus.journal import JournalRecord
from consensus.messages import DIGEST_BYTES, CatchUpReply, CatchUpRequest, Message, Status
from consensus.node import Config, PaxosNode
from consensus.ready import Outbound


def make_node(node_id: int, view: tuple[int, ...] = (), **config: object) -> PaxosNode:
    """A member (or observer) with quick timers and a seeded RNG."""
    cfg = Config(node_id=node_id, retry_ticks=5, backoff_ticks=0, heartbeat_ticks=5, **config)  # type: ignore[arg-type]
    node = PaxosNode(cfg, rng=random.Random(node_id))
    if view:
        node.set_view(view)
    return node


def drain(node: PaxosNode, journal: list[JournalRecord] | None = None) -> list[Outbound]:
    """Carry out a node's Ready (persist into ``journal``, then send); return the outbox."""
    if not node.has_ready():
        return []
    rd = node.ready()
    if journal is not None:
        journal.extend(rd.to_persist)
    rd.mark_persisted()
    out = list(rd.outbox)
    node.advance(rd)
    return out


def solicit(node: PaxosNode, peer: int, journal: list[JournalRecord] | None = None) -> list[Outbound]:
    """Make ``node`` ask ``peer`` for a catch-up, as a ``Status`` with more entries does.

    A node learns from a ``CatchUpReply`` only when it asked that peer (a reply nobody
    asked for is refused), so tests that hand a node entries by catch-up ask first.
    Ticks the node (at most ``catchup_ticks`` times) when it asked someone recently.

    Returns:
        The node's outbox, which holds the ``CatchUpRequest``.
    """
    digest = bytes([0xA5]) * DIGEST_BYTES
    for _ in range(node.config.catchup_ticks + 1):
        node.step(Status(sender=peer, count=node.summary[0] + 1, digest=digest))
        out = drain(node, journal)
        if any(isinstance(env.msg, CatchUpRequest) and env.to == peer for env in out):
            return out
        node.tick()
    raise AssertionError(f"node {node.node_id} never asked {peer} for a catch-up")


def catch_up(
    node: PaxosNode, peer: int, entries: tuple[tuple[int, bytes], ...],
    journal: list[JournalRecord] | None = None,
) -> None:
    """Have ``node`` ask ``peer`` for a catch-up and receive ``entries`` in the reply."""
    solicit(node, peer, journal)
    node.step(CatchUpReply(sender=peer, entries=entries))


def messages(envs: list[Outbound]) -> list[Message]:
    """The messages of an outbox."""
    return [env.msg for env in envs]


class Cluster:
    """Nodes wired together by hand: ``pump()`` delivers until quiet, in send order."""

    def __init__(self, ids: tuple[int, ...], **config: object) -> None:
        self.nodes = {i: make_node(i, ids, **config) for i in ids}
        self.journals: dict[int, list[JournalRecord]] = {i: [] for i in ids}
        self.queue: list[tuple[int, int, Message]] = []
        self.down: set[int] = set()
        self.sent: list[tuple[int, int | None, Message]] = []
        for i in ids:
            self.collect(i)

    def collect(self, i: int) -> None:
        """Persist and queue node ``i``'s outbox."""
        for env in drain(self.nodes[i], self.journals[i]):
            self.sent.append((i, env.to, env.msg))
            targets = [env.to] if env.to is not None else [j for j in self.nodes if j != i]
            self.queue.extend((i, dst, env.msg) for dst in targets if dst in self.nodes)

    def pump(self, limit: int = 10_000, drop: object = None) -> int:
        """Deliver queued messages until none is left; ``drop(src, dst, msg)`` filters."""
        count = 0
        while self.queue and count < limit:
            src, dst, msg = self.queue.pop(0)
            count += 1
            if dst in self.down or (callable(drop) and drop(src, dst, msg)):
                continue
            self.nodes[dst].step(msg)
            self.collect(dst)
        return count

    def tick(self, n: int = 1) -> None:
        """Tick every running node ``n`` times, collecting after each tick."""
        for _ in range(n):
            for i, node in self.nodes.items():
                if i not in self.down:
                    node.tick()
                    self.collect(i)

    def propose(self, i: int, type_name: str) -> None:
        """Node ``i`` proposes a type."""
        self.nodes[i].propose(type_name)
        self.collect(i)

    def crash(self, i: int) -> None:
        """Stop node ``i`` (its queued inbound messages are lost)."""
        self.down.add(i)

    def restart(self, i: int, view: tuple[int, ...]) -> None:
        """Rebuild node ``i`` from its journal."""
        node = PaxosNode(self.nodes[i].config, rng=random.Random(i), records=self.journals[i])
        node.set_view(view)
        self.nodes[i] = node
        self.down.discard(i)
        self.collect(i)
