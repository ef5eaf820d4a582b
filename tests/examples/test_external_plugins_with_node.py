"""The external plugins (Python and C) exchange readings with a real ``ganglion node``.

The node runs as a subprocess with a simulated temperature sensor and its plugin
bus on ipc sockets in its state directory; the plugins connect to that directory,
receive the node's temperatures and publish their own type, which a ``ganglion
tail`` on loopback receives from the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANGLION_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Procs:
    """Subprocesses with output in files; every one is killed by PID at teardown."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[tuple[subprocess.Popen[bytes], Path, Path]] = []

    def start(self, label: str, args: list[str]) -> int:
        out, err = self.logdir / f"{label}.out", self.logdir / f"{label}.err"
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL,
                                    stdout=o, stderr=e)
        self.procs.append((proc, out, err))
        return len(self.procs) - 1

    def wait(self, index: int, timeout: float) -> tuple[int, str, str]:
        proc, out, err = self.procs[index]
        code = proc.wait(timeout=timeout)
        return code, out.read_text(), err.read_text()

    def output(self, index: int) -> tuple[str, str]:
        _proc, out, err = self.procs[index]
        return out.read_text(), err.read_text()

    def close(self) -> None:
        for proc, _out, _err in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # ipc socket paths are limited to ~107 bytes: keep the directory short
    path = Path(tempfile.mkdtemp(prefix="gzn", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def _node(procs: Procs, state_dir: Path, port: int) -> int:
    index = procs.start("node", [sys.executable, "-m", "ganglion", "node", "--name", "brewery",
                                 "--state-dir", str(state_dir), "--iface", "127.0.0.1",
                                 "--port", str(port), "--sim", "temperature", "--interval",
                                 "0.05", "--no-mdns"])
    _wait_for(state_dir / "bus.sub", 20)
    return index


def _tail(procs: Procs, type_name: str, port: int, count: int) -> int:
    """Start a tail and wait until it listens and the node can know it (its heartbeat).

    Nodes send a type only while some peer subscribes to it (matching): readings
    published before the tail's first heartbeat reached the node are not sent.
    """
    index = procs.start("tail", [sys.executable, "-m", "ganglion", "tail", type_name, "--json",
                                 "--no-last", "--iface", "127.0.0.1", "--port", str(port),
                                 "--count", str(count), "--timeout", "40"])
    deadline = time.monotonic() + 20
    while "listening for" not in procs.output(index)[1]:
        assert time.monotonic() < deadline, f"tail did not start: {procs.output(index)}"
        time.sleep(0.05)
    time.sleep(1.0)  # two heartbeats: the node has heard the tail's subscription
    return index


@pytest.mark.timeout(90)
def test_python_external_plugin_averages_a_nodes_temperatures(
        procs: Procs, state_dir: Path, free_udp_port: int) -> None:
    port = free_udp_port
    node = _node(procs, state_dir, port)
    tail = _tail(procs, "examples.Average", port, 2)
    plugin = procs.start("plugin", [sys.executable, "examples/external_plugin.py",
                                    str(state_dir), "--window", "3", "--count", "2",
                                    "--timeout", "20"])
    code, out, err = procs.wait(plugin, 60)
    assert code == 0, f"{out}\n{err}\nnode: {procs.output(node)}"
    assert out.count("sim:brewery/temperature:") == 2
    code, out, err = procs.wait(tail, 60)
    assert code == 0, f"{out}\n{err}"
    readings = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["type"] for r in readings] == ["examples.Average"] * 2
    assert all(r["data"]["readings"] == 3 for r in readings)
    assert all(r["data"]["sensor"] == "sim:brewery/temperature" for r in readings)


def _c_toolchain_problem() -> str | None:
    if shutil.which("cc") is None or shutil.which("make") is None:
        return "no C compiler or make on PATH"
    probe = subprocess.run(["cc", "-E", "-x", "c", "-"], input="#include <zmq.h>\n",
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return "libzmq headers (zmq.h) not found; install libzmq3-dev"
    return None


@pytest.mark.timeout(120)
def test_c_external_plugin_exchanges_readings_with_a_node(
        procs: Procs, state_dir: Path, free_udp_port: int, tmp_path: Path) -> None:
    problem = _c_toolchain_problem()
    if problem:
        pytest.skip(problem)
    build = tmp_path / "build"
    shutil.copytree(ROOT / "examples" / "c_plugin", build)
    made = subprocess.run(["make", "-C", str(build)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    port = free_udp_port
    _node(procs, state_dir, port)
    tail = _tail(procs, "examples.CCounter", port, 5)
    plugin = procs.start("cplugin", [str(build / "ganglion_plugin"), str(state_dir), "20", "50"])
    code, out, err = procs.wait(plugin, 60)
    assert code == 0, f"{out}\n{err}"
    # the C plugin printed temperatures the node's simulated sensor published
    assert "recv sensors.Temperature" in out and "sim:brewery/temperature" in out
    code, out, err = procs.wait(tail, 60)
    assert code == 0, f"{out}\n{err}"
    counters = [json.loads(line)["data"] for line in out.splitlines() if line.startswith("{")]
    assert len(counters) == 5
    assert all(c["source"] == "c" for c in counters)
    assert [c["count"] for c in counters] == sorted(c["count"] for c in counters)
