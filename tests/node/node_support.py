"""Helpers for node tests: bounded waits, fresh port pairs, subprocesses and namespaces.

Theory of operation: every wait here polls a condition until a deadline and fails
with a message naming what it waited for, so a broken node fails a test quickly
and readably instead of hanging it. Subprocesses (:class:`NodeProc`) are started
with their output going to files (no pipe can fill up and stall a node) and are
killed by their own PID. Network namespaces (:class:`NetnsLab`) are created with
names that carry this process's PID and are all deleted by :meth:`NetnsLab.close`,
which also kills every process still running inside them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from packet_loss import LossCounters, PacketLoss
from port_pairs import free_port_pair as free_port_pair  # re-exported for the tests here
from waits import run as run
from waits import until as until  # the bounded waits, re-exported for the tests here

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


def wait_sync(condition: Callable[[], bool], what: str, timeout: float = 10.0,
              interval: float = 0.05) -> None:
    """:func:`until` for synchronous code (subprocess tests)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


async def gather_bounded(*aws: Awaitable[Any], timeout: float) -> list[Any]:
    """``asyncio.gather`` with a deadline."""
    return list(await asyncio.wait_for(asyncio.gather(*aws), timeout))


def clean_env() -> dict[str, str]:
    """This environment without any GANGLION_* setting, output unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANGLION_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class NodeProc:
    """A ``python -m ganglion ...`` subprocess whose output goes to two files.

    Args:
        args: the ganglion command line (after ``python -m ganglion``).
        logdir: where ``<label>.out`` and ``<label>.err`` are written.
        label: a name for the log files and error messages.
        prefix: a command to run it under, e.g. ``["ip", "netns", "exec", "h1"]``.
        env: its environment; :func:`clean_env` when None.
    """

    def __init__(self, args: list[str], logdir: Path, label: str,
                 prefix: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.label = label
        logdir.mkdir(parents=True, exist_ok=True)
        self.out_path = logdir / f"{label}.out"
        self.err_path = logdir / f"{label}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.popen = subprocess.Popen(
                [*(prefix or []), sys.executable, "-m", "ganglion", *args], cwd=REPO,
                env=clean_env() if env is None else env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=err)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def describe(self) -> str:
        """The command, its exit status and its output, for assertion messages."""
        return (f"{self.label}: {self.args} (exit {self.popen.poll()})\n"
                f"stdout: {self.out[-3000:]}\nstderr: {self.err[-3000:]}")

    def wait_for_err(self, text: str, timeout: float = 15.0) -> None:
        """Wait until ``text`` shows up on stderr (or fail if the process exits first)."""

        def seen() -> bool:
            if text in self.err:
                return True
            if self.popen.poll() is not None:
                raise AssertionError(f"{text!r} not seen before exit:\n{self.describe()}")
            return False

        try:
            wait_sync(seen, f"{text!r} from {self.label}", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None

    def finish(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit; return its exit code."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not exit within {timeout} s:\n{self.describe()}") from None

    def json_out(self, timeout: float = 20.0) -> Any:
        """Wait for exit 0 and parse stdout as one JSON document."""
        code = self.finish(timeout)
        assert code == 0, self.describe()
        return json.loads(self.out)

    def json_lines(self) -> list[dict[str, Any]]:
        """Every JSON object line printed on stdout so far."""
        lines = []
        for line in self.out.splitlines():
            line = line.strip()
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process by its PID if it still runs, and reap it."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)


class Spawner:
    """Starts :class:`NodeProc` processes and kills every one of them on :meth:`close`."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[NodeProc] = []
        self._count = 0

    def __call__(self, *args: str, label: str | None = None,
                 prefix: list[str] | None = None, env: dict[str, str] | None = None) -> NodeProc:
        self._count += 1
        proc = NodeProc(list(args), self.logdir, f"{self._count:02d}-{label or args[0]}", prefix,
                        env)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.kill()
            except Exception:  # keep killing the others
                continue


def netns_problem() -> str | None:
    """Why network namespaces cannot be built here, or None when they can."""
    if os.geteuid() != 0:
        return "multi-host tests need root to create network namespaces"
    if shutil.which("ip") is None:
        return "multi-host tests need iproute2 (`ip netns`)"
    probe = f"gnp{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                          timeout=10)
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one command (an ``ip`` invocation) with a timeout."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=15)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


class NetnsLab:
    """Hosts in network namespaces joined by veth pairs to a bridge in its own namespace.

    Host ``i`` (from 1) is namespace ``<tag>h<i>`` with interface ``eth0`` at
    ``10.77.<net>.<i>/24`` and a multicast route out of it; its peer end
    ``<tag>v<i>`` is enslaved to bridge ``br0`` in namespace ``<tag>br``. None of
    this touches the namespace the test runs in, except creating the namespaces.

    Args:
        tag: a prefix unique to this test run (it carries the PID).
        net: the third octet of the private subnet.
    """

    def __init__(self, tag: str, net: int = 77) -> None:
        self.tag = tag
        self.net = net
        self.bridge_ns = f"{tag}br"
        self.hosts: list[str] = []
        self._namespaces: list[str] = []
        self._loss: dict[int, PacketLoss] = {}
        self._shared: dict[int, PacketLoss] = {}

    def start(self) -> None:
        """Create the bridge namespace."""
        self._add_ns(self.bridge_ns)
        self._in(self.bridge_ns, "ip", "link", "add", "br0", "type", "bridge")
        # no multicast snooping: a switch without IGMP snooping floods, which is what
        # a node on a fresh LAN usually gets, and no querier is running here
        self._in(self.bridge_ns, "ip", "link", "set", "br0", "type", "bridge",
                 "mcast_snooping", "0")
        self._in(self.bridge_ns, "ip", "link", "set", "br0", "up")

    def add_host(self) -> str:
        """Create the next host namespace, wired to the bridge; return its name."""
        index = len(self.hosts) + 1
        ns = f"{self.tag}h{index}"
        self._add_ns(ns)
        port_name = f"{self.tag}v{index}"
        # both ends are created in the host namespace, then one is moved, so no link
        # ever appears in the namespace the test runs in
        self._in(ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", port_name)
        self._in(ns, "ip", "link", "set", port_name, "netns", self.bridge_ns)
        self._in(self.bridge_ns, "ip", "link", "set", port_name, "master", "br0")
        self._in(self.bridge_ns, "ip", "link", "set", port_name, "up")
        self._in(ns, "ip", "link", "set", "lo", "up")
        self._in(ns, "ip", "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
        self._in(ns, "ip", "link", "set", "eth0", "up")
        self._in(ns, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
        self.hosts.append(ns)
        return ns

    def address(self, index: int) -> str:
        """Host ``index``'s address (from 1)."""
        return f"10.77.{self.net}.{index}"

    def prefix(self, index: int) -> list[str]:
        """The command prefix that runs a program on host ``index``."""
        return ["ip", "netns", "exec", self.hosts[index - 1]]

    def set_link(self, index: int, up: bool) -> None:
        """Bring host ``index``'s bridge-side port down (a partition) or up (heal)."""
        self._in(self.bridge_ns, "ip", "link", "set", f"{self.tag}v{index}",
                 "up" if up else "down")

    def set_loss(self, percent: float, hosts: list[int] | None = None,
                 ports: tuple[int, ...] = (47800, 47801), tool: str | None = None) -> None:
        """Drop ``percent`` % of the UDP datagrams arriving at each of ``hosts`` (all when
        None) from now on; callable again to change it (:mod:`packet_loss`).

        Args:
            percent: 0..100.
            hosts: host indexes (from 1).
            ports: UDP ports counted separately (default: ganglion's data and control).
            tool: ``"nft"`` or ``"iptables"``; the first installed when None.
        """
        for index in hosts or range(1, len(self.hosts) + 1):
            loss = self._loss.get(index)
            if loss is None:
                loss = self._loss[index] = PacketLoss(self.hosts[index - 1], "eth0", ports, tool)
            loss.set(percent)

    def loss_counters(self, index: int) -> LossCounters:
        """Datagrams counted at host ``index`` since its loss rule was first set (with its
        shared loss's ``sent`` and ``dropped_out``, when one was set)."""
        counters = self._loss[index].counters() if index in self._loss else LossCounters()
        if index in self._shared:
            shared = self._shared[index].counters()
            counters.dropped_out = shared.dropped_out
            if index not in self._loss:
                counters.sent = shared.sent
                counters.sent_bytes = shared.sent_bytes
        return counters

    def set_shared_loss(self, percent: float, hosts: list[int],
                        ports: tuple[int, ...] = (47800, 47801)) -> None:
        """Drop ``percent`` % of the UDP datagrams each of ``hosts`` sends, at the bridge:
        every other host misses the same ones (nftables only, :mod:`packet_loss`)."""
        for index in hosts:
            loss = self._shared.get(index)
            if loss is None:
                loss = self._shared[index] = PacketLoss(self.bridge_ns, f"{self.tag}v{index}",
                                                        ports, "nft", bridge=True)
            loss.set(percent)

    def close(self) -> None:
        """Kill everything left inside the namespaces and delete them (never raises)."""
        self._loss.clear()  # the rules go with the namespaces
        self._shared.clear()
        for ns in reversed(self._namespaces):
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    continue
            sh("ip", "netns", "del", ns, check=False)
        self._namespaces.clear()

    def _add_ns(self, ns: str) -> None:
        sh("ip", "netns", "add", ns)
        self._namespaces.append(ns)

    def _in(self, ns: str, *cmd: str) -> None:
        sh("ip", "netns", "exec", ns, *cmd)
