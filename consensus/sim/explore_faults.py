"""Fault reductions for the exhaustive search: loss and crashes that cannot matter.

Theory of operation: the safety checks (:func:`consensus.sim.explore.check`) look at
node states, durable states and the messages in flight, and every one of them is
*monotone in the in-flight set*: a world with the same nodes and durable states and more
messages in flight fails every check the smaller one fails (each check is "no message
in flight is bad" or about nodes only). A message that stays in flight forever is always
a possible future (the search explores every prefix; nothing forces a delivery). So a
world ``W'`` *simulates* ``W`` when both have the same nodes and durable states,
``in_flight(W') >= in_flight(W)`` and every budget of ``W'`` is at least ``W``'s: every
action enabled in ``W`` is enabled in ``W'`` (a delivery, duplicate or drop of a message
in ``W`` is possible in ``W'``; a timeout, crash or restart depends on nodes and
budgets), and leads to a world that again simulates ``W``'s successor (same node
transition, same messages added, the same messages to a crashed node removed; the
dead-message rule removes a message by looking only at its receiver and the receiver's
durable state, which are equal). By induction every node state, every violation and
every outcome reachable from ``W`` is reachable from ``W'``. Both reductions below drop
transitions whose result is simulated by a world the search explores anyway.

* **Loss is non-delivery** (``lossless``, ``--no-lossless``). Dropping ``m`` gives
  ``W - m`` with one loss less; ``W`` itself simulates it (``m`` is simply never
  delivered). So drops are never explored and the loss budget is left out of the key.
  The search then covers *every* number of losses, not just the budget: for safety a
  lost message and one delayed forever cannot be told apart by any node. The in-flight
  invariant ("a ``Promise``/``Accepted`` in flight is backed by its sender's durable
  state") only gains checks from the messages kept, and a crash still removes the
  messages to the crashed node in both worlds alike.

* **A crash is followed at once by its restart, and skipped when it changes nothing**
  (``crash``, ``--no-crash``). Consider a path ``crash(i) t restart(i) r`` where ``t``
  contains no action of node ``i`` (it is down). Restart rebuilds ``i`` from its durable
  state, which ``t`` does not touch, so ``crash(i) restart(i) t r`` gives the same nodes
  and durable states and keeps in flight the messages ``t`` sends to ``i`` (which the
  first path loses): it simulates the first path's end, and the ballot count and budgets
  are the same after both. The worlds in between, where ``i`` is down, are simulated by
  the worlds of ``t`` without the crash at all: ``i`` up and idle, its in-flight
  messages undelivered, its live learned entries equal to its durable ones (a node
  persists what it learns in the same ``Ready``), one crash more in the budget. So the
  search crashes and restarts a node in one step. When the restarted node has the same
  ``state_key()`` as the live one, sends nothing and persists nothing (an acceptor, or a
  proposer with no attempt: its volatile state is exactly what its journal rebuilds),
  the step only removes the messages to ``i`` and spends budget: the world before the
  step simulates the one after, and the step is not explored.

``tests/consensus/test_paxos_explore_faults.py`` checks both empirically: leaving either
one out of a 2-ballot search with a loss and a crash reaches the same outcomes (the
entries each node learned) and the same node states (with every node up), and
``test_paxos_explore_reduce.py`` compares each one alone with no reduction at all.
"""

from __future__ import annotations

from consensus.sim.explore_key import durable_key
from consensus.sim.explore_reduce import node_key
from consensus.sim.explore_world import World, clone, restart

__all__ = ["crash", "crash_restart"]


def crash(world: World, i: int) -> World:
    """Crash node ``i``: its volatile state and the messages to it are lost.

    Args:
        world: the parent (never mutated); node ``i`` is up and a crash is left in the budget.
        i: the node.

    Returns:
        The child, with node ``i`` down.
    """
    nxt = clone(world)
    nxt.nodes[i] = None
    nxt.parts[i] = {}
    nxt.crash -= 1
    nxt.in_flight = {m for m in nxt.in_flight if m[1] != i}  # its socket buffer dies
    return nxt


def crash_restart(world: World, i: int) -> World | None:
    """Crash node ``i`` and restart it at once; None when that changes no node.

    Args:
        world: the parent (never mutated); node ``i`` is up and a crash is left in the budget.
        i: the node.

    Returns:
        The child, or None when the restarted node equals the live one and the restart
        sent and persisted nothing (the parent simulates that child).
    """
    down = crash(world, i)
    up = restart(down, i)
    before, after = world.nodes[i], up.nodes[i]
    assert before is not None and after is not None
    if (
        up.in_flight == down.in_flight
        and up.ballots == world.ballots
        and durable_key(up.durable[i]) == durable_key(world.durable[i])
        and node_key(after) == node_key(before)
    ):
        return None
    return up
