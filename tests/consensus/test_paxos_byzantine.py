"""The byzantine-input fault kind: forged messages with extreme fields in the simulator.

The invariants (uniqueness, stability across restarts, agreement and move linkage at
convergence) must hold with an adversary forging messages, and agreement must stay
live: a type proposed after the attack is decided everywhere within a bounded time.
"""

from __future__ import annotations

import contextlib
import io
import random

import pytest

from consensus import node as node_module
from consensus.errors import ConsensusError
from consensus.messages import Ballot
from consensus.sim import __main__ as cli
from consensus.sim.byzantine import KINDS, Adversary
from consensus.sim.network import SimNetwork
from consensus.sim.scenario import FRESH_TYPE, replay_command, run_seed

SEEDS = range(24)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", SEEDS)
def test_byzantine_seed_keeps_every_invariant_and_stays_live(seed: int) -> None:
    result = run_seed(seed, nodes=5, byzantine=True)
    assert result.ok, f"{replay_command(seed, 5, byzantine=True)}: {result.violations[:3]}"
    assert result.live_ticks is not None and not result.static
    assert sum(result.forged.values()) > 10 and result.dropped  # it really attacked


def test_the_seeds_cover_every_kind_and_refusal() -> None:
    forged: set[str] = set()
    dropped: set[str] = set()
    for seed in range(12):
        result = run_seed(seed, nodes=4, byzantine=True)
        forged |= set(result.forged)
        dropped |= set(result.dropped)
    assert forged == set(KINDS)
    assert {
        "implausible_round", "implausible_slot", "commit_stranger", "commit_conflict",
        "catchup_unsolicited", "catchup_rate_limited", "propose_rate_limited",
        "propose_queue_full", "forged_self",
    } <= dropped


def test_a_byzantine_seed_replays_exactly() -> None:
    first = run_seed(7, nodes=4, trace=True, byzantine=True)
    second = run_seed(7, nodes=4, trace=True, byzantine=True)
    assert [t.format() for t in first.trace] == [t.format() for t in second.trace]
    assert any(t.what == "forge" for t in first.trace)


def test_the_adversary_sends_the_findings_values() -> None:
    net = SimNetwork([1, 2, 3], seed=0)
    adversary = Adversary(net, random.Random(0))
    for _ in range(60):
        adversary.act("prepare")
    rounds = {line.msg.ballot.round for line in net.trace if line.what == "forge"}  # type: ignore[union-attr]
    assert 2**63 - 1 in rounds
    net.stabilize()
    assert all(n.counters["implausible_round"] for n in net.nodes.values())


def test_the_byzantine_sim_catches_the_old_round_adoption(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bring finding 2 back (adopt any round): the forged 2**63-1 must break a run.
    def adopt_any(self: node_module.PaxosNode, ballot: Ballot) -> bool:
        self._max_round = max(self._max_round, ballot.round)
        return True

    monkeypatch.setattr(node_module.PaxosNode, "_note_round", adopt_any)
    broken = 0
    for seed in range(6):
        try:
            result = run_seed(seed, nodes=3, byzantine=True)
        except ConsensusError:
            broken += 1
        else:
            broken += not result.ok
    assert broken >= 3


def test_cli_byzantine_prints_liveness_and_drops() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main(["--seeds", "3", "--nodes", "3", "--jobs", "1", "--byzantine"])
    text = out.getvalue()
    assert status == 0, text
    assert "ticks to decide after:" in text and "implausible_round=" in text
    assert FRESH_TYPE.startswith("fresh.")
