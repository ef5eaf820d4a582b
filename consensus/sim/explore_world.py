"""The explorer's world: three real nodes, their durable state, messages in flight.

Theory of operation: a :class:`World` is a value the search copies on every
transition, so copying is the hot path. A transition touches at most one node (the
receiver of a delivery, the node that ticks, crashes or restarts) and that node's
durable state; everything else is shared between parent and child. The touched node is
copied with :meth:`PaxosNode.clone` (containers one level deep: their contents are
frozen messages, ballots and entries), its durable state likewise, and the in-flight
set is a plain ``set`` of ``(src, dst, msg)`` with frozen messages. ``parts`` caches
each node's 16-byte key digest (node key and durable key) per node renaming, so an
untouched node is never re-keyed: a child inherits its parent's digests except for the
node it touched.

Every message crosses the wire encoding on send, as on the network. Identical messages
in flight are merged: a message is in flight or not, and re-delivery is what the
duplication budget models; without this a resent request would make the space infinite.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from consensus.journal import (
    AcceptedRecord,
    DurableState,
    JournalRecord,
    Learned,
    MoveIntent,
    Promised,
    RoundUsed,
)
from consensus.limits import Limits
from consensus.messages import Message, Prepare, message_from_wire
from consensus.node import Config, PaxosNode

__all__ = [
    "NODES",
    "RETIRE",
    "Action",
    "Item",
    "World",
    "apply_records",
    "clone",
    "config",
    "copy_node",
    "deliver",
    "fire_timeout",
    "flush",
    "initial",
    "records",
    "restart",
]

NODES = (1, 2, 3)
#: A want that starts with this asks for the rest, a type name, to be retired.
RETIRE = "retire:"
Item = tuple[int, int, Message]  # (src, dst, msg) in flight
# Explored nodes never draw from their RNG (backoff_ticks=0), so all share one.
RNG = random.Random(0)


@dataclass(slots=True)
class World:
    """One global state of the search (mutated only while it is being built)."""

    nodes: dict[int, PaxosNode | None]
    durable: dict[int, DurableState]
    in_flight: set[Item]
    loss: int
    dup: int
    crash: int
    wants: dict[int, tuple[str, ...]]
    ballots: int = 0  # distinct ballots any proposer has used so far
    hold_after: int | None = None  # Prepares of ballots past this many stay unsent
    # node -> renaming index -> digest of (node key, durable key); see explore_key.
    parts: dict[int, dict[int, bytes]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Action:
    """A plain delivery, as the sleep-set reduction sees it."""

    item: Item  # (src, dst, msg) delivered
    sent: frozenset[Item]  # every message the receiver generated
    prepared: bool  # it sent a Prepare (moves the global ballot count)

    def independent(self, other: Action) -> bool:
        """True when the two deliveries commute and neither disables the other.

        They touch different nodes (a delivery changes only its receiver, its durable
        state and the in-flight set), neither moves the shared ballot count (the bound
        could stop one order early), and neither re-sends the message the other consumes
        (in-flight copies are merged, so remove-then-add and add-then-remove differ).

        Args:
            other: another delivery enabled in the same world.

        Returns:
            Whether the pair is independent.
        """
        return (
            self.item[1] != other.item[1]
            and not self.prepared
            and not other.prepared
            and self.item not in other.sent
            and other.item not in self.sent
        )


def config(node_id: int) -> Config:
    """The explored nodes' settings.

    Args:
        node_id: the node.

    Returns:
        No heartbeats and no random backoff (the search, not the RNG, chooses timing),
        every member proposing at once, and no rate limits: a message a limit refuses is,
        to every node, a message lost, and the search already covers any number of losses.
    """
    return Config(
        node_id=node_id, heartbeat_ticks=0, retry_ticks=1, backoff_ticks=0, catchup_ticks=1,
        follow_leader=False, limits=Limits(enabled=False),
    )


def initial(wants: dict[int, tuple[str, ...]], loss: int, dup: int, crashes: int,
            decided: Sequence[tuple[int, bytes]] = ()) -> World:
    """The first world: every node up, each proposer has asked for its types.

    Args:
        wants: the types each node proposes (``RETIRE + name``: asks for a retire).
        loss: drop budget.
        dup: duplication budget.
        crashes: crash budget.
        decided: entries every node has already learned (durably).

    Returns:
        The world after the proposers' first ``Ready``.
    """
    world = World(
        nodes={}, durable={i: DurableState(learned=list(decided)) for i in NODES}, in_flight=set(),
        loss=loss, dup=dup, crash=crashes, wants=wants,
    )
    for i in NODES:
        node = PaxosNode(config(i), rng=RNG, records=[Learned(slot=s, value=v) for s, v in decided])
        node.set_view(NODES)
        world.nodes[i] = node
    for i in NODES:
        proposer = world.nodes[i]
        assert proposer is not None
        for name in world.wants[i]:
            _ask(proposer, name)
        flush(world, i)
    return world


def _ask(node: PaxosNode, want: str) -> None:
    if want.startswith(RETIRE):
        node.retire(want[len(RETIRE):])
    else:
        node.propose(want)


def clone(world: World, touched: int | None = None) -> World:
    """Copy ``world``, deep enough that node ``touched`` and its durable state may change.

    Args:
        world: the parent (never mutated).
        touched: the node the transition will change, if any.

    Returns:
        The copy; untouched nodes and durable states are shared with the parent.
    """
    nodes = dict(world.nodes)
    durable = dict(world.durable)
    parts = dict(world.parts)
    if touched is not None:
        nodes[touched] = copy_node(nodes[touched])
        d = durable[touched]
        durable[touched] = DurableState(
            promised=dict(d.promised), accepted=dict(d.accepted), learned=list(d.learned),
            max_round=d.max_round, moves=list(d.moves),
        )
        parts[touched] = {}
    return World(
        nodes=nodes, durable=durable, in_flight=set(world.in_flight), loss=world.loss,
        dup=world.dup, crash=world.crash, wants=world.wants, ballots=world.ballots, parts=parts,
        hold_after=world.hold_after,
    )


def copy_node(node: PaxosNode | None) -> PaxosNode | None:
    """An independent copy of ``node`` (None stays None)."""
    return None if node is None else node.clone()


def deliver(world: World, item: Item, *, keep: bool) -> tuple[World, Action]:
    """Deliver ``item``; with ``keep`` a copy stays in flight (a duplicate).

    Args:
        world: the parent.
        item: a message in flight.
        keep: leave the message in flight.

    Returns:
        The child and the delivery as the sleep-set reduction sees it.
    """
    nxt = clone(world, item[1])
    if not keep:
        nxt.in_flight.discard(item)
    node = nxt.nodes[item[1]]
    sent: list[Item] = []
    if node is not None:
        node.step(item[2])
        sent = flush(nxt, item[1])
    return nxt, Action(item, frozenset(sent), nxt.ballots != world.ballots)


def restart(world: World, i: int) -> World:
    """Restart crashed node ``i`` from its durable state; it asks for its types again.

    Args:
        world: the parent, where node ``i`` is down.
        i: the node.

    Returns:
        The child.
    """
    nxt = clone(world, i)
    node = PaxosNode(config(i), rng=RNG, records=records(nxt.durable[i]))
    node.set_view(NODES)
    nxt.nodes[i] = node
    for name in nxt.wants[i]:
        _ask(node, name)  # the application (or the person) asks again after a restart
    flush(nxt, i)
    return nxt


def fire_timeout(node: PaxosNode) -> bool:
    """Tick ``node`` until it does something; False if it never would.

    Ticks that only count a timer down are not interesting interleavings: tick until the
    node sends, persists, or drops its attempt, or give up.

    Args:
        node: a live node (mutated).

    Returns:
        Whether a timeout fired.
    """
    attempt = node._attempt
    for _ in range(4 * node.config.retry_ticks + 2):
        node.tick()
        if node.has_ready() or node._attempt is not attempt:
            return True
    return False


def flush(world: World, i: int) -> list[Item]:
    """Persist and send node ``i``'s effects.

    Args:
        world: the world being built (mutated).
        i: a live node.

    Returns:
        Every message it generated (also those merged with a copy in flight).
    """
    node = world.nodes[i]
    assert node is not None
    sent: list[Item] = []
    if not node.has_ready():
        return sent
    rd = node.ready()
    apply_records(world.durable[i], rd.to_persist)
    rd.mark_persisted()
    for env in rd.outbox:
        msg = message_from_wire(env.msg.to_wire())
        held = False
        if isinstance(msg, Prepare):
            world.ballots += 1
            # Past the ballot bound the Prepare stays unsent (in flight forever, a real
            # behaviour) instead of ending the path: the rest of its Ready still counts.
            held = world.hold_after is not None and world.ballots > world.hold_after
        targets = [env.to] if env.to is not None else [j for j in NODES if j != i]
        for dst in targets:
            item = (i, dst, msg)
            sent.append(item)
            if world.nodes.get(dst) is not None and not held:  # a down node's buffer is gone
                world.in_flight.add(item)
    node.advance(rd)
    return sent


def apply_records(state: DurableState, recs: Sequence[JournalRecord]) -> None:
    """Fold journal records into ``state`` (what a journal replay would give).

    Args:
        state: the durable state (mutated).
        recs: records in persist order.
    """
    for rec in recs:
        if isinstance(rec, Promised):
            state.promised[rec.slot] = max(rec.ballot, state.promised.get(rec.slot, rec.ballot))
        elif isinstance(rec, AcceptedRecord):
            state.accepted[rec.slot] = (rec.ballot, rec.value)
            state.promised[rec.slot] = max(rec.ballot, state.promised.get(rec.slot, rec.ballot))
        elif isinstance(rec, Learned):
            if (rec.slot, rec.value) not in state.learned:
                state.learned.append((rec.slot, rec.value))
                state.learned.sort()
        elif isinstance(rec, RoundUsed):
            state.max_round = max(state.max_round, rec.round)
        elif rec.move not in state.moves:
            state.moves.append(rec.move)


def records(state: DurableState) -> list[JournalRecord]:
    """A compact journal that replays to ``state``.

    Args:
        state: a durable state.

    Returns:
        The records, in an order :func:`consensus.journal.replay` accepts.
    """
    out: list[JournalRecord] = [RoundUsed(round=state.max_round)]
    for slot in sorted(state.promised):
        out.append(Promised(slot=slot, ballot=state.promised[slot]))
        if slot in state.accepted:
            ballot, value = state.accepted[slot]
            out.append(AcceptedRecord(slot=slot, ballot=ballot, value=value))
    out += [Learned(slot=s, value=v) for s, v in state.learned]
    out += [MoveIntent(move=m) for m in state.moves]
    return out
