"""The C external plugin on one host exchanges readings with a node on another host.

Two hosts in network namespaces on a bridge (see test_multihost.py): host 1 runs a
node with its plugin bus and the C plugin connected to it; host 2 runs a node with
a simulated temperature sensor and a ``ganglion tail``. The C plugin must print
host 2's temperatures, and the tail on host 2 must receive the plugin's counters.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_support import REPO, NetnsLab, Spawner

pytestmark = pytest.mark.netns


def _toolchain_problem() -> str | None:
    if shutil.which("cc") is None or shutil.which("make") is None:
        return "no C compiler or make on PATH"
    probe = subprocess.run(["cc", "-E", "-x", "c", "-"], input="#include <zmq.h>\n",
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return "libzmq headers (zmq.h) not found; install libzmq3-dev"
    return None


@pytest.fixture
def c_plugin(tmp_path: Path) -> Path:
    problem = _toolchain_problem()
    if problem:
        pytest.skip(problem)
    build = tmp_path / "build"
    shutil.copytree(REPO / "examples" / "c_plugin", build)
    made = subprocess.run(["make", "-C", str(build)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return build / "ganglion_plugin"


@pytest.fixture
def short_state() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gzm", dir="/tmp"))  # ipc paths must stay short
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(150)
def test_c_plugin_on_one_host_talks_to_a_node_on_another(
        lab: NetnsLab, spawn: Spawner, c_plugin: Path, short_state: Path) -> None:
    lab.add_host()
    lab.add_host()
    common = ["--iface", "eth0", "--no-mdns", "--no-hardware"]
    one = spawn("node", "--name", "host1", "--state-dir", str(short_state / "h1"), *common,
                label="node-h1", prefix=lab.prefix(1))
    two = spawn("node", "--name", "host2", "--state-dir", str(short_state / "h2"), *common,
                "--sim", "temperature", "--interval", "0.05", label="node-h2",
                prefix=lab.prefix(2))
    one.wait_for_err("plugin bus: ipc://")
    two.wait_for_err("node host2 (")
    tail = spawn("tail", "examples.CCounter", "--json", "--no-last", "--count", "5",
                 "--timeout", "60", "--iface", "eth0", label="tail-h2", prefix=lab.prefix(2))
    tail.wait_for_err("listening for examples.CCounter")
    time.sleep(1.0)  # the tail's subscription reaches host 1 in its heartbeats
    plugin = subprocess.run([*lab.prefix(1), str(c_plugin), str(short_state / "h1"), "40", "50"],
                            capture_output=True, text=True, timeout=60)
    assert plugin.returncode == 0, f"{plugin.stdout}\n{plugin.stderr}\n{one.describe()}"
    temperatures = [line for line in plugin.stdout.splitlines()
                    if line.startswith("recv sensors.Temperature")]
    assert temperatures, plugin.stdout
    assert all("sim:host2/temperature" in line for line in temperatures)
    assert tail.finish(timeout=60) == 0, tail.describe()
    counters = [json.loads(line)["data"] for line in tail.out.splitlines()
                if line.startswith("{")]
    assert len(counters) == 5
    assert {c["source"] for c in counters} == {"c"}
    assert [c["count"] for c in counters] == sorted(c["count"] for c in counters)
