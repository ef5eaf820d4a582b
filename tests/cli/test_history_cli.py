"""``ganglion node --history-age/--history-bytes``: what a real node process keeps.

Two nodes run as ``python -m ganglion node`` on loopback, each publishing a simulated
temperature: one with ``--history-age 0`` (keeps nothing) and one with
``--history-bytes 4000`` (keeps a little). ``ganglion status --json`` shows each
node's history per type. Every process is killed by PID when the test ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_procs import Proc
from port_pairs import free_port_pair

pytestmark = pytest.mark.usefixtures("multicast_loopback")

Spawn = Callable[..., Proc]
TYPE = "sensors.Temperature"


def _until(spawn: Spawn, state_dir: Path, ready: Callable[[dict[str, Any]], bool],
           timeout: float = 25.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        proc = spawn("status", "--state-dir", str(state_dir), "--json")
        proc.finish(timeout=20)
        if proc.popen.returncode == 0:
            doc = json.loads(proc.out)
            if ready(doc):
                return doc
        time.sleep(0.5)
    raise AssertionError(f"status never got ready; last document: {json.dumps(doc, indent=1)}")


def test_history_flags_bound_what_a_node_keeps(spawn: Spawn, tmp_path: Path) -> None:
    port = str(free_port_pair())
    none_dir, small_dir = tmp_path / "none", tmp_path / "small"
    common = ("--sim", "temperature", "--interval", "0.05", "--no-hardware", "--iface", "lo",
              "--no-mdns", "--port", port)
    spawn("node", *common, "--state-dir", str(none_dir), "--name", "forgetful",
          "--history-age", "0", "--no-repair")
    spawn("node", *common, "--state-dir", str(small_dir), "--name", "thrifty",
          "--history-bytes", "4000")

    def sent(enough: int) -> Callable[[dict[str, Any]], bool]:
        return lambda doc: doc["types"].get(TYPE, {}).get("sent", 0) >= enough

    small = _until(spawn, small_dir, sent(60))
    kept = small["types"][TYPE]
    assert 0 < kept["history_bytes"] <= 4000
    assert 0 < kept["history_messages"] < kept["sent"]
    assert small["repair"]["history"]["history_evicted_bytes"] > 0
    none = _until(spawn, none_dir, sent(20))
    assert none["types"][TYPE]["history_messages"] == 0
    assert none["repair"]["history"].get("history_messages", 0) == 0


def test_a_bad_history_flag_is_refused_naming_it(spawn: Spawn, tmp_path: Path) -> None:
    proc = spawn("node", "--history-age", "-1", "--iface", "lo", "--no-mdns",
                 "--state-dir", str(tmp_path / "n"))
    proc.finish(timeout=20)
    assert proc.popen.returncode == 2
    assert "--history-age" in proc.err
