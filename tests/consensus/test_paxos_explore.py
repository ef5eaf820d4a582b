"""The exhaustive search, CI-sized: every interleaving, safety in every state."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from consensus.messages import Prepare
from consensus.sim import explore

ROOT = Path(__file__).resolve().parents[2]

# Each configuration is searched completely (see docs/consensus.md for sizes): two
# concurrent proposers duelling over two ballots, and the issue's configuration: one
# proposer, three ballots, a duplication, a crash and any number of losses (the
# lossless reduction), about 35 s on one core.
CI_CONFIGS: list[dict[str, Any]] = [
    {"max_ballots": 2, "loss": 0, "dup": 0, "crashes": 0, "proposers": 2},
    dict(explore.ISSUE),
]


def _run(config: dict[str, Any]) -> explore.ExploreResult:
    return explore.explore(**config)


@pytest.mark.timeout(300)
def test_ci_sized_exhaustive_search_finds_no_violation() -> None:
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_run, CI_CONFIGS))
    for config, result in zip(CI_CONFIGS, results, strict=True):
        assert result.complete, f"{config}: state limit hit"
        assert not result.violations, f"{config}: {result.violations[:3]} via {result.example}"
        assert result.states > 1000 and result.decided_worlds > 0
    print("distinct states:", [r.states for r in results])


def test_past_the_ballot_bound_the_commit_still_reaches_other_nodes() -> None:
    # The Commit of slot 0 leaves in the same Ready as the Prepare of slot 1. Holding
    # that Prepare back (instead of ending the path) lets the Commit be delivered.
    config: dict[str, Any] = {"max_ballots": 1, "loss": 0, "dup": 0, "crashes": 0, "proposers": 1}
    held: set[explore.Outcome] = set()
    cut: set[explore.Outcome] = set()
    result = explore.explore(**config, outcomes=held)
    explore.explore(**config, outcomes=cut, hold=False)
    assert result.complete and not result.violations

    def others_learned(outcomes: set[explore.Outcome]) -> bool:
        return any(o[1] or o[2] for o in outcomes)

    assert others_learned(held) and not others_learned(cut)
    assert cut < held


def test_a_held_prepare_is_never_delivered() -> None:
    seen: list[int] = []

    def observe(world: explore.World) -> None:
        prepares = {m.ballot for _s, _d, m in world.in_flight if isinstance(m, Prepare)}
        assert len(prepares) <= 1  # one ballot in all, so the second one is never sent
        seen.append(world.ballots)

    explore.explore(max_ballots=1, loss=0, dup=0, crashes=0, proposers=1, observe=observe)
    # The second ballot's worlds are expanded; a third ballot ends the path.
    assert 2 in seen and max(seen) == 3


def test_a_tiny_search_is_complete_and_reaches_decisions() -> None:
    result = explore.explore(max_ballots=1, loss=0, dup=0, crashes=0, proposers=1)
    assert result.complete and not result.violations
    assert result.decided_worlds > 0 and result.states > 10


def test_the_search_finds_a_planted_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    # An acceptor that forgets to persist its promise is caught by the durable check.
    from consensus import acceptor

    real = acceptor.Acceptor.on_prepare

    def forgetful(self: acceptor.Acceptor, msg: object) -> object:
        reply, _record = real(self, msg)  # type: ignore[arg-type]
        return reply, None

    monkeypatch.setattr(acceptor.Acceptor, "on_prepare", forgetful)
    result = explore.explore(max_ballots=1, loss=0, dup=0, crashes=0, proposers=1)
    assert any("before persisting" in v for v in result.violations)
    assert result.example  # the path that leads there


def test_the_search_stops_at_the_state_limit() -> None:
    result = explore.explore(max_ballots=2, loss=0, dup=0, crashes=0, state_limit=50)
    assert not result.complete and result.states == 50


def test_explore_cli_reports_distinct_states() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "consensus.sim.explore", "--ballots", "1", "--loss", "0", "--dup", "0",
         "--crashes", "0", "--proposers", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "distinct states:" in proc.stdout and "violations: 0" in proc.stdout


def test_explore_cli_issue_flag_selects_the_issue_configuration() -> None:
    # The full --issue search takes minutes (docs/consensus.md); here only its first states.
    proc = subprocess.run(
        [sys.executable, "-m", "consensus.sim.explore", "--issue", "--limit", "300", "--no-sleep"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the limit stops it: incomplete
    assert "ballots<=3, loss<=any number (lossless), dup<=1, crashes<=1, proposers=1" in proc.stdout
    assert "sleep=False" in proc.stdout and "INCOMPLETE" in proc.stdout


def test_bench_runs_in_quick_mode() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/agreement.py", "--quick"], cwd=ROOT, capture_output=True,
        text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "decisions/s" in proc.stdout and "rounds to decide" in proc.stdout
