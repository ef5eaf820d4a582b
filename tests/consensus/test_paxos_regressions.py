"""Named regressions: the known weaknesses of the agreement protocol in the pyplexo seed.

Each test shows the weakness cannot happen here, and where it can, that the checks
would catch it if it came back (the test mutates the code and expects a violation).
"""

from __future__ import annotations

import random

import pytest
from paxos_helpers import Cluster, drain, make_node, messages

from consensus import proposer
from consensus.allocator import preferred_group
from consensus.journal import JournalRecord
from consensus.messages import Accept, Ballot, Nack, Prepare, Promise
from consensus.node import PaxosNode
from consensus.sim.network import SimNetwork
from consensus.sim.scenario import colliding_names, run_seed


def test_regression_tie_is_not_a_quorum() -> None:
    # pyplexo committed at approvals >= peers / 2: with 4 peers, 2 approvals "won".
    node = make_node(1, (1, 2, 3, 4))
    node.propose("a.B")
    prepare = next(m for m in messages(drain(node)) if isinstance(m, Prepare))
    node.step(Promise(sender=2, slot=0, ballot=prepare.ballot))  # self + 2 = 2 of 4: a tie
    assert not any(isinstance(m, Accept) for m in messages(drain(node)))
    node.step(Promise(sender=3, slot=0, ballot=prepare.ballot))  # 3 of 4: a majority
    assert any(isinstance(m, Accept) for m in messages(drain(node)))


def test_regression_tie_quorum_would_be_caught_by_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bring the bug back: the static-view simulator must report two values in one slot.
    monkeypatch.setattr(proposer, "quorum_size", lambda n: max(1, (n + 1) // 2))
    net = SimNetwork([1, 2, 3, 4], seed=7, static_views=True)
    from consensus.sim.invariants import Checker

    checker = Checker(net)
    net.partition([1, 2], [3, 4])
    net.propose(1, "a.Left")
    net.propose(3, "a.Right")
    for _ in range(60):
        net.tick()
    assert any("safety" in v for v in checker.violations)


def test_regression_static_views_keep_a_minority_from_deciding() -> None:
    net = SimNetwork([1, 2, 3, 4, 5], seed=1, static_views=True)
    net.partition([1, 2], [3, 4, 5])
    net.propose(1, "a.Minority")
    net.propose(3, "a.Majority")
    for _ in range(80):
        net.tick()
    assert "a.Minority" not in net.nodes[1].groups
    assert all("a.Majority" in net.nodes[i].groups for i in (3, 4, 5))


def test_regression_shrinking_views_let_both_sides_decide_then_converge() -> None:
    # pyplexo: the view shrinks during a partition, both halves commit, nothing reconciles.
    # Here both halves may decide (liveness), and on heal the fold merges them and the
    # side whose type moved gets an explicit Move decided.
    a, b = colliding_names(1)[0]
    net = SimNetwork([1, 2, 3, 4], seed=3)
    net.partition([1, 2], [3, 4])
    net.propose(1, a)
    net.propose(3, b)
    net.propose(3, a)
    for _ in range(40):
        net.tick()
    assert net.nodes[1].groups[a] == preferred_group(a)
    assert net.nodes[3].groups[b] == preferred_group(b) == preferred_group(a)
    net.heal()
    for _ in range(150):
        net.tick()
    maps = [dict(net.nodes[i].groups) for i in (1, 2, 3, 4)]
    assert all(m == maps[0] for m in maps)
    assert len(set(maps[0].values())) == 2
    moves = [v for _, v in net.nodes[1].entries() if v.startswith(b"move ")]
    assert moves, "the side that lost its group must get an explicit Move decision"


def test_regression_restarted_acceptor_keeps_its_promises() -> None:
    # pyplexo's acceptor kept promises in memory only: a reboot forgot them.
    journal: list[JournalRecord] = []
    node = make_node(2, (1, 2, 3))
    node.step(Prepare(sender=3, slot=0, ballot=Ballot(7, 3)))
    drain(node, journal)
    rebooted = PaxosNode(node.config, rng=random.Random(0), records=journal)
    rebooted.step(Prepare(sender=1, slot=0, ballot=Ballot(6, 1)))
    assert messages(drain(rebooted)) == [Nack(sender=2, slot=0, ballot=Ballot(6, 1), promised=Ballot(7, 3))]
    forgetful = PaxosNode(node.config, rng=random.Random(0), records=[])
    forgetful.step(Prepare(sender=1, slot=0, ballot=Ballot(6, 1)))
    assert isinstance(messages(drain(forgetful))[0], Promise)  # what the journal prevents


def test_regression_forgetful_restart_would_be_caught_by_the_simulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Bring the bug back: restart nodes without their journal; the checks must notice.
    from consensus.sim import network

    monkeypatch.setattr(network.SimNetwork, "_start", _start_forgetful)
    failed = [s for s in range(40) if not run_seed(s, nodes=3).ok]
    assert failed


def _start_forgetful(self: SimNetwork, node_id: int) -> None:
    self.journals.setdefault(node_id, [])
    cfg = self._make_config(node_id, node_id in self.observers)
    self.nodes[node_id] = PaxosNode(cfg, rng=random.Random(node_id), records=[])


def test_regression_two_types_with_one_preferred_address_concurrently() -> None:
    # pyplexo: two nodes picking the same free address at once both "won" it.
    a, b = colliding_names(1)[0]
    assert preferred_group(a) == preferred_group(b)
    c = Cluster((1, 2, 3), follow_leader=False)
    c.propose(1, a)
    c.propose(2, b)
    for _ in range(60):
        c.pump()
        c.tick(1)
    maps = [dict(n.groups) for n in c.nodes.values()]
    assert maps[0] == maps[1] == maps[2]
    assert set(maps[0]) == {a, b} and maps[0][a] != maps[0][b]


@pytest.mark.parametrize("seed", range(20))
def test_regression_colliding_types_in_random_runs(seed: int) -> None:
    result = run_seed(seed, nodes=4)
    assert result.ok, f"seed {seed}: {result.violations}"
