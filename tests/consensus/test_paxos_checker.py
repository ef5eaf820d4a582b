"""The simulator's invariant checker notices each kind of violation (tests that can fail)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from paxos_helpers import catch_up

from consensus.commands import Assign
from consensus.messages import Commit
from consensus.sim.invariants import Checker, _reaches
from consensus.sim.network import SimNetwork

G1, G2, G3 = (IPv4Address(f"239.255.9.{i}") for i in (1, 2, 3))


def _commit(slot: int, name: str, group: IPv4Address) -> Commit:
    # From member 3: a node learns a Commit only from a member of its view.
    return Commit(sender=3, slot=slot, value=Assign(type_name=name, group=group).encode())


def test_two_values_in_one_slot_are_a_safety_violation_with_static_views() -> None:
    net = SimNetwork([1, 2, 3], seed=0, static_views=True)
    checker = Checker(net)
    net.nodes[1].step(_commit(0, "a.A", G1))
    net.flush(1)
    net.nodes[2].step(_commit(0, "a.B", G2))
    net.flush(2)
    assert any("second value in slot 0" in v for v in checker.violations)
    assert any("unchosen" in v for v in checker.violations)


def test_a_type_changing_group_is_a_stability_violation_with_static_views() -> None:
    net = SimNetwork([1, 2, 3], seed=0, static_views=True)
    checker = Checker(net)
    net.nodes[1].step(_commit(5, "a.X", G1))
    net.flush(1)
    # Sorts earlier, so a.X is re-placed: only catch-up (a merge) may do that, not a Commit.
    catch_up(net.nodes[1], 3, ((2, Assign(type_name="a.Y", group=G1).encode()),))
    net.flush(1)
    assert any("stability" in v for v in checker.violations)


def test_a_restart_with_a_different_map_is_a_stability_violation() -> None:
    net = SimNetwork([1, 2, 3], seed=0)
    checker = Checker(net)
    net.propose(1, "a.A")
    for _ in range(10):
        net.tick()
    checker.note_crash(1)
    net.crash(1)
    net.journals[1].clear()  # the disk was lost
    net.restart(1)
    checker.check_restart(1)
    assert any("restarted with" in v for v in checker.violations)


def test_a_type_nobody_assigned_is_a_liveness_violation() -> None:
    net = SimNetwork([1], seed=0)
    checker = Checker(net)
    checker.check_final({1: {"a.Never"}})
    assert any("liveness" in v for v in checker.violations)


def test_differing_maps_at_the_end_are_an_agreement_violation() -> None:
    net = SimNetwork([1, 2], seed=0)
    net.partition([1], [2])
    checker = Checker(net)
    net.propose(1, "a.A")
    assert not checker.converged({})
    checker.check_final({})
    assert any("agreement" in v for v in checker.violations)


def test_a_held_group_without_a_move_chain_is_a_move_violation() -> None:
    net = SimNetwork([1], seed=0)
    checker = Checker(net)
    net.propose(1, "a.A")
    checker.held[(1, "a.A")].add(G3)  # pretend node 1 once had a.A elsewhere
    checker.check_final({})
    assert any(v.startswith("t=") and "move:" in v for v in checker.violations)


def test_move_chains_are_followed_transitively() -> None:
    edges = {G1: {G2}, G2: {G3}}
    assert _reaches(edges, G1, G3)
    assert not _reaches(edges, G3, G1)
    assert _reaches({}, G1, G1)


@pytest.mark.parametrize("seed", range(5))
def test_a_clean_run_reports_nothing(seed: int) -> None:
    net = SimNetwork([1, 2, 3], seed=seed)
    checker = Checker(net)
    for i in (1, 2, 3):
        net.propose(i, f"a.T{i}")
    for _ in range(80):
        net.tick()
    assert checker.converged({i: {f"a.T{i}"} for i in (1, 2, 3)})
    checker.check_final({i: {f"a.T{i}"} for i in (1, 2, 3)})
    assert checker.violations == [] and checker.decisions == 3
