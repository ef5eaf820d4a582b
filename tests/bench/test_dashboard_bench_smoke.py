"""bench/dashboard.py runs end to end at a tiny size and reports sane numbers (no speed asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dashboard.py"


def test_the_dashboard_bench_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    env = dict(os.environ, GANGLION_BENCH_NS="1")  # already isolated (make test's namespace)
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--rate", "300",
                           "--duration", "1", "--clients", "2", "--sensors", "5",
                           "--days", "0.01", "--series", "3", "--json", str(out)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    fan = result["fanout"]
    assert fan["baseline"]["server"]["received_per_s"] > 0
    assert len(fan["dashboard"]["clients"]) == 2 and min(fan["dashboard"]["clients"]) > 0
    assert 0 < fan["dashboard"]["server"]["cpu_share"] < 2.5
    hist = result["history"]
    assert hist["rows"] == 864 * 3 and hist["query_median_s"] > 0 and hist["plain_select_s"] > 0
    assert "target < 1 s" in done.stdout and "fan-out:" in done.stdout
