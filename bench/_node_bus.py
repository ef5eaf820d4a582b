"""The node benchmark's plugin-bus measurements, against a bare ``zmq.proxy`` in the same run.

Theory of operation: issue 18 compares ganglion's plugin bus with the architecture
it replaces, a bare ``zmq.proxy(XSUB, XPUB)`` between plugins. One trial of
:func:`bus_local_trial` runs both with the *same* two client processes, plain pyzmq
(no ganglion code in them): ``raw-pub`` connects an XPUB to the publish address,
waits for a subscription to arrive (the slow-joiner wait), sends warm-up messages
until ``go``, then blasts ``count`` messages of ``[type name, CBOR payload]``
(payloads encoded before the clock starts) with non-blocking sends under
``XPUB_NODROP``, counting a refused send and retrying it; ``raw-sub`` connects a SUB,
subscribes to the measured and the warm-up type, and counts what arrives. The
delivered rate is measured messages over the first-to-last arrival span at the
subscriber. In between, the ``proxy`` worker (``zmq.proxy`` on ipc sockets, the
same queue bounds as the bus) or ``ganglion node`` (its bus on ipc in its state
directory) carries them; which goes first alternates by trial. The ratio
``bus / proxy`` is issue 18's target (>= 0.5). Each side then carries a paced run
(1,000 msg/s, the send time in the payload) for its one-way p50, plugin to plugin.

:func:`bus_latency_trial` is internal <-> external on one node: one process runs a
:class:`ganglion.Node` with its bus (``node-sub``/``node-pub`` with ``bus``), the other
a :class:`ganglion.client.PluginClient` (``plugin-pub``/``plugin-sub``), paced, and
the one-way latency is read on the receiving side. Each such trial also measures, just
before, one bare zmq hop between the same plain pyzmq clients (``raw-pub`` binding its
XPUB where ``raw-sub`` connects, nothing in between, paced alike): the floor a one-hop
path has on this machine at this moment, printed beside the bus's figure with the ratio.
The two-node path's floor is :func:`bare_chain_p50`: the same clients at the ends of a
chain of two ``relay`` processes that only move bytes (zmq -> UDP -> zmq).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Any

import cbor2
import zmq
from _node_common import MEASURED, PORTS, WARMUP, emit
from _node_procs import ProcGroup

READING = b"bench.NodeReading"
WARM = b"bench.BusWarm"


def _payload(seq: int, phase: int) -> bytes:
    """The measured payload: NodeReading's fields as the Python client would encode them."""
    return bytes(cbor2.dumps({"seq": seq, "phase": phase, "mono_ns": time.monotonic_ns(),
                              "celsius": 21.5, "sensor": "bench/raw"}))


def _quit_requested() -> bool:
    import select

    ready, _, _ = select.select([0], [], [], 0)
    if not ready:
        return False
    chunk = os.read(0, 4096)
    return not chunk or b"quit" in chunk


def run_proxy(cfg: dict[str, Any]) -> int:
    """A bare ``zmq.proxy(XSUB, XPUB)`` on ``<base>.pub`` / ``<base>.sub`` until ``quit``."""
    ctx = zmq.Context()
    xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    for sock in (xsub, xpub):
        sock.linger = 0
        sock.sndhwm = sock.rcvhwm = 1000  # the bus's default queue bound
    base = str(cfg["base"])
    xsub.bind(f"ipc://{base}.pub")
    xpub.bind(f"ipc://{base}.sub")
    threading.Thread(target=zmq.proxy, args=(xsub, xpub), daemon=True).start()
    emit("ready")
    deadline = time.monotonic() + float(cfg.get("deadline_s", 120.0))
    while time.monotonic() < deadline and not _quit_requested():
        time.sleep(0.05)
    sys.stdout.flush()
    os._exit(0)  # the proxy thread holds the sockets: no orderly close to wait for


def run_relay(cfg: dict[str, Any]) -> int:
    """One middle process of the bare relay chain, until ``quit``: what a node does on the
    plugin -> node -> node -> plugin path with nothing else. ``zmq-to-udp``: a SUB bound
    at ``<base>.pub`` (where ``raw-pub`` connects) whose messages go to 127.0.0.1:``port``
    in one ``sendto`` each (type name, NUL, payload); ``udp-to-zmq``: a UDP socket on a
    free port (in ``ready``) whose datagrams leave, as two frames again, an XPUB bound at
    ``<base>.sub`` (where ``raw-sub`` connects)."""
    import socket

    ctx = zmq.Context()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    deadline = time.monotonic() + float(cfg.get("deadline_s", 120.0))
    base = str(cfg["base"])
    if cfg["direction"] == "zmq-to-udp":
        sub = ctx.socket(zmq.SUB)
        sub.linger = 0
        sub.bind(f"ipc://{base}.pub")
        sub.subscribe(b"")
        target = ("127.0.0.1", int(cfg["port"]))
        emit("ready")
        while time.monotonic() < deadline and not _quit_requested():
            if sub.poll(100):
                with contextlib.suppress(zmq.Again):
                    while True:  # what is queued, without waiting
                        name, payload = sub.recv_multipart(zmq.NOBLOCK)[:2]
                        udp.sendto(name + b"\0" + payload, target)
    else:
        pub = ctx.socket(zmq.XPUB)
        pub.linger = 0
        pub.bind(f"ipc://{base}.sub")
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        emit("ready", port=udp.getsockname()[1])
        import select

        while time.monotonic() < deadline and not _quit_requested():
            if select.select([udp], [], [], 0.1)[0]:
                with contextlib.suppress(BlockingIOError):
                    while True:
                        name, _, payload = udp.recv(65536).partition(b"\0")
                        pub.send_multipart([name, payload], zmq.NOBLOCK)
    os._exit(0)


def run_raw_pub(cfg: dict[str, Any]) -> int:
    """Plain pyzmq publisher: warm-up until ``go``, then a blast of ``count`` messages."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.linger = 0
    pub.setsockopt(zmq.XPUB_NODROP, 1)
    if cfg.get("bind"):  # a bare hop: the subscriber connects straight to this socket
        pub.bind(f"ipc://{cfg['base']}.sub")
    else:
        pub.connect(f"ipc://{cfg['base']}.pub")
    deadline = time.monotonic() + float(cfg.get("deadline_s", 120.0))
    if not pub.poll(20_000):
        emit("error", why="no subscription arrived in 20 s")
        return 3
    pub.recv()
    count = int(cfg["count"])
    payloads = [_payload(seq, MEASURED) for seq in range(count)]
    warm = _payload(0, WARMUP)
    while True:
        with contextlib.suppress(zmq.Again):  # a full queue: the next one goes
            pub.send_multipart([WARM, warm], flags=zmq.NOBLOCK)
        lines = _read_lines(0.02)
        if "quit" in lines or time.monotonic() > deadline:
            return 0
        if "go" in lines:
            break
    refused = 0
    send = pub.send
    start = time.monotonic()
    if cfg.get("mode") == "paced":
        rate = float(cfg.get("rate", 1000.0))
        for seq in range(count):
            delay = start + seq / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:  # the time of sending in the payload: the subscriber measures latency
                pub.send_multipart([READING, _payload(seq, MEASURED)], flags=zmq.NOBLOCK)
            except zmq.Again:
                refused += 1
        emit("sent", sent=count, send_seconds=time.monotonic() - start, refused=refused)
        while time.monotonic() < deadline and "quit" not in _read_lines(0.1):
            pass
        return 0
    for payload in payloads:
        while True:
            try:
                send(READING, zmq.SNDMORE | zmq.NOBLOCK)
                send(payload, zmq.NOBLOCK)
                break
            except zmq.Again:
                refused += 1
                if time.monotonic() > deadline:
                    return 3
                time.sleep(0)
    emit("sent", sent=count, send_seconds=time.monotonic() - start, refused=refused)
    while time.monotonic() < deadline and "quit" not in _read_lines(0.1):
        pass
    return 0


def run_raw_sub(cfg: dict[str, Any]) -> int:
    """Plain pyzmq subscriber: counts measured messages, first-to-last arrival span."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.rcvhwm = 1000
    sub.connect(f"ipc://{cfg['base']}.sub")
    sub.subscribe(READING)
    sub.subscribe(WARM)
    emit("ready")
    count = int(cfg["count"])
    deadline = time.monotonic() + float(cfg.get("deadline_s", 120.0))
    idle_ns = int(float(cfg.get("idle_s", 0.5)) * 1e9)
    recv, more = sub.recv, zmq.RCVMORE
    received, first_ns, last_ns, warm = 0, 0, 0, False
    paced = cfg.get("mode") == "paced"
    latencies: list[float] = []
    while received < count and time.monotonic() < deadline:
        if not sub.poll(50):
            if received and time.monotonic_ns() - last_ns > idle_ns:
                break
            if _read_lines(0) == ["quit"]:
                break
            continue
        while True:  # drain what is there without waiting
            try:
                name = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            payload = recv() if sub.getsockopt(more) else b""
            while sub.getsockopt(more):
                recv()
            if name == READING:
                received += 1
                last_ns = time.monotonic_ns()
                if received == 1:
                    first_ns = last_ns
                if paced:
                    latencies.append((last_ns - cbor2.loads(payload)["mono_ns"]) / 1000.0)
            elif not warm:
                warm = True
                emit("warm")
    span = (last_ns - first_ns) / 1e9
    latencies.sort()
    emit("result", received=received, rx_seconds=span,
         delivered_per_s=received / span if span > 0 else 0.0,
         p50_us=latencies[(len(latencies) - 1) // 2] if latencies else None)
    while time.monotonic() < deadline and "quit" not in _read_lines(0.1):
        pass
    return 0


_stdin_buf = b""


def _read_lines(timeout: float) -> list[str]:
    """Complete stdin lines available within ``timeout`` s (["quit"] at end of input)."""
    global _stdin_buf
    import select

    ready, _, _ = select.select([0], [], [], timeout)
    if not ready:
        return []
    chunk = os.read(0, 65536)
    if not chunk:
        return ["quit"]
    _stdin_buf += chunk
    *lines, _stdin_buf = _stdin_buf.split(b"\n")
    return [line.decode().strip() for line in lines]


def _blast(group: ProcGroup, base: str, count: int, label: str,
           mode: str = "blast", *, direct: bool = False) -> dict[str, Any]:
    """One run from a raw publisher to a raw subscriber through whatever serves ``base``
    (``direct``: nothing, the publisher binds): a blast of ``count`` messages, or
    ``count`` paced at 1,000 msg/s (latency)."""
    cfg = {"base": base, "count": count, "deadline_s": 60.0 + count / 500.0, "mode": mode,
           "rate": 1000.0, "bind": direct}
    if direct:  # the publisher binds: start it first
        pub = group.worker("raw-pub", cfg, name=f"raw pub ({label})")
        time.sleep(0.3)
    sub = group.worker("raw-sub", cfg, name=f"raw sub ({label})")
    sub.wait_event("ready", 20)
    if not direct:
        pub = group.worker("raw-pub", cfg, name=f"raw pub ({label})")
    sub.wait_event("warm", 30)
    time.sleep(0.2)  # the warm-up flowing: every connection and subscription is up
    pub.send("go")
    budget = 30.0 + count / 2000.0
    _, sent = pub.wait_event("sent", budget)
    _, result = sub.wait_event("result", budget)
    for proc in (pub, sub):
        group.stop(proc)
    return {"delivered_per_s": result["delivered_per_s"], "received": result["received"],
            "refused": sent["refused"], "loss": 1 - result["received"] / count,
            "p50_us": result.get("p50_us")}


def bus_local_trial(count: int, index: int, paced_count: int = 1000) -> dict[str, Any]:
    """Plugin -> plugin on one node: ``ganglion node``'s bus vs a bare ``zmq.proxy``.

    Args:
        count: messages per blast.
        index: the trial's number (even: the proxy first; odd: the node first).
        paced_count: messages of the paced run (1,000 msg/s) that measures latency.

    Returns:
        ``proxy_msg_s``, ``bus_msg_s``, their ``ratio``, each side's loss and
        refused sends, and each side's paced one-way ``*_p50_us``.
    """
    out: dict[str, Any] = {}
    with ProcGroup("bus-local") as group:
        def proxy() -> None:
            base = f"{group.state_dir()}/proxy"
            server = group.worker("proxy", {"base": base, "deadline_s": 120.0 + count / 1000})
            server.wait_event("ready", 20)
            got = _blast(group, base, count, "proxy")
            paced = _blast(group, base, paced_count, "proxy", "paced")
            group.stop(server)
            out.update(proxy_msg_s=got["delivered_per_s"], proxy_loss=got["loss"],
                       proxy_refused=got["refused"], proxy_p50_us=paced["p50_us"])

        def bus() -> None:
            state = group.state_dir()
            node = group.node(PORTS["bus_local"], state, "--no-mdns", name="bench-bus")
            node.wait_stderr("plugin bus:", 20)
            got = _blast(group, f"{state}/bus", count, "bus")
            paced = _blast(group, f"{state}/bus", paced_count, "bus", "paced")
            group.stop(node)
            out.update(bus_msg_s=got["delivered_per_s"], bus_loss=got["loss"],
                       bus_refused=got["refused"], bus_p50_us=paced["p50_us"])

        for step in ((proxy, bus) if index % 2 == 0 else (bus, proxy)):
            step()
    out["ratio"] = out["bus_msg_s"] / out["proxy_msg_s"] if out["proxy_msg_s"] else 0.0
    return out


def bus_latency_trial(direction: str, count: int, rate: float) -> dict[str, Any]:
    """Internal plugin <-> external plugin on one node, paced: one-way p50/p99.

    Args:
        direction: ``ext_to_int`` (a PluginClient publishes, the node's callback
            receives) or ``int_to_ext`` (the node publishes, a PluginClient receives).
        count: measured messages.
        rate: messages per second.
    """
    from _node_measure import _measured_pair

    port = PORTS["bus_latency"]
    common = {"mode": "paced", "count": count, "rate": rate,
              "deadline_s": 120.0 + count / rate}
    with ProcGroup("bus-latency") as group:
        state = group.state_dir()
        hop = bare_hop_p50(group, count)
        node_cfg = {**common, "port": port, "state_dir": state, "name": "bench-bus",
                    "bus": True}
        if direction == "ext_to_int":
            node = group.worker("node-sub", node_cfg, name="node with bus")
            node.wait_event("ready", 20)
            plugin = group.worker("plugin-pub", {**common, "bus": state}, name="plugin")
            got = _measured_pair(group, node, plugin, count, rate, "paced")
        else:
            plugin = group.worker("plugin-sub", {**common, "bus": state}, name="plugin")
            node = group.worker("node-pub", node_cfg, name="node with bus")
            plugin.wait_event("ready", 20)
            got = _measured_pair(group, plugin, node, count, rate, "paced")
    return with_hop(got, hop)


def bare_hop_p50(group: ProcGroup, count: int) -> float | None:
    """One bare zmq hop between the plain pyzmq clients, paced: its one-way p50 (us)."""
    return _blast(group, f"{group.state_dir()}/hop", count, "bare hop", "paced",
                  direct=True)["p50_us"]


def bare_chain_p50(group: ProcGroup, count: int) -> float | None:
    """The bare relay chain, paced: the same plain pyzmq clients at its ends and two
    ``relay`` processes in the middle (plugin -> zmq -> relay -> UDP -> relay -> zmq ->
    plugin, nothing else): the floor of a two-node path's one-way p50 (us)."""
    base = f"{group.state_dir()}/chain"
    cfg = {"base": base, "deadline_s": 120.0 + count / 500.0}
    out = group.worker("relay", {**cfg, "direction": "udp-to-zmq"}, name="relay udp->zmq")
    _, ready = out.wait_event("ready", 20)
    into = group.worker("relay", {**cfg, "direction": "zmq-to-udp", "port": ready["port"]},
                        name="relay zmq->udp")
    into.wait_event("ready", 20)
    p50 = _blast(group, base, count, "bare chain", "paced")["p50_us"]
    for proc in (into, out):
        group.stop(proc)
    return p50


def with_hop(result: dict[str, Any], hop_p50: float | None) -> dict[str, Any]:
    """``result`` with the same trial's bare-hop p50 and the ratio of its p50 to it."""
    result["hop_p50_us"] = hop_p50
    p50 = result.get("p50_us")
    result["p50_per_hop"] = p50 / hop_p50 if p50 and hop_p50 else None
    return result
