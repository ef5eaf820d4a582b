"""bench/payload_routes.py runs every payload route on each shape and checks each
gives the same messages and bytes before timing it (its own asserts). No speed is
asserted: only that every route ran and was reported with a ratio."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ganglion.runtime._accel import speedups

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "payload_routes.py"


@pytest.mark.timeout(120)
def test_every_route_is_timed_against_the_generic_one_in_the_same_run() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True,
                          text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^  (decode|encode) (.+?)\s+(\d+) ns\s+(\d+\.\d+)x generic", done.stdout,
                      re.M)
    compiled = ["compiled plan"] if speedups is not None else []
    decoders = ["generic (cbor2)", "generated", "templates", *compiled]
    encoders = ["generic (cbor2)", "generated", *compiled]
    per_shape = [("decode", d) for d in decoders] + [("encode", e) for e in encoders]
    assert [(what, name) for what, name, _ns, _ratio in rows] == \
        per_shape * 3 + [("decode", d) for d in decoders]
    assert all(int(ns) > 0 for _what, _name, ns, _ratio in rows)
    assert [ratio for what, name, _ns, ratio in rows if name == "generic (cbor2)"] == \
        ["1.00"] * 7
