"""The newer reductions (lossless, crash+restart, inert fields, stale requests)
are sound: leaving any one of them out reaches exactly the same outcomes and the same
node states, and every request judged stale is a no-op when delivered."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from consensus.messages import Message
from consensus.sim import explore
from consensus.sim.explore import Outcome, Reductions
from consensus.sim.explore_faults import crash_restart
from consensus.sim.explore_key import durable_key
from consensus.sim.explore_reduce import is_dead, is_stale, node_key
from consensus.sim.explore_world import NODES, World, deliver, initial

# One proposer, two ballots, a loss and a crash: big enough for stale requests, crashes
# in every phase and decisions in both slots; small enough to search with any one
# reduction left out in seconds. Symmetry is off throughout so that node states can be
# compared as reached (it keeps one world per orbit, whichever comes first).
CONFIG: dict[str, Any] = {"max_ballots": 2, "loss": 1, "dup": 0, "crashes": 1, "proposers": 1}
BASE = replace(Reductions(), symmetry=False)
LEFT_OUT = ("stale", "lossless", "crash", "inert")
NodeStates = set[tuple[object, ...]]
Found = tuple[set[Outcome], NodeStates, explore.ExploreResult]


def _search(left_out: str | None) -> Found:
    reductions = BASE if left_out is None else replace(BASE, **{left_out: False})
    outcomes: set[Outcome] = set()
    states: NodeStates = set()

    def observe(world: World) -> None:
        # Worlds with a node down exist only without the crash reduction (it restarts at once).
        if all(node is not None for node in world.nodes.values()):
            states.add(tuple(
                (node_key(world.nodes[i], inert=True), durable_key(world.durable[i]))  # type: ignore[arg-type]
                for i in NODES
            ))

    result = explore.explore(**CONFIG, reductions=reductions, outcomes=outcomes, observe=observe)
    return outcomes, states, result


@pytest.fixture(scope="module")
def found() -> dict[str | None, Found]:
    jobs: list[str | None] = [None, *LEFT_OUT]
    with ProcessPoolExecutor(max_workers=2) as pool:
        return dict(zip(jobs, pool.map(_search, jobs), strict=True))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("left_out", LEFT_OUT)
def test_leaving_a_reduction_out_reaches_the_same_outcomes_and_node_states(
    found: dict[str | None, Found], left_out: str
) -> None:
    outcomes, states, result = found[None]
    more_outcomes, more_states, more = found[left_out]
    assert result.complete and more.complete
    assert not result.violations and not more.violations
    assert more_outcomes == outcomes and len(outcomes) > 10  # both slots get decided
    assert more_states == states and len(states) > 100
    assert more.states >= result.states
    if left_out in ("stale", "lossless", "crash"):
        assert more.states > 2 * result.states  # each one is worth having


def _no_op(world: World, src: int, dst: int, msg: Message) -> None:
    child, action = deliver(world, (src, dst, msg), keep=False)
    before, after = world.nodes[dst], child.nodes[dst]
    assert before is not None and after is not None
    assert after.state_key() == before.state_key(), msg.describe()
    assert durable_key(child.durable[dst]) == durable_key(world.durable[dst])
    for _src, d, reply in action.sent:  # whatever it answers is dead on arrival
        assert is_dead(child.nodes[d], child.durable[d], d, reply), reply.describe()


# One proposer with faults (a prefix of the search), and a whole duel.
STALE_CONFIGS: list[dict[str, Any]] = [
    {"max_ballots": 3, "loss": 0, "dup": 1, "crashes": 1, "proposers": 1, "state_limit": 3000},
    {"max_ballots": 2, "loss": 0, "dup": 0, "crashes": 0, "proposers": 2, "hold": False},
]


@pytest.mark.parametrize("config", STALE_CONFIGS, ids=["one-proposer", "duel"])
def test_stale_requests_are_no_ops_with_any_number_of_proposers(
    monkeypatch: pytest.MonkeyPatch, config: dict[str, Any]
) -> None:
    checked: list[str] = []
    real = explore._drop_dead

    def checking(world: World, proposing: frozenset[int] = frozenset(), *, dead: bool = True) -> None:
        for src, dst, msg in world.in_flight:
            if src in proposing and is_stale(
                world.nodes[dst], world.nodes[src], world.durable[src], msg, sole=len(proposing) == 1
            ):
                _no_op(world, src, dst, msg)
                checked.append(type(msg).__name__)
        real(world, proposing, dead=dead)

    monkeypatch.setattr(explore, "_drop_dead", checking)
    result = explore.explore(**config)
    assert not result.violations
    assert {"Prepare", "Accept"} <= set(checked)


def test_two_proposers_reach_the_same_outcomes_with_and_without_stale_requests() -> None:
    config: dict[str, Any] = {
        "max_ballots": 2, "loss": 0, "dup": 0, "crashes": 0, "proposers": 2, "hold": False,
    }
    with_rule: set[Outcome] = set()
    without: set[Outcome] = set()
    a = explore.explore(**config, outcomes=with_rule)
    b = explore.explore(**config, outcomes=without, reductions=replace(Reductions(), stale=False))
    assert a.complete and b.complete and not a.violations and not b.violations
    assert with_rule == without and a.states < b.states


def test_a_live_request_is_not_stale() -> None:
    world = initial({1: ("a.A",), 2: (), 3: ()}, 0, 0, 0)
    for src, dst, msg in world.in_flight:  # the first Prepare: nobody promised yet
        assert not is_stale(world.nodes[dst], world.nodes[src], world.durable[src], msg)


def test_crash_restart_of_an_idle_acceptor_is_skipped_and_of_a_proposer_is_not() -> None:
    world = initial({1: ("a.A",), 2: (), 3: ()}, 0, 0, 1)
    assert crash_restart(world, 2) is None  # its journal rebuilds exactly what it had
    up = crash_restart(world, 1)
    assert up is not None and up.crash == 0
    node = up.nodes[1]
    assert node is not None and node._attempt is not None
    old = world.nodes[1]
    assert old is not None and old._attempt is not None
    assert node._attempt.ballot > old._attempt.ballot  # a restart never reuses a ballot
    assert up.ballots == world.ballots + 1
