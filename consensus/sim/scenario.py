"""Random fault scenarios from one seed, with invariants checked at every step.

Theory of operation: :func:`run_seed` builds a :class:`SimNetwork` and drives it through
a *fault phase* (random proposals from members and observers, message loss,
duplication, delay and reordering, crashes with and without losing the unsent outbox,
restarts, partitions and heals, and, with dynamic views, joins and leaves), then a
*quiet phase*: every partition healed, every crashed node restarted, no more loss. The
run must converge within ``quiet_limit`` ticks. Every decision comes from two
``random.Random`` objects seeded from the seed (one for the scenario, one for the
network), so a seed replays exactly.

Retires: about every 30th tick of the fault phase a running node (member or observer)
asks for a type of its map to be retired, and every node stops wanting that type (its
publishers stopped: the runtime refuses a retire while a live node publishes the
type); later random proposals may want it again. Like the runtime, a node that still
wants a type it sees retired asks for it again. These choices come from their own
``random.Random`` (``retire/<seed>``), so the rest of a seed's run is drawn as before.

Two families, chosen by the seed: with *static* views every member always sees the full
membership, so a minority cannot decide and classic Paxos safety is checked; with
*dynamic* views a partition shrinks views and each side decides alone, and the merge
rule is what is checked.

``byzantine=True`` adds the byzantine-input fault kind (:mod:`consensus.sim.byzantine`):
during the fault phase an adversary forges messages with extreme fields, from its own
RNG seeded from the seed. Such runs always use dynamic views (a forged ``Commit`` from a
member's id is a decision no quorum made, so classic safety is not claimed), and after
convergence they check that agreement stays live: a fresh type proposed by a member is
in every node's map within ``live_limit`` ticks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from consensus.allocator import preferred_group
from consensus.node import Config
from consensus.sim.byzantine import Adversary
from consensus.sim.invariants import Checker
from consensus.sim.network import Faults, SimNetwork, TraceLine

__all__ = ["RunResult", "colliding_names", "replay_command", "run_seed"]

OBSERVER_BASE = 1000


@dataclass(slots=True)
class RunResult:
    """What one seed did."""

    seed: int
    nodes: int
    static: bool
    violations: list[str]
    decisions: int
    messages: int
    converge_ticks: int | None
    trace: list[TraceLine] = field(default_factory=list)
    byzantine: bool = False
    live_ticks: int | None = None  # byzantine runs: ticks to decide the fresh type
    forged: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no invariant was violated."""
        return not self.violations


def colliding_names(count: int) -> list[tuple[str, str]]:
    """Return ``count`` pairs of type names that share a preferred group.

    Two types picking the same address concurrently is one of the named weaknesses; the
    scenarios always include such a pair. Found by search, deterministic.
    """
    seen: dict[object, str] = {}
    pairs: list[tuple[str, str]] = []
    i = 0
    while len(pairs) < count:
        name = f"clash.T{i}"
        group = preferred_group(name)
        if group in seen:
            pairs.append((seen.pop(group), name))
        else:
            seen[group] = name
        i += 1
    return pairs


_PAIRS = colliding_names(2)


FRESH_TYPE = "fresh.AfterAttack"


def replay_command(seed: int, nodes: int, *, byzantine: bool = False) -> str:
    """Return the shell command that replays one seed with its full trace."""
    flag = " --byzantine" if byzantine else ""
    return f"python -m consensus.sim --seeds 1 --start {seed} --nodes {nodes}{flag} --trace"


def sim_config(node_id: int, observer: bool, max_delay: int = 1) -> Config:
    """The node settings the simulator uses: an attempt outlives two round trips."""
    round_trip = 2 * max_delay
    return Config(
        node_id=node_id, observer=observer, heartbeat_ticks=8, retry_ticks=2 * round_trip + 4,
        backoff_ticks=round_trip + 2, catchup_ticks=round_trip + 4,
    )


def run_seed(
    seed: int,
    nodes: int = 5,
    *,
    trace: bool = False,
    fault_ticks: int = 100,
    quiet_limit: int = 400,
    byzantine: bool = False,
    live_limit: int | None = None,
) -> RunResult:
    """Run one random scenario and check every invariant.

    Args:
        seed: the scenario; the same seed always gives the same run.
        nodes: members at the start.
        trace: keep the full event trace in the result.
        fault_ticks: length of the fault phase.
        quiet_limit: ticks allowed to converge once healed and quiet (byzantine runs get
            one attempt period more for each type a leader may have queued for peers).
        byzantine: add forged messages to the faults and check liveness after them.
        live_limit: byzantine runs: ticks allowed to decide a fresh type after the
            attack; by default one attempt period for each type a leader may have
            queued for peers (``Limits.max_pending``), plus two.

    Returns:
        The run's violations and statistics.
    """
    rnd = random.Random(f"scenario/{seed}")
    static = rnd.random() < 0.3 and not byzantine
    faults = Faults(
        loss=rnd.choice([0.0, 0.05, 0.15]),
        duplicate=rnd.choice([0.0, 0.05, 0.1]),
        min_delay=1,
        max_delay=rnd.choice([1, 3, 6]),
    )
    members = list(range(1, nodes + 1))
    observers = [OBSERVER_BASE] if rnd.random() < 0.5 else []
    net = SimNetwork(
        members, seed=seed, observers=observers, faults=faults, static_views=static,
        make_config=lambda i, obs: sim_config(i, obs, faults.max_delay), trace=trace,
    )
    checker = Checker(net)
    pool = [f"app.Type{i}" for i in range(rnd.randint(3, 8))] + list(rnd.choice(_PAIRS))
    wanted: dict[int, set[str]] = {}
    next_id = nodes + 1
    adversary = Adversary(net, random.Random(f"byzantine/{seed}")) if byzantine else None
    retire_rnd = random.Random(f"retire/{seed}")
    for _ in range(fault_ticks):
        next_id = _fault_step(net, checker, rnd, pool, wanted, static, next_id)
        if retire_rnd.random() < 1 / 30:
            _retire_step(net, retire_rnd, wanted)
        if adversary is not None and adversary.rnd.random() < 0.5:
            adversary.act()
        net.tick()
        _republish(net, checker, wanted)
    cfg = sim_config(1, False, faults.max_delay)
    if adversary is not None:
        # The junk a leader queued for peers (at most max_pending types) is decided
        # one attempt period each before the map is quiet.
        quiet_limit += cfg.limits.max_pending * cfg.retry_ticks
    net.faults = Faults(min_delay=1, max_delay=faults.max_delay)
    net.heal()
    for node_id in sorted(net.down & (net.members | net.observers)):
        _restart(net, checker, node_id, wanted)
    converge = None
    for t in range(quiet_limit):
        if checker.converged(wanted):
            converge = t
            break
        net.tick()
        _republish(net, checker, wanted)
    if converge is None:
        checker.fail(f"convergence: not converged {quiet_limit} ticks after heal")
    else:
        checker.check_final(wanted)
    live = None
    if adversary is not None and converge is not None:
        limit = live_limit or (cfg.limits.max_pending + 2) * cfg.retry_ticks
        live = _check_live(net, checker, rnd, limit)
    dropped: dict[str, int] = {}
    for node in net.nodes.values():
        for reason, n in node.counters.items():
            dropped[reason] = dropped.get(reason, 0) + n
    return RunResult(
        seed=seed, nodes=nodes, static=static, violations=checker.violations,
        decisions=checker.decisions, messages=net.sent, converge_ticks=converge,
        trace=net.trace, byzantine=byzantine, live_ticks=live,
        forged=dict(adversary.sent) if adversary is not None else {}, dropped=dropped,
    )


def _check_live(net: SimNetwork, checker: Checker, rnd: random.Random, limit: int) -> int | None:
    # Agreement stays live after the attack: a type nobody asked for before is decided
    # at every running node within `limit` ticks.
    proposer = rnd.choice(net.live_members())
    net.propose(proposer, FRESH_TYPE)
    for t in range(limit):
        if all(FRESH_TYPE in net.nodes[i].groups for i in net.up()):
            return t
        net.tick()
    checker.fail(f"liveness after attack: {FRESH_TYPE} from node {proposer} not decided in {limit} ticks")
    return None


def _retire_step(net: SimNetwork, rnd: random.Random, wanted: dict[int, set[str]]) -> None:
    up = net.up()
    if not up:
        return
    node_id = rnd.choice(up)
    names = sorted(net.nodes[node_id].groups)
    if not names:
        return
    name = rnd.choice(names)
    for types in wanted.values():
        types.discard(name)  # its publishers stopped
    net.retire(node_id, name)


def _republish(net: SimNetwork, checker: Checker, wanted: dict[int, set[str]]) -> None:
    # As the runtime does: a node that still publishes a type it sees retired (a
    # forged or racing retire) asks for it again at once.
    retired, checker.retired = checker.retired, []
    for node_id, name in retired:
        if name in wanted.get(node_id, ()) and node_id not in net.down:
            net.propose(node_id, name)


def _fault_step(
    net: SimNetwork, checker: Checker, rnd: random.Random, pool: list[str],
    wanted: dict[int, set[str]], static: bool, next_id: int,
) -> int:
    up = net.up()
    if up and rnd.random() < 0.12:
        node_id = rnd.choice(up)
        name = rnd.choice(pool)
        wanted.setdefault(node_id, set()).add(name)
        net.propose(node_id, name)
    live = net.live_members()
    if len(live) > 1 and rnd.random() < 0.02:
        node_id = rnd.choice(live)
        checker.note_crash(node_id)
        net.crash(node_id, lose_outbox=rnd.random() < 0.5)
    crashed = sorted(net.down & (net.members | net.observers))
    if crashed and rnd.random() < 0.06:
        _restart(net, checker, rnd.choice(crashed), wanted)
    if rnd.random() < 0.025:
        everyone = sorted(net.members | net.observers)
        rnd.shuffle(everyone)
        cut = rnd.randint(1, len(everyone) - 1)
        net.partition(everyone[:cut], everyone[cut:])
    elif net.cuts and rnd.random() < 0.04:
        net.heal()
    if not static and rnd.random() < 0.01:
        net.join(next_id)
        next_id += 1
    if not static and len(live) > 2 and rnd.random() < 0.005:
        node_id = rnd.choice(live)
        wanted.pop(node_id, None)
        net.leave(node_id)
    return next_id


def _restart(net: SimNetwork, checker: Checker, node_id: int, wanted: dict[int, set[str]]) -> None:
    net.restart(node_id)
    checker.check_restart(node_id)
    # The application asks again for the types it publishes: proposals are volatile.
    for name in sorted(wanted.get(node_id, ())):
        net.propose(node_id, name)
