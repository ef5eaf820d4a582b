"""bench/repair.py runs its whole harness at tiny sizes and prints every figure.

One real run (namespaces, loss rules, sensor and receiver processes) with two
levels (0 and 20 %) and one of shared loss (20 %), one sensor, two receivers, 2 s each: the figures must be
sane (a share between 0 and 1, datagrams dropped at 20 % and none at 0 %), not
fast; and the report's arithmetic is tested on made-up outcomes. Skipped, naming
what is missing, where namespaces or the loss tools are unavailable (a failure
under CI=true).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "repair.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_repair", SCRIPT)
    assert spec is not None and spec.loader is not None
    saved = list(sys.path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        sys.path[:] = saved


def test_the_report_divides_extra_control_traffic_by_lost_datagrams(bench: ModuleType) -> None:
    baseline = bench.Outcome(0.0, False, 10.0, control_sent=200)  # 20/s over 10 s (no tail)
    lossy = bench.Outcome(10.0, True, 10.0, published=1000, held_min=1.0, held_mean=1.0,
                          lost_datagrams=100, control_sent=320,
                          added_latency_ms=[float(x) for x in range(1, 101)])
    lines = bench.report(baseline, [lossy], tail=0.0)
    row = next(line for line in lines if line.startswith("  10 %"))
    assert "100.00 %" in row and "1.20" in row  # (320 - 200) / 100
    assert "50.0/99.0" in row or "51.0/99.0" in row
    assert lines[-1].endswith("all met")
    worse = bench.Outcome(10.0, True, 10.0, published=1000, held_min=0.9, held_mean=0.95,
                          lost_datagrams=100, control_sent=400)
    assert bench.report(baseline, [worse], tail=0.0)[-1].endswith("2 missed")


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_bench_repair_runs_end_to_end_at_tiny_sizes(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tests" / "node"))
    try:
        from node_support import netns_problem
        from packet_loss import loss_problem
    finally:
        sys.path.pop(0)
    problem = netns_problem() or loss_problem()
    if problem is not None:
        pytest.skip(problem)
    out = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--seconds", "2", "--tail", "1",
                           "--levels", "0,20", "--shared", "20", "--sensors", "1", "--receivers",
                           "2", "--rate", "20", "--json", str(out)], capture_output=True, text=True,
                          timeout=220, check=False, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "targets:" in done.stdout and "baseline" in done.stdout
    figures = json.loads(out.read_text())
    zero, lossy, shared = figures["runs"]
    assert figures["baseline"]["control_sent"] > 0  # heartbeats
    assert zero["lost_datagrams"] == 0 and lossy["lost_datagrams"] > 0
    # shared loss: each datagram lost at the bridge counts once per receiver (2 here)
    assert shared["shared"] and shared["lost_datagrams"] > 0
    assert shared["lost_datagrams"] % 2 == 0
    for run in (zero, lossy, shared):
        assert run["published"] >= 20  # 2 s at 20/s, within the window
        assert 0.0 <= run["held_min"] <= run["held_mean"] <= 1.0
    assert zero["held_min"] == 1.0
