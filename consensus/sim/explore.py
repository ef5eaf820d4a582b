"""Exhaustive search: every interleaving of a small configuration, safety in every state.

    python -m consensus.sim.explore --ballots 2 --loss 0 --dup 0 --crashes 0   # CI, part 1
    python -m consensus.sim.explore --ballots 1 --loss 1 --dup 1 --crashes 1 --proposers 1
    python -m consensus.sim.explore --big           # more faults
    python -m consensus.sim.explore --issue         # 3 ballots, loss, dup and crash

Sizes (2-core development machine, all reductions of
:mod:`consensus.sim.explore_reduce`): two concurrent proposers with 2 ballots and no
faults: 5,095 distinct states (42,872 without reductions); one proposer, 1 ballot, one
loss, one duplicate, one crash: 2,241 states (9,865 without). See docs/consensus.md for
``--big``, ``--issue`` and what stays out of reach.

Theory of operation: a *world* is the three real :class:`~consensus.node.PaxosNode`
objects (or ``None`` for a crashed one), each node's durable state, the multiset of
messages in flight and the fault budgets left. From a world, every enabled action gives
a successor: deliver any in-flight message, drop it (loss budget), deliver it but keep a
copy (duplication budget), tick a node (its timeouts fire), crash a node (crash budget;
volatile state lost) or restart a crashed one from its durable state. Depth-first
search visits every world reachable while at most ``max_ballots`` ballots have been used,
checks it, removes its dead messages, and prunes it when its canonical key (node
``state_key()``s, durable states, sorted in-flight messages, budgets; the smaller over
the configuration's node symmetries; hashed to 16 bytes) was seen before.

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
Sleep sets never lose a reachable state, only redundant transitions. Every message goes through the wire
encoding on send.

Checked in every world (membership is static, so classic Paxos safety must hold):

* at most one value is ever learned per slot, across live and durable state
  ("Paxos Made Simple" section 2: "only a single value is chosen");
* a ballot never carries two different values (ballots are never reused, even across
  crashes);
* every ``Promise``/``Accepted`` in flight is backed by the sender's *durable* state:
  its persisted promise is at least that ballot (persist before answering);
* no node's map gives two types one group, and the two types of the configuration share
  a preferred group so the collision path is exercised.
"""

from __future__ import annotations

import argparse
import pickle
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from consensus.journal import (
    AcceptedRecord,
    DurableState,
    Learned,
    MoveIntent,
    Promised,
    Record,
    RoundUsed,
)
from consensus.messages import Accept, Accepted, Message, Prepare, Promise, message_from_wire
from consensus.node import Config, PaxosNode
from consensus.sim.explore_reduce import Reductions, is_dead, msg_key, node_key, symmetries
from consensus.sim.explore_reduce import compact as compact_key
from consensus.sim.scenario import colliding_names

__all__ = ["ExploreResult", "Outcome", "Reductions", "explore"]

NODES = (1, 2, 3)
ALL_REDUCTIONS = Reductions()
# The issue's configuration (3 nodes, 2 types, up to 3 ballots, a loss, a duplicate and a
# crash on every path), with one proposer, the smaller variant. It does not complete in
# minutes yet: see docs/consensus.md for how far it gets.
ISSUE = {"max_ballots": 3, "loss": 1, "dup": 1, "crashes": 1, "proposers": 1}
DurableKey = tuple[object, ...]
Item = tuple[int, int, Message]  # (src, dst, msg) in flight


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


@dataclass(slots=True)
class _World:
    nodes: dict[int, PaxosNode | None]
    durable: dict[int, DurableState]
    in_flight: list[tuple[int, int, Message]]  # (src, dst, msg), kept sorted by key
    loss: int
    dup: int
    crash: int
    wants: dict[int, tuple[str, ...]]
    ballots: int = 0  # distinct ballots any proposer has used so far


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
) -> ExploreResult:
    """Visit every reachable world of 3 nodes and 2 colliding types.

    Args:
        max_ballots: how many distinct ballots all proposers together may use.
        loss: how many messages may be dropped on any one path.
        dup: how many messages may be duplicated on any one path.
        crashes: how many crashes may happen on any one path.
        state_limit: stop (incomplete) after this many distinct worlds.
        proposers: 2: node 1 proposes the first type and node 2 the second, at once
            (concurrent proposers); 1: node 1 proposes both (a smaller space, which
            leaves room for more faults).
        reductions: which sound reductions to apply (see
            :mod:`consensus.sim.explore_reduce`); all by default.
        outcomes: if given, every distinct world's :func:`_outcome` is added to it (to
            compare the reachable outcomes with and without a reduction).
        progress: called with (states, seconds, violations) every 50,000 distinct states.

    Returns:
        States explored, violations found (with one example path), timing.
    """
    began = time.perf_counter()
    type_a, type_b = colliding_names(1)[0]
    wants = {1: (type_a,), 2: (type_b,), 3: ()} if proposers > 1 else {1: (type_a, type_b), 2: (), 3: ()}
    world = _initial(wants, loss, dup, crashes)
    perms = symmetries(NODES, wants) if reductions.symmetry else [None]
    result = ExploreResult(states=0, transitions=0, violations=[], max_depth=0, seconds=0.0)
    # Distinct key -> the deliveries that were asleep when it was expanded (canonical
    # names); a later visit with fewer asleep re-explores just the difference.
    seen: dict[object, frozenset[tuple[int, int, str]]] = {}
    stack: list[tuple[_World, int, list[str], dict[Item, Action]]] = [(world, 0, [], {})]
    while stack:
        world, depth, path, asleep = stack.pop()
        # Check the world as reached, before any reduction forgets part of it.
        problems = _check(world)
        if problems:
            result.violations.extend(problems)
            if not result.example:
                result.example = path
            continue
        if reductions.dead:
            _drop_dead(world)
        key, perm = _canonical(world, perms, compact=reductions.compact)
        canonical = {msg_key(*item, perm): item for item in asleep}
        only: set[Item] | None = None
        if key in seen:
            stored = seen[key]
            if stored <= canonical.keys():
                continue
            # Sound revisit (Godefroid 1996, section 5.3): explore what was asleep then
            # but is awake now, with the intersection as the sleep set.
            seen[key] = stored & canonical.keys()
            only = {item for item in _enabled(world) if msg_key(*item, perm) in stored - canonical.keys()}
            asleep = {item: act for item, act in asleep.items() if msg_key(*item, perm) in stored}
        else:
            if result.states >= state_limit:
                result.complete = False
                break
            seen[key] = frozenset(canonical)
            result.states += 1
            if progress is not None and result.states % 50_000 == 0:
                progress(result.states, time.perf_counter() - began, len(result.violations))
            result.max_depth = max(result.max_depth, depth)
            if outcomes is not None:
                outcomes.add(_outcome(world))
            if any(n is not None and n.groups for n in world.nodes.values()):
                result.decided_worlds += 1
        if world.ballots > max_ballots:
            continue  # beyond the ballot bound: checked, not expanded
        children = list(_children(world, asleep, only))
        # Children are popped last-first; each sleeps on the deliveries popped before it
        # (later in the list) and on its parent's, as far as they commute with its own.
        explored = dict(asleep)
        pending: list[tuple[_World, int, list[str], dict[Item, Action]]] = []
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


def _outcome(world: _World) -> Outcome:
    """The safety-relevant outcome: the entries each node has learned (durable or live)."""
    out = []
    for i in NODES:
        entries = set(world.durable[i].learned)
        node = world.nodes[i]
        if node is not None:
            entries.update(node.entries())
        out.append(frozenset(entries))
    return tuple(out)


# -- world construction and transitions ---------------------------------------------


def _config(node_id: int) -> Config:
    # No heartbeats and no random backoff: the search, not the RNG, chooses timing.
    return Config(
        node_id=node_id, heartbeat_ticks=0, retry_ticks=1, backoff_ticks=0, catchup_ticks=1,
        follow_leader=False,
    )


def _initial(wants: dict[int, tuple[str, ...]], loss: int, dup: int, crashes: int) -> _World:
    world = _World(
        nodes={}, durable={i: DurableState() for i in NODES}, in_flight=[], loss=loss, dup=dup,
        crash=crashes, wants=wants,
    )
    for i in NODES:
        node = PaxosNode(_config(i), rng=_RNG)
        node.set_view(NODES)
        world.nodes[i] = node
    for i in NODES:
        for name in world.wants[i]:
            proposer = world.nodes[i]
            assert proposer is not None
            proposer.propose(name)
        _flush(world, i)
    return world


@dataclass(frozen=True, slots=True)
class Action:
    """A plain delivery, as the sleep-set reduction sees it."""

    item: tuple[int, int, Message]  # (src, dst, msg) delivered
    sent: frozenset[tuple[int, int, Message]]  # every message the receiver generated
    prepared: bool  # it sent a Prepare (moves the global ballot count)

    def independent(self, other: Action) -> bool:
        """True when the two deliveries commute and neither disables the other.

        They touch different nodes (a delivery changes only its receiver, its durable
        state and the in-flight set), neither moves the shared ballot count (the bound
        could stop one order early), and neither re-sends the message the other consumes
        (in-flight copies are merged, so remove-then-add and add-then-remove differ).
        """
        return (
            self.item[1] != other.item[1]
            and not self.prepared
            and not other.prepared
            and self.item not in other.sent
            and other.item not in self.sent
        )


def _enabled(world: _World) -> set[Item]:
    return set(world.in_flight)


def _successors(world: _World) -> Iterator[tuple[str, _World]]:
    """Every successor of ``world`` with its label (no reduction)."""
    for label, nxt, _action in _children(world, {}, None):
        yield label, nxt


def _children(
    world: _World, asleep: Mapping[Item, Action], only: set[Item] | None
) -> Iterator[tuple[str, _World, Action | None]]:
    """Every successor, except deliveries that are asleep; with ``only``, just those deliveries."""
    distinct = sorted(set(range(len(world.in_flight))), key=lambda k: _msg_key(world.in_flight[k]))
    done: set[object] = set()
    for k in distinct:
        mk = _msg_key(world.in_flight[k])
        if mk in done:
            continue
        done.add(mk)
        src, dst, msg = item = world.in_flight[k]
        if item not in asleep and (only is None or item in only):
            nxt, action = _deliver(world, k, keep=False)
            yield f"deliver {src}->{dst} {msg.describe()}", nxt, action
        if only is not None:
            continue
        if world.loss:
            nxt = _clone(world)
            del nxt.in_flight[k]
            nxt.loss -= 1
            yield f"drop {src}->{dst} {msg.describe()}", nxt, None
        if world.dup:
            nxt, _ = _deliver(world, k, keep=True)
            nxt.dup -= 1
            yield f"duplicate {src}->{dst} {msg.describe()}", nxt, None
    for i in NODES if only is None else ():
        node = world.nodes[i]
        if node is None:
            yield f"restart {i}", _restart(world, i), None
            continue
        nxt = _clone(world, i)
        live = nxt.nodes[i]
        assert live is not None
        if _fire_timeout(live):
            _flush(nxt, i)
            yield f"timeout {i}", nxt, None
        if world.crash:
            nxt = _clone(world)
            nxt.nodes[i] = None
            nxt.crash -= 1
            nxt.in_flight = [m for m in nxt.in_flight if m[1] != i]  # its socket buffer dies
            yield f"crash {i}", nxt, None


def _fire_timeout(node: PaxosNode) -> bool:
    # Ticks that only count a timer down are not interesting interleavings: tick until
    # the node does something (sends, persists, or drops its attempt), or give up.
    attempt = node._attempt
    for _ in range(4 * node.config.retry_ticks + 2):
        node.tick()
        if node.has_ready() or node._attempt is not attempt:
            return True
    return False


def _clone(world: _World, touched: int | None = None) -> _World:
    # Only the touched node and its durable state are mutated by a transition, so only
    # they are deep-copied (a pickle round trip, done in C); everything else is shared.
    nodes = dict(world.nodes)
    durable = dict(world.durable)
    if touched is not None:
        nodes[touched] = _copy_node(nodes[touched])
        durable[touched] = pickle.loads(pickle.dumps(durable[touched], pickle.HIGHEST_PROTOCOL))
    return _World(
        nodes=nodes, durable=durable, in_flight=list(world.in_flight), loss=world.loss,
        dup=world.dup, crash=world.crash, wants=world.wants, ballots=world.ballots,
    )


_RNG = random.Random(0)


def _copy_node(node: PaxosNode | None) -> PaxosNode | None:
    if node is None:
        return None
    # Explored nodes never draw from their RNG (backoff_ticks=0), so copies share one
    # instead of copying 2.5 kB of Mersenne Twister state per node per transition.
    rng = node._rng
    node._rng = None  # type: ignore[assignment]
    try:
        data = pickle.dumps(node, pickle.HIGHEST_PROTOCOL)
    finally:
        node._rng = rng
    copied: PaxosNode = pickle.loads(data)
    copied._rng = _RNG
    return copied


def _deliver(world: _World, k: int, *, keep: bool) -> tuple[_World, Action]:
    nxt = _clone(world, world.in_flight[k][1])
    item = nxt.in_flight[k] if keep else nxt.in_flight.pop(k)
    node = nxt.nodes[item[1]]
    sent: list[tuple[int, int, Message]] = []
    if node is not None:
        node.step(item[2])
        sent = _flush(nxt, item[1])
    return nxt, Action(item, frozenset(sent), nxt.ballots != world.ballots)


def _restart(world: _World, i: int) -> _World:
    nxt = _clone(world, i)
    node = PaxosNode(_config(i), rng=_RNG, records=_records(nxt.durable[i]))
    node.set_view(NODES)
    nxt.nodes[i] = node
    for name in nxt.wants[i]:
        node.propose(name)  # the application asks again after a restart
    _flush(nxt, i)
    return nxt


def _flush(world: _World, i: int) -> list[tuple[int, int, Message]]:
    """Persist and send node ``i``'s effects; return every message it generated."""
    node = world.nodes[i]
    assert node is not None
    sent: list[tuple[int, int, Message]] = []
    if not node.has_ready():
        return sent
    rd = node.ready()
    _apply(world.durable[i], rd.to_persist)
    rd.mark_persisted()
    for env in rd.outbox:
        # Every message crosses the wire encoding, as on the network.
        msg = message_from_wire(env.msg.to_wire())
        if isinstance(msg, Prepare):
            world.ballots += 1
        targets = [env.to] if env.to is not None else [j for j in NODES if j != i]
        for dst in targets:
            item = (i, dst, msg)
            sent.append(item)
            # Identical copies in flight are merged: a message is in flight or not, and
            # re-delivery is what the duplication budget models. Without this a resent
            # request would make the state space infinite.
            if world.nodes.get(dst) is not None and item not in world.in_flight:
                world.in_flight.append(item)
    node.advance(rd)
    return sent


def _apply(state: DurableState, records: Sequence[Record]) -> None:
    for rec in records:
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


def _records(state: DurableState) -> list[Record]:
    out: list[Record] = [RoundUsed(round=state.max_round)]
    for slot in sorted(state.promised):
        out.append(Promised(slot=slot, ballot=state.promised[slot]))
        if slot in state.accepted:
            ballot, value = state.accepted[slot]
            out.append(AcceptedRecord(slot=slot, ballot=ballot, value=value))
    out += [Learned(slot=s, value=v) for s, v in state.learned]
    out += [MoveIntent(move=m) for m in state.moves]
    return out


# -- keys and checks ------------------------------------------------------------------


def _msg_key(item: tuple[int, int, Message]) -> tuple[int, int, str]:
    return msg_key(*item)


def _drop_dead(world: _World) -> None:
    world.in_flight = [
        (src, dst, msg) for src, dst, msg in world.in_flight
        if not is_dead(world.nodes[dst], world.durable[dst], dst, msg)
    ]


def _durable_key(state: DurableState) -> DurableKey:
    learned_slots = {s for s, _ in state.learned}
    # Acceptor state for a learned slot is ignored on restart, so it is not part of the key.
    return (
        tuple(sorted((s, b) for s, b in state.promised.items() if s not in learned_slots)),
        tuple(sorted((s, a) for s, a in state.accepted.items() if s not in learned_slots)),
        tuple(state.learned),
        state.max_round,
        tuple(m.encode() for m in state.moves),
    )


def _key(world: _World) -> object:
    """The world's plain key (no renaming, not hashed)."""
    return _perm_key(world, None)


def _canonical(
    world: _World, perms: Sequence[Mapping[int, int] | None], *, compact: bool
) -> tuple[object, Mapping[int, int] | None]:
    """The canonical key (smallest over ``perms``) and the renaming that gives it."""
    keys = [(_perm_key(world, perm), perm) for perm in perms]
    if compact:
        return min(((compact_key(k), perm) for k, perm in keys), key=lambda kp: kp[0])
    return keys[0] if len(keys) == 1 else min(keys, key=lambda kp: repr(kp[0]))


def _perm_key(world: _World, perm: Mapping[int, int] | None) -> object:
    """The world's key after renaming node ``i`` to ``perm[i]``."""
    inverse = {i: i for i in NODES} if perm is None else {v: k for k, v in perm.items()}
    parts = []
    for j in NODES:
        i = inverse[j]
        node = world.nodes[i]
        if perm is not None and i != j and world.durable[i].max_round:
            raise RuntimeError(f"symmetry broken: node {i} owns a ballot")
        parts.append((None if node is None else node_key(node, perm), _durable_key(world.durable[i])))
    return (
        tuple(parts),
        tuple(sorted(msg_key(src, dst, msg, perm) for src, dst, msg in world.in_flight)),
        world.loss,
        world.dup,
        world.crash,
        world.ballots,
    )


def _check(world: _World) -> list[str]:
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
        "--big", action="store_true", help="one proposer, loss 2, dup 2, crashes 2 (about a minute)"
    )
    parser.add_argument("--issue", action="store_true", help=f"the issue's configuration: {ISSUE}")
    for name in ("dead", "symmetry", "compact", "sleep"):
        parser.add_argument(f"--no-{name}", action="store_true", help=f"turn off the {name} reduction")
    opts = parser.parse_args(argv)
    if opts.big:
        opts.ballots, opts.loss, opts.dup, opts.crashes, opts.proposers = 1, 2, 2, 2, 1
    if opts.issue:
        opts.ballots, opts.loss, opts.dup, opts.crashes, opts.proposers = (
            ISSUE["max_ballots"], ISSUE["loss"], ISSUE["dup"], ISSUE["crashes"], ISSUE["proposers"]
        )
    reductions = Reductions(
        dead=not opts.no_dead, symmetry=not opts.no_symmetry, compact=not opts.no_compact,
        sleep=not opts.no_sleep,
    )
    res = explore(
        max_ballots=opts.ballots, loss=opts.loss, dup=opts.dup, crashes=opts.crashes,
        state_limit=opts.limit, proposers=opts.proposers, reductions=reductions,
        progress=lambda n, t, v: print(f"  ... {n} states, {t:.0f} s, {v} violations", file=sys.stderr, flush=True),
    )
    print(f"config: 3 nodes, 2 types, ballots<={opts.ballots}, loss<={opts.loss}, "
          f"dup<={opts.dup}, crashes<={opts.crashes}, proposers={opts.proposers}; {reductions}")
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
