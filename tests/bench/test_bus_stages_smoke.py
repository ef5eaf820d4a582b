"""bench/bus_stages.py traces plugin -> node -> node -> plugin stage by stage.

No speed is asserted: only that every probe in the two ``ganglion node`` processes
fired for the measured messages (a probe that no longer sits on the path, e.g. after a
refactor, shows up as a stage without readings), that the table has every stage, and
that the same run's floors (a bare zmq hop, a bare UDP hop) are printed beside the
end-to-end figure. Multicast goes through 127.0.0.1 only (``--no-netns``: the test
suite already runs in its own namespace where it can).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bus_stages.py"
STAGES = ("a_wake", "a_route", "a_sendto", "b_wake", "b_deliver", "b_sent", "s_wake",
          "s_recv")
COUNT = 60

pytestmark = pytest.mark.usefixtures("multicast_loopback")


@pytest.mark.timeout(180)
def test_bus_stages_traces_every_stage_and_prints_the_floors() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--no-netns", "--trials", "1",
                           "--count", str(COUNT), "--rate", "400"],
                          capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    traced = re.search(r"^(\d+) messages traced through every stage \((\d+) received\)",
                       done.stdout, re.M)
    assert traced is not None, done.stdout
    # a few may lack a reading (a heartbeat in between); most must have them all
    assert int(traced.group(2)) == COUNT and int(traced.group(1)) >= COUNT * 3 // 4
    rows = dict(re.findall(r"^(\w+) +-?\d+\.\d +(-?\d+\.\d)$", done.stdout, re.M))
    assert sorted(rows) == sorted(STAGES), done.stdout
    assert float(rows["s_recv"]) > 0
    assert re.search(r"bare zmq ipc hop \d+\.\d us .*bare UDP hop \d+\.\d us", done.stdout)
    readings = re.search(r"probe readings per trial: (.*)$", done.stdout, re.M)
    assert readings is not None
    counts = dict(re.findall(r"(\w+) (\d+)", readings.group(1)))
    # warm-up messages pass the same probes: at least one reading per measured message
    assert all(int(counts[stage]) >= COUNT for stage in STAGES[:6]), counts
