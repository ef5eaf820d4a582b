"""A PluginClient notices its node going away and coming back (a real ``ganglion node``).

Over ipc libzmq reconnects by itself and tells the socket's owner nothing, so a
client could wait forever on a node that died. The client watches its connection
(a zmq monitor) and sends ZMTP heartbeats: a killed node is noticed at once, a
frozen one (SIGSTOP) after three missed heartbeats, and a node started again on the
same state directory is connected to again. Every node process here is stopped by
PID at teardown, also when a test fails.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ganglion.client import PluginClient

pytestmark = pytest.mark.usefixtures("multicast_loopback")

ROOT = Path(__file__).resolve().parents[1]


class Nodes:
    """``ganglion node`` processes on one state directory; all killed by PID at the end."""

    def __init__(self, state_dir: Path, port: int) -> None:
        self.state_dir = state_dir
        self.port = port
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANGLION_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "ganglion", "node", "--name", "gone", "--state-dir",
             str(self.state_dir), "--iface", "127.0.0.1", "--port", str(self.port),
             "--no-mdns"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a stopped one must be able to die
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def nodes(free_udp_port: int) -> Iterator[Nodes]:
    # ipc socket paths are limited to ~107 bytes: keep the directory short
    state_dir = Path(tempfile.mkdtemp(prefix="gzgone", dir="/tmp"))
    group = Nodes(state_dir, free_udp_port)
    try:
        yield group
    finally:
        group.close()
        shutil.rmtree(state_dir, ignore_errors=True)


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout:g} s"
        time.sleep(0.02)


@pytest.mark.timeout(90)
def test_a_killed_node_is_noticed_and_a_restarted_one_reconnected(
        nodes: Nodes, caplog: pytest.LogCaptureFixture) -> None:
    first = nodes.start()
    with PluginClient(nodes.state_dir, ready_timeout=20.0) as client:
        client.wait_ready(20.0)
        wait_for(lambda: client.node_connected, 10, "the first connection")
        assert client.disconnects == 0
        with caplog.at_level(logging.WARNING, logger="ganglion.client"):
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            wait_for(lambda: not client.node_connected, 5, "noticing the killed node")
        assert client.disconnects == 1
        assert any("went away" in record.getMessage() for record in caplog.records)
        # recv notices it too while it waits (no delivery comes), and keeps waiting
        with pytest.raises(TimeoutError):
            client.recv(timeout=0.2)
        nodes.start()
        wait_for(lambda: client.node_connected, 20, "connecting to the restarted node")
        assert client.disconnects == 1
        client.wait_ready(20.0)
        assert client.publish_raw("tests.Gone", b"\xa1\x61x\x01")


@pytest.mark.timeout(90)
def test_a_frozen_node_is_noticed_by_missed_heartbeats(nodes: Nodes) -> None:
    node = nodes.start()
    with PluginClient(nodes.state_dir, ready_timeout=20.0, heartbeat=0.1) as client:
        client.wait_ready(20.0)
        wait_for(lambda: client.node_connected, 10, "the first connection")
        os.kill(node.pid, signal.SIGSTOP)  # its socket stays open: only heartbeats tell
        try:
            started = time.monotonic()
            # noticed while waiting for a delivery, as a plugin would be
            with pytest.raises(TimeoutError):
                client.recv(timeout=3.0)
            assert client.disconnects == 1  # before node_connected reads the monitor
            assert not client.node_connected
            assert time.monotonic() - started < 3.5
        finally:
            os.kill(node.pid, signal.SIGCONT)
        wait_for(lambda: client.node_connected, 20, "reconnecting to the resumed node")


@pytest.mark.timeout(60)
def test_without_heartbeats_a_frozen_node_stays_connected(nodes: Nodes) -> None:
    """The heartbeat, not something else, is what notices a frozen node."""
    node = nodes.start()
    with PluginClient(nodes.state_dir, ready_timeout=20.0, heartbeat=None) as client:
        client.wait_ready(20.0)
        wait_for(lambda: client.node_connected, 10, "the first connection")
        os.kill(node.pid, signal.SIGSTOP)
        try:
            with pytest.raises(TimeoutError):
                client.recv(timeout=1.0)
            assert client.node_connected
            assert client.disconnects == 0
        finally:
            os.kill(node.pid, signal.SIGCONT)


@pytest.mark.parametrize("heartbeat", [0.0, -1.0, float("nan")])
def test_a_heartbeat_that_is_not_positive_is_refused(heartbeat: float) -> None:
    with pytest.raises(ValueError, match="heartbeat must be a positive"):
        PluginClient("tcp://127.0.0.1:9", heartbeat=heartbeat)
