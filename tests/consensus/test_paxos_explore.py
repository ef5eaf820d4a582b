"""The exhaustive search, CI-sized: every interleaving, safety in every state."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from consensus.sim import explore

ROOT = Path(__file__).resolve().parents[2]

# Each configuration is searched completely (see docs/consensus.md for sizes): two
# concurrent proposers duelling over two ballots, and one proposer over two ballots
# under a duplication and a crash (and any number of losses: the lossless reduction).
CI_CONFIGS: list[dict[str, Any]] = [
    {"max_ballots": 2, "loss": 0, "dup": 0, "crashes": 0, "proposers": 2},
    {"max_ballots": 2, "loss": 1, "dup": 1, "crashes": 1, "proposers": 1},
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
    assert "ballots<=3, loss<=any number (lossless), dup<=1, crashes<=1" in proc.stdout
    assert "sleep=False" in proc.stdout and "INCOMPLETE" in proc.stdout


def test_bench_runs_in_quick_mode() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/agreement.py", "--quick"], cwd=ROOT, capture_output=True,
        text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "decisions/s" in proc.stdout and "rounds to decide" in proc.stdout
