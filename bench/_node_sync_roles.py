"""The benchmark's synchronous worker roles: external plugins, and the in-process rate.

Theory of operation: an external plugin is a separate process with a
:class:`ganglion.client.PluginClient` connected to a node's plugin bus (ipc
sockets in the node's state directory); these roles are exactly that, so the
path measured is plugin -> node A -> network -> node B -> plugin. They poll stdin
for commands between messages (:class:`StdinLines`) and report with
:func:`_node_common.emit`. The ``inprocess`` role runs bench/inprocess.py's
``measure_inprocess`` when it exists, else :func:`_node_async.run_inprocess_loop`.
"""

from __future__ import annotations

import asyncio
import os
import select
import time
from typing import Any

import cbor2
from _node_async import run_inprocess_loop
from _node_common import MEASURED, WARMUP, NodeReading, Tally, emit

from ganglion.client import PluginClient

#: Seconds a refused publish (the queue to the node is full) waits before retrying.
RETRY_SECONDS = 0.0002


class StdinLines:
    """Non-blocking line reader on fd 0 (select + os.read, so no hidden buffering)."""

    def __init__(self) -> None:
        self._buf = b""
        self.eof = False

    def poll(self, timeout: float = 0.0) -> list[str]:
        """Return the complete lines available within ``timeout`` seconds ("quit" at EOF)."""
        if self.eof:
            return ["quit"]
        ready, _, _ = select.select([0], [], [], timeout)
        if not ready:
            return []
        chunk = os.read(0, 65536)
        if not chunk:
            self.eof = True
            return ["quit"]
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return [line.decode().strip() for line in lines]


def _wait_quit(stdin: StdinLines, deadline: float) -> None:
    while time.monotonic() < deadline and "quit" not in stdin.poll(0.1):
        pass


def run_plugin_pub(cfg: dict[str, Any]) -> int:
    """An external plugin publishing NodeReading into a node: warm-up until ``go``, then measured.

    A publish the bus refuses (its queue full) is retried after :data:`RETRY_SECONDS`
    and counted in ``refused``, so the blast measures what the path can carry.
    """
    deadline = time.monotonic() + float(cfg.get("deadline_s", 120.0))
    count, mode, rate = int(cfg["count"]), str(cfg["mode"]), float(cfg.get("rate", 1000.0))
    stdin = StdinLines()
    with PluginClient(str(cfg["bus"]), ready_timeout=10.0) as client:
        while True:
            client.publish(NodeReading(0, WARMUP, time.monotonic_ns(), 0.0, "warm-up"))
            lines = stdin.poll(0.02)
            if "quit" in lines or time.monotonic() > deadline:
                return 0
            if "go" in lines:
                break
        refused = 0
        start = time.monotonic()
        for seq in range(count):
            if mode == "paced":
                delay = start + seq / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            msg = NodeReading(seq, MEASURED, time.monotonic_ns(), 21.5, "bench/plugin")
            while not client.publish(msg):
                refused += 1
                if time.monotonic() > deadline:
                    return 3
                time.sleep(RETRY_SECONDS)
        emit("sent", sent=count, send_seconds=time.monotonic() - start, refused=refused)
        _wait_quit(stdin, deadline)  # closing early would discard what zmq still queues
    return 0


def run_plugin_sub(cfg: dict[str, Any]) -> int:
    """An external plugin subscribed to NodeReading on a node; tallies the measured phase."""
    deadline = time.monotonic() + float(cfg.get("deadline_s", 120.0))
    tally = Tally(int(cfg["count"]), keep_latency=cfg["mode"] == "paced")
    idle_ns = int(float(cfg.get("idle_s", 0.5)) * 1e9)
    stdin = StdinLines()
    warm = False
    with PluginClient(str(cfg["bus"])) as client:
        client.subscribe(NodeReading)
        emit("ready")
        while not tally.complete and time.monotonic() < deadline:
            try:
                msg, _meta = client.recv(timeout=0.05)
            except TimeoutError:
                if "quit" in stdin.poll(0):
                    break
                if tally.received and time.monotonic_ns() - tally.last_ns > idle_ns:
                    break
                continue
            if not isinstance(msg, NodeReading):
                continue
            if msg.phase == MEASURED:
                tally.add(msg.seq, msg.mono_ns, time.monotonic_ns())
            elif not warm:
                warm = True
                emit("warm")
        emit("result", **tally.result(), bad_messages=client.bad_messages)
    return 0


def run_types(cfg: dict[str, Any]) -> int:
    """An external plugin publishing ``types`` distinct type names every ``interval`` s."""
    deadline = time.monotonic() + float(cfg.get("deadline_s", 120.0))
    names = [f"bench.Many{i:03d}" for i in range(int(cfg["types"]))]
    interval = float(cfg.get("interval", 0.5))
    stdin = StdinLines()
    first = True
    with PluginClient(str(cfg["bus"]), ready_timeout=10.0) as client:
        while time.monotonic() < deadline:
            for i, name in enumerate(names):
                client.publish_raw(name, cbor2.dumps({"sensor": f"probe-{i}", "value": 1.5}))
            if first:
                first = False
                emit("publishing", types=len(names))
            if "quit" in stdin.poll(interval):
                break
    return 0


def run_inprocess(cfg: dict[str, Any]) -> int:
    """Emit ``result`` with the in-process publish -> callback rate (see the module docstring)."""
    count = int(cfg["count"])
    try:
        from inprocess import measure_inprocess  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        rate = asyncio.run(run_inprocess_loop(count, int(cfg["port"]), str(cfg["state_dir"]),
                                              int(cfg.get("yield_every", 256))))
        emit("result", rate=rate, source="own loop (bench/_node_async.py)")
        return 0
    emit("result", rate=float(measure_inprocess(count)),
         source="bench/inprocess.py measure_inprocess")
    return 0
