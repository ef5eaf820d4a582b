"""bench/latency_split.py runs every publisher/subscriber pairing and splits the latency.

No speed is asserted: only that every pairing delivered and reported a p50, and
that the differences are printed. Multicast goes through 127.0.0.1 only
(``--no-netns``: the test suite already runs in its own namespace where it can).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "latency_split.py"

pytestmark = pytest.mark.usefixtures("multicast_loopback")


@pytest.mark.timeout(120)
def test_latency_split_reports_every_pairing_and_the_differences() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--no-netns", "--trials", "1",
                           "--count", "40", "--rate", "400"],
                          capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = re.findall(r"^ *(raw|ganglion) -> (raw|loop|ganglion)\s+(\d+\.\d)$", done.stdout, re.M)
    assert sorted((pub, sub) for pub, sub, _p50 in rows) == [
        ("ganglion", "ganglion"), ("ganglion", "raw"), ("raw", "ganglion"), ("raw", "loop"),
        ("raw", "raw")]
    assert all(float(p50) > 0 for _pub, _sub, p50 in rows)
    for label in ("event loop wake-up", "ganglion receive path", "ganglion publish path",
                  "end to end, ganglion / raw"):
        assert label in done.stdout
