"""bench/cold_path.py runs, times every stage warm and cold, and adds them up.

No speed is asserted: only that each stage ran (a positive median) and the
summary line is there. Its sockets are on 127.0.0.1 only.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ganglion.runtime._accel import speedups

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "cold_path.py"


@pytest.mark.timeout(60)
def test_cold_path_reports_every_stage_warm_and_cold() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--runs", "15", "--gap", "0.0005"],
                          capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^ *(\S.*?)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+\d+\.\dx$", done.stdout, re.M)
    names = [name.strip() for name, _warm, _cold in rows]
    compiled = ["ganglion: compiled drain (read + lane)"] if speedups is not None else []
    assert names == ["raw: sendto 64 B", "raw: recv_into + unpack",
                     "ganglion: publish (idle, sendto included)",
                     "ganglion: recvmsg + receive path", *compiled, "of which: header unpack",
                     "of which: payload decode"]
    assert all(float(warm) > 0 and float(cold) > 0 for _name, warm, cold in rows)
    assert "ganglion adds" in done.stdout
    assert "dropped a datagram" not in done.stderr
