"""``ganglion status``: a real node process answers on its state directory's socket.

Two nodes run as ``python -m ganglion node`` on loopback (``--iface lo``, mDNS off,
their own ports): ``brewpi`` reads two fake 1-Wire probes, ``cellar`` publishes a
simulated temperature. A plugin-bus client subscribes on brewpi, so brewpi
receives cellar's stream. ``ganglion status`` is asked in further processes; every
process is killed by PID when the test ends (the ``spawn`` fixture).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_procs import Proc, clean_env
from port_pairs import free_port_pair

from ganglion.client import PluginClient

pytestmark = pytest.mark.usefixtures("multicast_loopback")

Spawn = Callable[..., Proc]

PROBES = ("w1:28-0000fa4e0001", "w1:28-0000fa4e0002")


def _status(spawn: Spawn, *args: str, env: dict[str, str] | None = None) -> Proc:
    proc = spawn("status", *args, env=env)
    proc.finish(timeout=20)
    return proc


def _until(spawn: Spawn, state_dir: Path, ready: Callable[[dict[str, Any]], bool],
           timeout: float = 25.0) -> dict[str, Any]:
    """Ask for the status (--json) until ``ready(doc)``; fail with the last document."""
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        proc = _status(spawn, "--state-dir", str(state_dir), "--json")
        if proc.popen.returncode == 0:
            doc = json.loads(proc.out)
            if ready(doc):
                return doc
        time.sleep(0.5)
    raise AssertionError(f"status never got ready; last document: {json.dumps(doc, indent=1)}")


def test_status_shows_the_nodes_own_view_as_json_and_as_tables(spawn: Spawn,
                                                               tmp_path: Path) -> None:
    port = str(free_port_pair())
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    brewpi = spawn("node", "--fake-hardware", "ds18b20,ds18b20", "--iface", "lo", "--no-mdns",
                   "--port", port, "--state-dir", str(a_dir), "--name", "brewpi")
    spawn("node", "--sim", "temperature", "--interval", "0.2", "--no-hardware", "--iface", "lo",
          "--no-mdns", "--port", port, "--state-dir", str(b_dir), "--name", "cellar")
    brewpi.wait_for_output(r"sensor w1:28-0000fa4e0002 found")
    with PluginClient(a_dir) as bus:
        bus.subscribe("sensors.Temperature")  # brewpi now receives cellar's readings

        def ready(doc: dict[str, Any]) -> bool:
            return any(s["node_name"] == "cellar" and s["received"] > 0
                       for s in doc["streams"]) and len(doc["sensors"]) == 2

        doc = _until(spawn, a_dir, ready)

    assert doc["format"] == 1
    node = doc["node"]
    assert node["name"] == "brewpi" and node["interface_name"] == "lo"
    assert node["port"] == int(port) and node["state_dir"] == str(a_dir)
    assert node["pid"] == brewpi.pid and node["uptime_s"] > 0
    assert [p["name"] for p in doc["peers"]] == ["cellar"]
    assert doc["peers"][0]["role"] == "member"
    temperature = doc["types"]["sensors.Temperature"]
    assert temperature["group"].startswith("239.255.")
    assert temperature["sent"] > 0 and temperature["received"] > 0
    stream = next(s for s in doc["streams"] if s["node_name"] == "cellar")
    assert stream["type"] == "sensors.Temperature" and stream["lost"] == 0
    assert doc["plugins"]["hardware"]["state"] == "running"
    assert doc["plugins"]["hardware"]["crashes"] == 0
    assert sorted(s["id"] for s in doc["sensors"]) == list(PROBES)
    for sensor in doc["sensors"]:
        assert sensor["plugin"] == "hardware" and sensor["kind"] == "1-Wire thermometer"
        assert sensor["running"] and not sensor["failing"]
    assert "sensors.Temperature" in doc["bus"]["subscriptions"]
    assert doc["bus"]["endpoints"][0] == f"ipc://{a_dir}/bus.pub"
    assert {"published", "delivered", "dropped", "malformed", "refused"} <= set(doc["bus"])
    assert set(doc["counters"]) == {"dropped", "bad_mac", "decode_errors"}

    env = clean_env() | {"COLUMNS": "200"}
    text = _status(spawn, "--state-dir", str(a_dir), env=env)
    assert text.popen.returncode == 0, text.err
    for word in ("node brewpi", "peers (1)", "cellar", "sensors.Temperature", "hardware",
                 "sensors found (2)", *PROBES, "plugin bus: ipc://"):
        assert word in text.out, (word, text.out)


def test_status_without_a_running_node_is_one_line_of_error(spawn: Spawn,
                                                             tmp_path: Path) -> None:
    proc = _status(spawn, "--state-dir", str(tmp_path))
    assert proc.popen.returncode == 1
    assert proc.out == ""
    assert proc.err.splitlines() == [
        f"Error: no node is running with state directory {tmp_path} (nothing answers on "
        f"{tmp_path}/status.sock); start one with `ganglion node`, or name its --state-dir"]


def test_status_of_a_killed_node_says_it_is_not_running(spawn: Spawn, tmp_path: Path) -> None:
    # SIGKILL leaves the socket file behind: connecting is refused, and that is "not running".
    node = spawn("node", "--no-hardware", "--iface", "lo", "--no-mdns",
                 "--port", str(free_port_pair()), "--state-dir", str(tmp_path))
    node.wait_for_output(r"node \S+ \(")
    _until(spawn, tmp_path, lambda doc: doc["node"]["pid"] == node.pid)
    node.kill()
    assert (tmp_path / "status.sock").exists()
    proc = _status(spawn, "--state-dir", str(tmp_path))
    assert proc.popen.returncode == 1
    assert proc.err.startswith("Error: no node is running with state directory"), proc.err
    assert len(proc.err.splitlines()) == 1


def test_a_stopped_node_removes_its_status_socket(spawn: Spawn, tmp_path: Path) -> None:
    node = spawn("node", "--no-hardware", "--iface", "lo", "--no-mdns",
                 "--port", str(free_port_pair()), "--state-dir", str(tmp_path))
    _until(spawn, tmp_path, lambda doc: doc["node"]["pid"] == node.pid)
    assert oct((tmp_path / "status.sock").stat().st_mode & 0o777) == "0o600"
    node.popen.terminate()
    assert node.finish(timeout=20) == 0, node.err
    assert not (tmp_path / "status.sock").exists()
    assert os.listdir(tmp_path)  # the node's own files stay
