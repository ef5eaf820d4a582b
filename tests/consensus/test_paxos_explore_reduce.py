"""The explorer's reductions are sound: they change how many states are visited, never
which safety-relevant outcomes (the entries each node has learned) are reachable."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from consensus.messages import Ballot, Commit, Nack, Prepare, Promise
from consensus.sim import explore
from consensus.sim.explore import Outcome, Reductions
from consensus.sim.explore_reduce import is_dead, symmetries

NODES = (1, 2, 3)

# Small enough to search without any reduction in seconds, large enough to decide, duel
# (two proposers) and exercise every fault (one proposer).
DUEL: dict[str, Any] = {"max_ballots": 2, "loss": 0, "dup": 0, "crashes": 0, "proposers": 2}
FAULTS: dict[str, Any] = {"max_ballots": 1, "loss": 1, "dup": 1, "crashes": 1, "proposers": 1}
ONLY = {"none": Reductions.none(), "all": Reductions()}
ONLY.update({name: Reductions.only(name) for name in explore.REDUCTION_NAMES})
# With two proposers symmetry is the identity and compact keys change no count, so the
# (slow) unreduced duel is compared with the reductions that change it.
JOBS = [("duel", "none"), ("duel", "dead"), ("duel", "all")] + [("faults", name) for name in ONLY]
Job = tuple[str, str]
Found = tuple[set[Outcome], explore.ExploreResult]


def _search(job: Job) -> Found:
    config = DUEL if job[0] == "duel" else FAULTS
    outcomes: set[Outcome] = set()
    # Without holding Prepares past the bound: the unreduced duel stays a few seconds.
    result = explore.explore(**config, reductions=ONLY[job[1]], outcomes=outcomes, hold=False)
    return outcomes, result


@pytest.fixture(scope="module")
def found() -> dict[Job, Found]:
    # The unreduced duel alone takes ~20 s: run it beside everything else on two cores.
    with ProcessPoolExecutor(max_workers=2) as pool:
        return dict(zip(JOBS, pool.map(_search, JOBS), strict=True))


def _closed(outcomes: set[Outcome], wants: dict[int, tuple[str, ...]]) -> set[Outcome]:
    # Symmetry keeps one world per orbit: close the set under the configuration's symmetries.
    closed = set()
    for perm in symmetries(NODES, wants):
        inverse = {v: k for k, v in perm.items()}
        for outcome in outcomes:
            by_node = dict(zip(NODES, outcome, strict=True))
            closed.add(tuple(by_node[inverse[j]] for j in NODES))
    return closed


@pytest.mark.timeout(180)
@pytest.mark.parametrize("job", [job for job in JOBS if job[1] != "none"], ids="-".join)
def test_each_reduction_keeps_the_reachable_outcomes(found: dict[Job, Found], job: Job) -> None:
    expected, plain = found[(job[0], "none")]
    outcomes, result = found[job]
    assert plain.complete and result.complete
    assert not plain.violations and not result.violations, result.violations[:3]
    wants = {1: ("a",), 2: ("b",), 3: ()} if job[0] == "duel" else {1: ("a", "b"), 2: (), 3: ()}
    assert _closed(outcomes, wants) == expected
    assert len(expected) >= (4 if job[0] == "duel" else 2)  # someone decides
    if job[1] == "compact":
        assert result.states == plain.states  # no two distinct keys collided
    elif job[1] == "stale":
        # One ballot leaves few stale requests; test_paxos_explore_faults measures it.
        assert result.states <= plain.states
    elif job[1] == "sleep":
        # Sleep sets save transitions, never states (Godefroid 1996, theorem 5.?).
        assert result.states == plain.states and result.transitions < plain.transitions
    else:
        assert result.states < plain.states


def test_only_idle_acceptors_are_symmetric() -> None:
    assert symmetries(NODES, {1: ("a", "b"), 2: (), 3: ()}) == [{1: 1, 2: 2, 3: 3}, {1: 1, 2: 3, 3: 2}]
    # Two proposers own ballots (and want different types): nothing may be swapped.
    assert symmetries(NODES, {1: ("a",), 2: ("b",), 3: ()}) == [{1: 1, 2: 2, 3: 3}]


def test_a_swap_that_moves_a_ballot_owner_is_refused() -> None:
    world = explore._initial({1: (), 2: ("t.x",), 3: ()}, 0, 0, 0)
    swap = {1: 1, 2: 3, 3: 2}
    with pytest.raises(RuntimeError, match="symmetry broken"):
        explore._canonical(world, [None, swap], compact=True)


def test_dead_messages_are_no_ops_when_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    # Empirical check of the argument in explore_reduce: every message the search drops as
    # dead leaves its receiver's state unchanged and makes it send nothing.
    checked = []
    real = explore._drop_dead

    def checking(world: explore._World, *args: Any, **kwargs: Any) -> None:
        for _src, dst, msg in world.in_flight:
            node = world.nodes[dst]
            if is_dead(node, world.durable[dst], dst, msg):
                copy = explore._copy_node(node)
                assert copy is not None and node is not None
                copy.step(msg)
                assert copy.state_key() == node.state_key() and not copy.has_ready(), msg.describe()
                checked.append(type(msg).__name__)
        real(world, *args, **kwargs)

    monkeypatch.setattr(explore, "_drop_dead", checking)
    result = explore.explore(max_ballots=2, loss=0, dup=0, crashes=0, proposers=2, state_limit=1500)
    assert not result.violations
    assert {"Promise", "Commit"} <= set(checked)


def test_live_replies_are_not_dead() -> None:
    world = explore._initial({1: ("t.x",), 2: (), 3: ()}, 0, 0, 0)
    node = world.nodes[1]
    assert node is not None and node._attempt is not None
    a = node._attempt
    durable = world.durable[1]
    current = Promise(sender=2, slot=a.slot, ballot=a.ballot, accepted_ballot=None, accepted_value=None)
    assert not is_dead(node, durable, 1, current)
    later = Ballot(a.ballot.round + 5, 1)  # a round this node has not used yet
    assert not is_dead(node, durable, 1, Nack(sender=2, slot=a.slot, ballot=later, promised=later))
    # A Nack that raises the round seen beyond the durable round changes the node.
    high = Ballot(a.ballot.round + 5, 3)
    stale = Ballot(0, 1)
    assert not is_dead(node, durable, 1, Nack(sender=2, slot=a.slot, ballot=stale, promised=high))
    assert is_dead(node, durable, 1, Nack(sender=2, slot=a.slot, ballot=stale, promised=stale))
    assert not is_dead(node, durable, 1, Commit(sender=2, slot=a.slot, value=b"assign t.x 239.255.1.1"))
    assert not is_dead(node, durable, 2, Prepare(sender=1, slot=a.slot, ballot=a.ballot))
