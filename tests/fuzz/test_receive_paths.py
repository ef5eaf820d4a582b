"""Fuzz a real node's three receive paths; it must survive and still agree and deliver.

Each test starts two in-process nodes on 127.0.0.1 (the target and a witness), sends
the inputs of issue 21's findings and then seeded structure-aware mutations to one
receive path for ``GANGLION_FUZZ_SECONDS`` (default 2.5 s), and asserts that no
exception escaped, the event loop never stalled over 100 ms, RSS grew less than
100 MB, the log stayed bounded, and that afterwards the target agreed a new type with
the witness and received its messages (docs/fuzzing.md). The seed is printed and is
part of every failure message; ``GANGLION_FUZZ_SEED`` replays it. With ``CI=true``
nothing skips: a missing compiled path or broken loopback multicast fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .drive import DEFAULT_SECONDS, ENV_SECONDS, RUN_GRACE, Settings, multicast_problem
from .supervise import KILL_GRACE, Verdict, run_isolated

SECONDS = float(os.environ.get(ENV_SECONDS, DEFAULT_SECONDS))
IN_CI = os.environ.get("CI") == "true"
#: The child process is killed before this (a frozen node is reported, not waited for).
pytestmark = pytest.mark.timeout(SECONDS + RUN_GRACE + KILL_GRACE + 30)


def _cannot(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def loopback_multicast() -> None:
    """Skip (fail under CI) unless multicast over 127.0.0.1 works here."""
    problem = multicast_problem()
    if problem is not None:
        _cannot(problem)


@pytest.fixture(params=["require", "off"], ids=["compiled", "python"])
def speedups(request: pytest.FixtureRequest) -> Iterator[str]:
    """``GANGLION_SPEEDUPS`` for the run: the compiled receive path, then pure Python."""
    from ganglion.runtime._accel import speedups as built

    if request.param == "require" and built is None:
        _cannot("ganglion._speedups is not built")
    yield str(request.param)


def fuzz(path: str, tmp_path: Path, speedups: str | None = None) -> Verdict:
    """Run one path (in a child process) with the environment's settings; print the
    report, whose first line has the seed."""
    settings = Settings.from_env(path)
    print(f"fuzzing {path} for {settings.seconds:g} s with seed {settings.seed} "
          f"(GANGLION_FUZZ_SEED={settings.seed} replays it)", flush=True)
    verdict = run_isolated(settings, tmp_path, speedups=speedups)
    print(verdict.report, flush=True)
    return verdict


@pytest.mark.usefixtures("loopback_multicast")
def test_data_groups_survive_fuzzing(tmp_path: Path, speedups: str) -> None:
    verdict = fuzz("data", tmp_path, speedups)
    assert verdict.ok, verdict.report


@pytest.mark.usefixtures("loopback_multicast")
def test_control_group_survives_fuzzing(tmp_path: Path) -> None:
    verdict = fuzz("control", tmp_path)
    assert verdict.ok, verdict.report


@pytest.mark.usefixtures("loopback_multicast")
def test_plugin_bus_survives_fuzzing(tmp_path: Path) -> None:
    verdict = fuzz("bus", tmp_path)
    assert verdict.ok, verdict.report
