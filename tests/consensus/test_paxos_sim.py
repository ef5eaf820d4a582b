"""The deterministic simulator: CI's 1,000 seeds, determinism, faults and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from consensus.allocator import preferred_group
from consensus.sim import __main__ as cli
from consensus.sim import scenario
from consensus.sim.invariants import Checker
from consensus.sim.network import Faults, SimNetwork
from consensus.sim.scenario import replay_command, run_seed

ROOT = Path(__file__).resolve().parents[2]
CI_SEEDS = 1000


@pytest.mark.timeout(300)  # ~15 s on a quiet 2-core machine; leave room for a loaded one
def test_ci_runs_a_thousand_seeds_without_a_violation() -> None:
    failed = []
    decisions = 0
    for seed in range(CI_SEEDS):
        result = run_seed(seed, nodes=5)
        decisions += result.decisions
        if not result.ok:
            failed.append(f"{replay_command(seed, 5)}: {result.violations[:3]}")
    assert not failed, "\n".join(failed[:10])
    assert decisions > CI_SEEDS  # the seeds really decide things


def test_a_seed_replays_exactly() -> None:
    first = run_seed(1234, nodes=4, trace=True)
    second = run_seed(1234, nodes=4, trace=True)
    assert [t.format() for t in first.trace] == [t.format() for t in second.trace]
    assert first.trace and first.messages == second.messages


def test_different_seeds_give_different_runs() -> None:
    runs = {tuple(t.format() for t in run_seed(s, nodes=3, trace=True).trace[:50]) for s in range(5)}
    assert len(runs) == 5


def test_scenarios_cover_both_view_families_and_observers() -> None:
    results = [run_seed(s, nodes=3) for s in range(60)]
    assert {r.static for r in results} == {True, False}
    assert all(r.converge_ticks is not None for r in results)


def test_loss_drops_and_duplication_copies_messages() -> None:
    net = SimNetwork([1, 2, 3], seed=5, faults=Faults(loss=1.0))
    net.propose(1, "a.B")
    assert [line.what for line in net.trace[1:]] == ["lost", "lost"] and not net.in_flight
    net = SimNetwork([1, 2, 3], seed=5, faults=Faults(duplicate=1.0))
    net.propose(1, "a.B")
    assert len(net.in_flight) == 4  # one Prepare to each of two peers, twice


def test_random_delays_reorder_messages() -> None:
    net = SimNetwork([1, 2, 3, 4, 5], seed=2, faults=Faults(min_delay=1, max_delay=9))
    for i in range(1, 6):
        net.propose(i, f"a.T{i}")
    for _ in range(5):
        net.tick()
    delivered = [line for line in net.trace if line.what == "deliver"]
    sent_order = sorted(delivered, key=lambda line: line.tick)
    assert delivered == sent_order and len({line.tick for line in delivered}) > 1


def test_a_partitioned_message_is_not_delivered() -> None:
    net = SimNetwork([1, 2, 3], seed=1)
    net.partition([1], [2, 3])
    net.propose(2, "a.B")
    for _ in range(20):
        net.tick()
    assert "a.B" not in net.nodes[1].groups and "a.B" in net.nodes[2].groups
    assert any(line.what == "cut" for line in net.trace)


def test_crash_after_persist_before_send_loses_the_outbox_but_not_the_journal() -> None:
    net = SimNetwork([1, 2, 3], seed=1)
    node = net.nodes[2]
    from consensus.messages import Ballot, Prepare

    node.step(Prepare(sender=1, slot=0, ballot=Ballot(3, 1)))
    net.crash(2, lose_outbox=True)
    assert not net.in_flight
    net.restart(2)
    assert net.nodes[2].acceptor.promised(0) == Ballot(3, 1)


def test_the_checker_flags_a_broken_invariant(monkeypatch: pytest.MonkeyPatch) -> None:
    # A map that gives two types one group must be reported at the step that did it.
    from consensus import groupmap

    monkeypatch.setattr(groupmap, "allocate", lambda name, taken: next(iter(taken)))
    monkeypatch.setattr(groupmap.GroupMap, "choose", lambda self, name: preferred_group(name))
    a, b = scenario.colliding_names(1)[0]
    net = SimNetwork([1], seed=0)
    checker = Checker(net)
    net.propose(1, a)
    net.propose(1, b)
    assert any("uniqueness" in v for v in checker.violations)


def test_cli_prints_the_statistics() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "consensus.sim", "--seeds", "20", "--start", "100", "--nodes", "3", "--jobs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for label in ("seeds run:", "violations:", "decisions:", "messages per decision:", "p50=", "p99="):
        assert label in proc.stdout
    assert "20 (100..119)" in proc.stdout


def test_cli_reports_a_failing_seed_with_its_replay_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = scenario.run_seed

    def broken(seed: int, nodes: int = 5, **kw: object) -> scenario.RunResult:
        result = real(seed, nodes, **kw)  # type: ignore[arg-type]
        if seed == 3:
            result.violations.append("t=1: planted violation")
        return result

    monkeypatch.setattr(cli, "run_seed", broken)
    status = cli.main(["--seeds", "5", "--nodes", "3", "--jobs", "1"])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAILED seed 3" in out and replay_command(3, 3) in out
    assert "deliver" in out  # the trace, one message per line


def test_percentile_uses_nearest_rank() -> None:
    assert cli.percentile([], 50) == 0
    assert cli.percentile(list(range(1, 101)), 50) == 50
    assert cli.percentile(list(range(1, 101)), 99) == 99
