"""Exhaustive search: every interleaving of a small configuration, safety in every state.

    python -m consensus.sim.explore --issue         # 3 ballots, loss, dup, crash (CI)
    python -m consensus.sim.explore --ballots 2 --loss 0 --dup 0 --crashes 0   # CI duel
    python -m consensus.sim.explore --big           # 3 ballots, two dups, two crashes
    python -m consensus.sim.explore --issue --no-stale --no-hold   # measure a reduction

Sizes: see docs/consensus.md (measured on the 2-core development machine, one core).

Theory of operation: a *world* is the three real :class:`~consensus.node.PaxosNode`
objects (or ``None`` for a crashed one), each node's durable state, the set of messages
in flight and the fault budgets left (:mod:`consensus.sim.explore_world`). From a
world, every enabled action gives a successor: deliver any in-flight message, drop it
(loss budget), deliver it but keep a copy (duplication budget), tick a node (its
timeouts fire), crash a node (crash budget; volatile state lost) or restart a crashed
one from its durable state. Depth-first search visits every world reachable while at
most ``max_ballots`` ballots have been used (with ``hold``, one more is started but its
``Prepare`` never sent, so the rest of that ``Ready`` still plays out), checks it,
removes its dead messages, and prunes it when its canonical key
(:mod:`consensus.sim.explore_key`: node keys, durable states, in-flight messages,
budgets; the smallest over the node symmetries; 16-byte digests) was seen before. The
reductions that make the issue's configuration fit in a minute are argued in
:mod:`consensus.sim.explore_reduce` (dead messages, stale requests, symmetry, inert
fields, compact keys) and :mod:`consensus.sim.explore_faults` (loss is non-delivery; a
crash is restarted at once and skipped when it changes nothing).

Sleep sets (Godefroid, "Partial-Order Methods for the Verification of Concurrent
Systems", 1996, chapter 5, with the stateful variant that stores each state's sleep set
and re-explores on a revisit whose sleep set is not a superset): after exploring a
delivery, its later siblings do not re-explore it while only deliveries independent of
it happen (:meth:`Action.independent`). Two deliveries are independent when they reach
different nodes, neither sends a ``Prepare`` (the shared ballot count and its bound) and
neither re-sends the message the other consumes (merged copies); a delivery changes only
its receiver, the receiver's durable state and the in-flight set, so such pairs commute
and neither disables the other. Drops, duplicates, crashes, restarts and timeouts spend
shared budgets or kill messages, so they are never put to sleep and wake everything.
Sleep sets never lose a reachable state, only redundant transitions. Every message goes
through the wire encoding on send.

Checked in every world (membership is static, so classic Paxos safety must hold):

* at most one value is ever learned per slot, across live and durable state
  ("Paxos Made Simple" section 2: "only a single value is chosen");
* a ballot never carries two different values (ballots are never reused, even across
  crashes);
* every ``Promise``/``Accepted`` in flight is backed by the sender's *durable* state:
  its persisted promise is at least that ballot (persist before answering);
* no node's map gives two types one group, and the two types of the configuration share
  a preferred group so the collision path is exercised;
* every node's map is the plain reference fold of its entries, which also checks that
  no type lands on a group retired less than ``GRACE_ENTRIES`` entries earlier.

``retire=True`` starts from a map where the first type is already decided on its
preferred group and asks for it to be retired, while the second type, whose preferred
group is the same, is proposed: with two proposers node 1 retires and node 2 proposes
at once (they race for the next slot); with one, node 1 does both in turn. Either way
the second type must never land on the reserved group.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field

from consensus.allocator import preferred_group
from consensus.commands import Assign
from consensus.messages import Accept, Accepted, Message, Promise
from consensus.sim.explore_faults import crash, crash_restart
from consensus.sim.explore_key import canonical, plain_key, reset_cache
from consensus.sim.explore_reduce import Reductions, is_dead, is_stale, msg_key, symmetries
from consensus.sim.explore_world import (
    NODES,
    RETIRE,
    Action,
    Item,
    World,
    apply_records,
    clone,
    copy_node,
    deliver,
    fire_timeout,
    flush,
    initial,
    records,
    restart,
)
from consensus.sim.invariants import reference_fold
from consensus.sim.scenario import colliding_names

__all__ = ["ExploreResult", "Outcome", "Reductions", "World", "check", "explore", "outcome"]

ALL_REDUCTIONS = Reductions()
# The issue's configuration (3 nodes, 2 types, up to 3 ballots, a loss, a duplicate and a
# crash on every path), with one proposer, the smaller variant.
ISSUE = {"max_ballots": 3, "loss": 1, "dup": 1, "crashes": 1, "proposers": 1}

# Internals under their historical names (tests/consensus/test_paxos_sim_internals.py).
_World = World
_initial = initial
_clone = clone
_copy_node = copy_node
_apply = apply_records
_records = records
_canonical = canonical


@dataclass(slots=True)
class ExploreResult:
    """Outcome of one exhaustive search."""

    states: int
    transitions: int
    violations: list[str]
    max_depth: int
    seconds: float
    decided_worlds: int = 0
    complete: bool = True
    example: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0


def explore(
    *,
    max_ballots: int = 3,
    loss: int = 1,
    dup: int = 1,
    crashes: int = 1,
    state_limit: int = 2_000_000,
    proposers: int = 2,
    reductions: Reductions = ALL_REDUCTIONS,
    outcomes: set[Outcome] | None = None,
    progress: Callable[[int, float, int], None] | None = None,
    observe: Callable[[World], None] | None = None,
    hold: bool = True,
    retire: bool = False,
) -> ExploreResult:
    """Visit every reachable world of 3 nodes and 2 colliding types.

    Args:
        max_ballots: how many distinct ballots all proposers together may use.
        loss: how many messages may be dropped on any one path (with the ``lossless``
            reduction, any number: see :mod:`consensus.sim.explore_faults`).
        dup: how many messages may be duplicated on any one path.
        crashes: how many crashes may happen on any one path.
        state_limit: stop (incomplete) after this many distinct worlds.
        proposers: 2: node 1 proposes the first type and node 2 the second, at once
            (concurrent proposers); 1: node 1 proposes both (a smaller space, which
            leaves room for more faults).
        reductions: which sound reductions to apply (see
            :mod:`consensus.sim.explore_reduce` and :mod:`consensus.sim.explore_faults`);
            all by default.
        outcomes: if given, every distinct world's :func:`outcome` is added to it (to
            compare the reachable outcomes with and without a reduction).
        progress: called with (states, seconds, violations) every 50,000 distinct states.
        observe: called with every distinct world (after dead messages are removed).
        hold: a transition that starts ballot ``max_ballots + 1`` is explored with that
            ballot's ``Prepare`` held back (never sent), and the search goes on from
            there; False ends every path at that transition (as before; then with one
            ballot no ``Commit`` is ever delivered, as it leaves in the same ``Ready`` as
            the next slot's ``Prepare``).
        retire: the retire configuration of the module docstring instead.

    Returns:
        States explored, violations found (with one example path), timing.
    """
    began = time.perf_counter()
    reset_cache()
    type_a, type_b = colliding_names(1)[0]
    wants = {1: (type_a,), 2: (type_b,), 3: ()} if proposers > 1 else {1: (type_a, type_b), 2: (), 3: ()}
    decided: list[tuple[int, bytes]] = []
    if retire:
        retiring = RETIRE + type_a
        wants = ({1: (retiring,), 2: (type_b,), 3: ()} if proposers > 1
                 else {1: (retiring, type_b), 2: (), 3: ()})
        decided = [(0, Assign(type_name=type_a, group=preferred_group(type_a)).encode())]
    world = initial(wants, 0 if reductions.lossless else loss, dup, crashes, decided)
    # With ``hold``, one ballot past the bound is started but its Prepare stays unsent,
    # so the rest of the Ready that started it (a Commit) is explored too.
    limit = max_ballots + 1 if hold else max_ballots
    world.hold_after = max_ballots if hold else None
    perms = symmetries(NODES, wants) if reductions.symmetry else [None]
    owners = [i for i in NODES if wants[i]]
    # Nodes that propose; with one, it is the only node that ever owns a ballot.
    proposing = frozenset(owners) if reductions.stale else frozenset()
    result = ExploreResult(states=0, transitions=0, violations=[], max_depth=0, seconds=0.0)
    # Distinct key -> the deliveries that were asleep when it was expanded (canonical
    # names); a later visit with fewer asleep re-explores just the difference.
    seen: dict[object, frozenset[tuple[int, int, str]]] = {}
    stack: list[tuple[World, int, list[str], dict[Item, Action]]] = [(world, 0, [], {})]
    while stack:
        world, depth, path, asleep = stack.pop()
        # Check the world as reached, before any reduction forgets part of it.
        problems = check(world)
        if problems:
            result.violations.extend(problems)
            if not result.example:
                result.example = path
            continue
        if reductions.dead or reductions.stale:
            _drop_dead(world, proposing, dead=reductions.dead)
        key, perm = canonical(
            world, perms, compact=reductions.compact, max_ballots=limit, inert=reductions.inert
        )
        named = {msg_key(*item, perm): item for item in asleep}
        only: set[Item] | None = None
        if key in seen:
            stored = seen[key]
            if stored <= named.keys():
                continue
            # Sound revisit (Godefroid 1996, section 5.3): explore what was asleep then
            # but is awake now, with the intersection as the sleep set.
            seen[key] = stored & named.keys()
            only = {item for item in world.in_flight if msg_key(*item, perm) in stored - named.keys()}
            asleep = {item: act for item, act in asleep.items() if msg_key(*item, perm) in stored}
        else:
            if result.states >= state_limit:
                result.complete = False
                break
            seen[key] = frozenset(named)
            result.states += 1
            if progress is not None and result.states % 50_000 == 0:
                progress(result.states, time.perf_counter() - began, len(result.violations))
            result.max_depth = max(result.max_depth, depth)
            if outcomes is not None:
                outcomes.add(outcome(world))
            if observe is not None:
                observe(world)
            if any(n is not None and n.groups for n in world.nodes.values()):
                result.decided_worlds += 1
        if world.ballots > limit:
            continue  # beyond the ballot bound: checked, not expanded
        children = list(_children(world, asleep, only, reductions))
        # Children are popped last-first; each sleeps on the deliveries popped before it
        # (later in the list) and on its parent's, as far as they commute with its own.
        explored = dict(asleep)
        pending: list[tuple[World, int, list[str], dict[Item, Action]]] = []
        for label, nxt, action in reversed(children):
            result.transitions += 1
            child_sleep: dict[Item, Action] = {}
            if action is not None and reductions.sleep:
                child_sleep = {i: a for i, a in explored.items() if a.independent(action)}
                explored[action.item] = action
            pending.append((nxt, depth + 1, [*path, label] if len(path) < 200 else path, child_sleep))
        stack.extend(reversed(pending))
    result.seconds = time.perf_counter() - began
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


Outcome = tuple[frozenset[tuple[int, bytes]], ...]


def outcome(world: World) -> Outcome:
    """The safety-relevant outcome: the entries each node has learned (durable or live).

    Args:
        world: a world.

    Returns:
        One set of ``(slot, value)`` per node, in node order.
    """
    out = []
    for i in NODES:
        entries = set(world.durable[i].learned)
        node = world.nodes[i]
        if node is not None:
            entries.update(node.entries())
        out.append(frozenset(entries))
    return tuple(out)



def _sort_key(item: Item) -> tuple[int, int, str]:
    return msg_key(*item)


def _successors(world: World) -> Iterator[tuple[str, World]]:
    """Every successor of ``world`` with its label (no reduction)."""
    for label, nxt, _action in _children(world, {}, None, Reductions.none()):
        yield label, nxt


def _children(
    world: World, asleep: Mapping[Item, Action], only: set[Item] | None, reductions: Reductions
) -> Iterator[tuple[str, World, Action | None]]:
    """Every successor, except deliveries that are asleep; with ``only``, just those deliveries."""
    for item in sorted(world.in_flight, key=_sort_key):
        src, dst, msg = item
        if item not in asleep and (only is None or item in only):
            nxt, action = deliver(world, item, keep=False)
            yield f"deliver {src}->{dst} {msg.describe()}", nxt, action
        if only is not None:
            continue
        if world.loss:
            nxt = clone(world)
            nxt.in_flight.discard(item)
            nxt.loss -= 1
            yield f"drop {src}->{dst} {msg.describe()}", nxt, None
        if world.dup:
            nxt, _ = deliver(world, item, keep=True)
            nxt.dup -= 1
            yield f"duplicate {src}->{dst} {msg.describe()}", nxt, None
    for i in NODES if only is None else ():
        node = world.nodes[i]
        if node is None:
            yield f"restart {i}", restart(world, i), None
            continue
        if node._attempt is not None or node._wanted or node._moves:
            # Otherwise no timer can fire (no attempt, nothing to propose, no
            # heartbeats): fire_timeout would give up, so skip the copy.
            nxt = clone(world, i)
            live = nxt.nodes[i]
            assert live is not None
            if fire_timeout(live):
                flush(nxt, i)
                yield f"timeout {i}", nxt, None
        if world.crash and not reductions.crash:
            yield f"crash {i}", crash(world, i), None
        elif world.crash:
            up = crash_restart(world, i)
            if up is not None:
                yield f"crash and restart {i}", up, None


# -- keys and checks ------------------------------------------------------------------


def _drop_dead(world: World, proposing: Set[int] = frozenset(), *, dead: bool = True) -> None:
    # ``proposing``: the configuration's proposers, for stale requests (none: no such
    # rule); ``dead``: apply the dead-message rule too.
    sole = len(proposing) == 1

    def gone(src: int, dst: int, msg: Message) -> bool:
        if dead and is_dead(world.nodes[dst], world.durable[dst], dst, msg):
            return True
        return src in proposing and is_stale(
            world.nodes[dst], world.nodes[src], world.durable[src], msg, sole=sole
        )

    world.in_flight = {item for item in world.in_flight if not gone(*item)}


def _key(world: World) -> object:
    """The world's plain key (no renaming, not hashed)."""
    return plain_key(world, None)


def check(world: World) -> list[str]:
    """Check the safety invariants of the module docstring in one world.

    Args:
        world: a world.

    Returns:
        One line per violation; empty when every invariant holds.
    """
    problems: list[str] = []
    learned: dict[int, bytes] = {}
    for i in NODES:
        entries = list(world.durable[i].learned)
        node = world.nodes[i]
        if node is not None:
            entries += node.entries()
            groups = node.groups
            if len(set(groups.values())) != len(groups):
                problems.append(f"uniqueness: node {i} map {dict(groups)}")
            if node.reserved_groups or any(v.startswith(b"retire") for _, v in node.entries()):
                expected, grace = reference_fold(node.entries())
                problems += [f"grace: node {i}: {g}" for g in grace]
                if expected != dict(groups):
                    problems.append(f"fold: node {i} map {dict(groups)}, entries give {expected}")
        for slot, value in entries:
            if learned.setdefault(slot, value) != value:
                problems.append(f"agreement: two values learned in slot {slot}")
    ballots: dict[tuple[int, object], bytes] = {}
    for i in NODES:
        for slot, (ballot, value) in world.durable[i].accepted.items():
            if ballots.setdefault((slot, ballot), value) != value:
                problems.append(f"ballot {ballot} carries two values in slot {slot}")
    for src, _dst, msg in world.in_flight:
        if isinstance(msg, Accept) and ballots.setdefault((msg.slot, msg.ballot), msg.value) != msg.value:
            problems.append(f"ballot {msg.ballot} carries two values in slot {msg.slot}")
        if isinstance(msg, Promise | Accepted):
            durable = world.durable[src]
            promised = durable.promised.get(msg.slot)
            learned_here = any(s == msg.slot for s, _ in durable.learned)
            if not learned_here and (promised is None or promised < msg.ballot):
                problems.append(f"node {src} answered {msg.describe()} before persisting it")
    return problems


_check = check
REDUCTION_NAMES = (
    "dead", "symmetry", "compact", "sleep", "lossless", "crash", "inert", "stale",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the search from the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m consensus.sim.explore")
    parser.add_argument("--ballots", type=int, default=3, help="distinct ballots in all")
    parser.add_argument("--loss", type=int, default=1)
    parser.add_argument("--dup", type=int, default=1)
    parser.add_argument("--crashes", type=int, default=1)
    parser.add_argument("--limit", type=int, default=2_000_000, help="stop after this many states")
    parser.add_argument("--proposers", type=int, choices=(1, 2), default=2)
    parser.add_argument(
        "--big", action="store_true",
        help="one proposer, 3 ballots, loss 1, dup 2, crashes 2 (about two minutes)",
    )
    parser.add_argument("--issue", action="store_true", help=f"the issue's configuration: {ISSUE}")
    parser.add_argument(
        "--retire", action="store_true",
        help="node 1 retires a decided type while node 2 proposes one with the same preferred group",
    )
    for name in REDUCTION_NAMES:
        parser.add_argument(f"--no-{name}", action="store_true", help=f"turn off the {name} reduction")
    parser.add_argument(
        "--no-hold", action="store_true",
        help="end each path at the transition that starts a ballot past the bound",
    )
    opts = parser.parse_args(argv)
    if opts.big:
        opts.ballots, opts.loss, opts.dup, opts.crashes, opts.proposers = 3, 1, 2, 2, 1
    if opts.issue:
        opts.ballots, opts.loss, opts.dup, opts.crashes, opts.proposers = (
            ISSUE["max_ballots"], ISSUE["loss"], ISSUE["dup"], ISSUE["crashes"], ISSUE["proposers"]
        )
    reductions = Reductions(**{name: not getattr(opts, f"no_{name}") for name in REDUCTION_NAMES})
    res = explore(
        max_ballots=opts.ballots, loss=opts.loss, dup=opts.dup, crashes=opts.crashes,
        state_limit=opts.limit, proposers=opts.proposers, reductions=reductions, hold=not opts.no_hold,
        retire=opts.retire, progress=lambda n, t, v: print(f"  ... {n} states, {t:.0f} s, {v} violations", file=sys.stderr, flush=True),
    )
    loss = "any number (lossless)" if reductions.lossless else str(opts.loss)
    print(f"config: 3 nodes, 2 types{' (retire race)' if opts.retire else ''}, "
          f"ballots<={opts.ballots}, loss<={loss}, "
          f"dup<={opts.dup}, crashes<={opts.crashes}, proposers={opts.proposers}, "
          f"hold={not opts.no_hold}; {reductions}")
    print(f"distinct states: {res.states} ({'complete' if res.complete else 'INCOMPLETE: limit hit'})")
    print(f"transitions: {res.transitions}, max depth {res.max_depth}, "
          f"worlds with a decision: {res.decided_worlds}, {res.seconds:.1f} s, "
          f"peak RSS {res.peak_rss_mb:.0f} MB")
    print(f"violations: {len(res.violations)}")
    for problem in res.violations[:10]:
        print(f"  {problem}")
    for step in res.example:
        print(f"    {step}")
    return 1 if res.violations or not res.complete else 0


if __name__ == "__main__":
    sys.exit(main())
