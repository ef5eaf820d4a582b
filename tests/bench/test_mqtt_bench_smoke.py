"""Smoke test of the MQTT bridge benchmark (bench/mqtt.py): it runs, its numbers are sane.

One quick run against a real Mosquitto (the benchmark starts its own on a free port
and ends it by PID); no speed is asserted, only that every reading arrived on both
paths and the report holds the same-run ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "mqtt"))

from broker_support import missing_tools  # noqa: E402


def test_the_quick_mqtt_benchmark_runs_and_reports_ratios(tmp_path: Path) -> None:
    problem = missing_tools()
    if problem is not None:
        pytest.skip(problem)
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "mqtt.py"), "--quick",
                           "--count", "500", "--latency-count", "50", "--json", str(out)],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert {(t["system"], t["qos"]) for t in doc["trials"]} == \
        {("plain", 0), ("bridge", 0), ("plain", 1), ("bridge", 1)}
    assert all(t["received"] == t["sent"] for t in doc["trials"]), doc["trials"]
    for qos in ("qos0", "qos1"):
        assert doc["summary"][qos]["ratio"] > 0 and doc["summary"][qos]["bridge"]["p50_ms"] >= 0
    assert "bridge / plain" in proc.stdout
