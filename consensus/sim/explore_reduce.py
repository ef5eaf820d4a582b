"""State-space reductions for the exhaustive search, each one sound and switchable.

Theory of operation: the explorer prunes a world whose *key* was seen before. Each
reduction here makes more worlds share a key, and is sound because worlds with equal keys
have the same futures up to a renaming that the checked properties do not see:

* **Dead messages** (``dead``). Some messages in flight can never change anything again;
  a world with such a message behaves exactly as the world without it (delivering it is a
  no-op, dropping or duplicating it only spends budget, and a world with *more* budget
  can do everything one with less can). The explorer removes them after checking the
  world, so they no longer multiply the in-flight combinations. From the handlers in
  ``consensus/node.py``:

  - ``Promise``, ``Accepted`` or ``Nack`` for ballot ``b`` to proposer ``p`` when ``p``'s
    current attempt is not ``(slot, b)``: ``p`` persisted ``RoundUsed(b.round)`` before
    sending ``Prepare(b)`` and every later attempt uses a higher round, so ``p`` never
    has attempt ``b`` again, and the handlers ignore a reply for any other attempt. A
    ``Nack`` also raises the round ``p`` has seen, so it is dead only when its promised
    round is at most ``p``'s *durable* ``max_round`` (a restart keeps that one).
  - ``Commit(slot, value)`` to a node that durably learned ``(slot, value)``:
    ``_learn`` returns at once, before and after any restart.

  ``tests/consensus/test_paxos_explore_reduce.py`` also checks it empirically: delivering
  a message judged dead leaves the receiver's ``state_key()`` unchanged and sends nothing
  (``test_paxos_explore_faults.py`` does the same for stale requests, whose answers must
  be dead on arrival, and compares outcomes and node states with and without the rule).

* **Stale requests** (``stale``). A ``Prepare``/``Accept`` for ``(slot, b)`` from ``p``
  in flight to ``d`` is dead when ``p``'s attempt is not ``(slot, b)`` (``p`` never
  returns to ``b``, so every ``Promise``/``Accepted`` for ``b`` is a dead reply by the
  rule above), ``d`` has noted round ``b.round`` already, and delivering it changes
  nothing at ``d`` now or later:

  - ``d`` learned the slot and ``p`` durably learned each value ``d`` would send back in
    a ``Commit`` (a node answers a learned slot with its decision only; its attempt in
    that slot was dropped when it learned). Stays so: both only learn more, and a slot
    holds one value unless agreement is already violated. Any number of proposers.
  - With one proposer only (nodes 2 and 3 want nothing, so they never start an attempt
    and own no ballot; every ballot is ``p``'s): ``d`` promised a higher ballot (a
    ``Nack`` whose promised round ``p`` already used: dead), or ``d`` promised ``b``
    itself and the request is a ``Prepare`` or an ``Accept`` of the value ``d`` already
    accepted at ``b`` (the same answer again, nothing persisted). Stays so: ``d``'s
    promise only grows, is always one of ``p``'s ballots and survives restarts (the
    journal's promise also restores the noted round), and a node learns a slot only
    after ``p`` persisted it (``p`` sends the first ``Commit`` of a slot, from the
    ``Ready`` that persists it), which is the first case. With two proposers a later
    promise can carry the other proposer's higher round back to ``p`` in a ``Nack``, so
    this case is left out.

* **Symmetry** (``symmetry``). A permutation ``pi`` of node ids is a symmetry when it maps
  every behaviour to a behaviour and keeps every checked property. The protocol compares
  node ids in two places only: ballots ``(round, node)`` are ordered by id, and the leader
  is the lowest id of the view. So ``pi`` must fix every node that ever owns a ballot, and
  fix the leader; it must also fix each node's role in the configuration (which types it
  wants). With one proposer (node 1 wants both types), nodes 2 and 3 are pure acceptors:
  they own no ballot (they never start an attempt: no wanted type, no owed move with a
  static view), node 1 stays the leader, and ``follow_leader=False`` makes the leader
  irrelevant anyway. So swapping 2 and 3 is a symmetry, and the key is the smaller of the
  key and the key of the swapped world. With two proposers (1 wants A, 2 wants B) no
  non-trivial permutation qualifies: 1 and 2 want different types and own ballots whose
  order a swap would reverse at equal rounds; 3 is the only pure acceptor. The explorer
  checks the precondition (no ballot owned by a swapped node) on every key it builds and
  raises if it is broken rather than prune unsoundly. Every checked property is invariant
  under renaming nodes.

* **Inert fields** (``inert``). ``state_key()`` keeps the count of consecutive failed
  attempts, which ``PaxosNode`` reads in one place only: ``_abandon`` computes the
  random backoff spread as ``backoff_ticks << (failures - 1)``. The explorer's nodes
  have ``backoff_ticks = 0``, so the spread is 0 whatever the count, no random number
  is drawn, and two nodes that differ only in the count behave identically; the key
  leaves it out (as ``state_key()`` itself already leaves out timers that cannot fire).

* **Compact keys** (``compact``). The canonical key's ``repr`` is hashed with BLAKE2b to
  16 bytes. Two different keys collide with probability about ``n**2 / 2**129`` for ``n``
  states (below 1e-26 for ten million), so the set of seen states is exact in practice
  and a few times smaller than storing the nested tuples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from consensus.journal import DurableState
from consensus.messages import Accept, Accepted, Commit, Message, Nack, Prepare, Promise
from consensus.node import PaxosNode

__all__ = ["Reductions", "compact", "is_dead", "is_stale", "msg_key", "node_key", "symmetries"]

Perm = Mapping[int, int]


@dataclass(frozen=True, slots=True)
class Reductions:
    """Which reductions the explorer applies (all sound; off only to measure them)."""

    dead: bool = True
    symmetry: bool = True
    compact: bool = True
    sleep: bool = True
    lossless: bool = True  # see consensus.sim.explore_faults
    crash: bool = True  # see consensus.sim.explore_faults
    inert: bool = True
    stale: bool = True


    @classmethod
    def none(cls) -> Reductions:
        """No reduction at all: the plain search."""
        return cls(
            dead=False, symmetry=False, compact=False, sleep=False, lossless=False, crash=False,
            inert=False, stale=False,
        )

    @classmethod
    def only(cls, *names: str) -> Reductions:
        """Just the named reductions (field names), every other one off.

        Args:
            names: field names of this class.

        Returns:
            The selection.
        """
        return replace(cls.none(), **dict.fromkeys(names, True))


def symmetries(nodes: Sequence[int], wants: Mapping[int, tuple[str, ...]]) -> list[dict[int, int]]:
    """Return the node permutations that are symmetries of the configuration.

    Only nodes that want nothing (pure acceptors, which own no ballot) may be permuted,
    and only among themselves; the identity comes first.

    Args:
        nodes: all node ids.
        wants: the types each node proposes.

    Returns:
        The identity, plus the swap of the two idle nodes when there are exactly two.
    """
    identity = {i: i for i in nodes}
    idle = [i for i in nodes if not wants[i] and i != min(nodes)]
    if len(idle) != 2:
        return [identity]
    a, b = idle
    return [identity, {**identity, a: b, b: a}]


def is_stale(
    receiver: PaxosNode | None,
    sender: PaxosNode | None,
    sender_durable: DurableState,
    msg: Message,
    *,
    sole: bool = True,
) -> bool:
    """True when a ``Prepare``/``Accept`` changes nothing now and after any future.

    See the ``stale`` reduction in the module docstring.

    Args:
        receiver: the node the request is in flight to (None when crashed).
        sender: the proposer that sent it (None when crashed).
        sender_durable: the proposer's durable state.
        msg: the message in flight.
        sole: the sender is the configuration's only proposer (every ballot is its own
            and the receiver never starts an attempt); otherwise only the decided-slot
            case applies.

    Returns:
        Whether the request can be removed without changing any behaviour.
    """
    if receiver is None or not isinstance(msg, Prepare | Accept):
        return False
    slot, ballot = msg.slot, msg.ballot
    if ballot.node != msg.sender or ballot.round > sender_durable.max_round:
        return False
    a = None if sender is None else sender._attempt
    if a is not None and (a.slot, a.ballot) == (slot, ballot):
        return False  # its replies still count
    if receiver._max_round < ballot.round:
        return False  # it would note a higher round
    decided = receiver._map.values_at(slot)
    if decided:
        # It answers with Commits only (an attempt in a learned slot was dropped).
        return all((slot, v) in sender_durable.learned for v in decided)
    if not sole or receiver._attempt is not None:
        return False  # a later promise may be another proposer's; it may yield
    current = receiver.acceptor.promised(slot)
    if current is None or current < ballot:
        return False  # it would promise or accept
    if current > ballot:
        return current.round <= sender_durable.max_round  # a Nack the proposer ignores
    if isinstance(msg, Prepare):
        return True  # the same Promise again, nothing persisted
    return receiver.acceptor.accepted(slot) == (ballot, msg.value)


def is_dead(node: PaxosNode | None, durable: DurableState, dst: int, msg: Message) -> bool:
    """True when delivering ``msg`` to ``dst`` is a no-op now and after any future.

    Args:
        node: the receiver (None when crashed: its messages are already gone).
        durable: the receiver's durable state.
        dst: the receiver's id.
        msg: the message in flight.

    Returns:
        Whether the message can be removed without changing any behaviour.
    """
    if node is None:
        return False
    if isinstance(msg, Commit):
        return (msg.slot, msg.value) in durable.learned
    if isinstance(msg, Promise | Accepted | Nack):
        if msg.ballot.node != dst or msg.ballot.round > durable.max_round:
            return False
        a = node._attempt
        if a is not None and (a.slot, a.ballot) == (msg.slot, msg.ballot):
            return False
        return not isinstance(msg, Nack) or msg.promised.round <= durable.max_round
    return False


@lru_cache(maxsize=1 << 16)
def _wire(msg: Message) -> tuple[str, list[Any]]:
    wire = msg.to_wire()
    return repr(wire), wire


def msg_key(src: int, dst: int, msg: Message, perm: Perm | None = None) -> tuple[int, int, str]:
    """Key of one message in flight, with node ids renamed by ``perm``.

    Args:
        src: sender.
        dst: receiver.
        msg: the message.
        perm: node renaming, or None for the identity.

    Returns:
        ``(src, dst, repr(wire form))`` after renaming (the wire form names the sender).
    """
    text, wire = _wire(msg)
    if perm is None:
        return (src, dst, text)
    renamed = list(wire)
    renamed[1] = perm[wire[1]]
    return (perm[src], perm[dst], repr(renamed))


def node_key(node: PaxosNode, perm: Perm | None = None, *, inert: bool = False) -> tuple[Any, ...]:
    """``node.state_key()`` with the node ids inside it renamed by ``perm``.

    Args:
        node: a live node.
        perm: node renaming, or None for the identity.
        inert: leave out the failure count when the configuration makes it inert
            (the ``inert`` reduction in the module docstring).

    Returns:
        The key. Ids appear only in ballots (which a symmetry fixes) and in the current
        attempt's promise and acceptance senders (index 5 of ``state_key``).

    Raises:
        RuntimeError: ``perm`` moves a node that owns a ballot (not a symmetry).
    """
    key = node.state_key()
    if inert and node.config.backoff_ticks == 0:
        key = (*key[:10], 0, *key[11:])  # index 10: consecutive failures
    if perm is None:
        return key
    if perm[node.node_id] != node.node_id and node._attempt is not None:
        raise RuntimeError(f"symmetry broken: node {node.node_id} owns a ballot")
    attempt = key[5]
    if attempt is None:
        return key
    slot, ballot, own, value, deadline, promises, accepted = attempt
    if perm[ballot.node] != ballot.node:
        raise RuntimeError(f"symmetry broken: ballot {ballot} is moved")
    renamed = (
        slot, ballot, own, value, deadline,
        tuple(sorted((perm[s], ab, av) for s, ab, av in promises)),
        tuple(sorted(perm[s] for s in accepted)),
    )
    return (*key[:5], renamed, *key[6:])


def compact(key: object) -> bytes:
    """Hash a canonical key to 16 bytes (BLAKE2b over its ``repr``).

    Args:
        key: nested tuples of ints, strings, bytes, ballots, None and frozensets of ints.

    Returns:
        The 16-byte digest.
    """
    return hashlib.blake2b(repr(key).encode(), digest_size=16).digest()
