"""bench/forward.py runs end to end on a small log and reports sane numbers (no speed is
asserted here: targets live in the benchmark, DESIGN.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pg_support import missing

BENCH = Path(__file__).resolve().parents[2] / "bench" / "forward.py"


def test_the_forward_benchmark_runs(tmp_path: Path) -> None:
    why = missing()
    if why is not None:
        pytest.skip(why)
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(BENCH), "--rows", "20000", "--batch", "5000",
                           "--outage", "3", "--rate", "500", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["copy_rows_per_s"] > 0 and result["executemany_rows_per_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["copy_rows_per_s"] / result["executemany_rows_per_s"])
    assert len(result["ratio_per_run"]) == 1
    # CPU per row: this process and the server's (a COPY row costs some us, not ns or ms)
    assert 0.5 < result["copy_cpu_us_per_row"] < 1000
    assert 0.5 < result["executemany_cpu_us_per_row"] < 1000
    assert result["cpu_ratio"] == pytest.approx(
        result["executemany_cpu_us_per_row"] / result["copy_cpu_us_per_row"])
    assert result["catch_up"]["backlog"] == 1500
    assert 0 < result["catch_up"]["seconds"] < 120
    assert "COPY" in done.stdout and "executemany" in done.stdout and "catch-up" in done.stdout
    assert "CPU ratio" in done.stdout and "load average" in done.stdout
