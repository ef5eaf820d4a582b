#!/usr/bin/env python3
"""Where the microseconds go on plugin -> node A -> node B -> plugin, stage by stage.

    .venv/bin/python bench/bus_stages.py [--count N] [--rate R] [--trials K] [--registered]
        [--no-netns]

Theory of operation: ``bench/node.py`` measures the four-process path end to end
(``e2e_bus_paced``). This script runs the same path, paced (``--rate`` msg/s, 1,000 by
default), with a ``time.monotonic_ns()`` reading (one system-wide clock) at each stage:

=============  ============================================================================
``send``       the publishing plugin takes the time and calls ``PluginClient.publish``
``a_wake``     node A's bus reader callback starts (zmq's descriptor woke its event loop)
``a_route``    the bus hands the message to the node (``Node._on_bus_publish``)
``a_sendto``   node A's ``sendto`` of the datagram returned
``b_wake``     node B's datagram drain starts (the UDP socket woke its event loop)
``b_deliver``  node B's bus subscription sends it on (``PluginBus.deliver_info``)
``b_sent``     that zmq send returned
``s_wake``     the subscribing plugin's poll of its SUB socket returned
``s_recv``     ``PluginClient.recv`` returned the decoded message
=============  ============================================================================

The nodes are ``ganglion node`` itself (this script's ``node`` role installs the probes,
wrappers around the methods named above, then runs the CLI), so nothing in ganglion
knows it is measured; a probe costs well under a microsecond. Each message's stages
are matched by time: the first reading of each stage after the message was sent and
before the next one was (so a delta may be negative: ``a_sendto`` is read after node A
gave the CPU away, ``sched_yield``, and node B may have run first).
The same trial measures the floors: one bare zmq ipc hop between plain pyzmq sockets
(``zmq``: send, poll return, recv) and one bare UDP hop between plain sockets on
127.0.0.1 (``udp``), both paced alike. The table prints each stage's median delta over
all trials, then the median end-to-end figure and the floors beside it.
As root it runs in a fresh network namespace with only loopback (as ``node.py``).
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import json
import os
import select
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent), *(p for p in sys.path if Path(p or ".").resolve() != _BENCH),
               str(_BENCH)]

# Neither _node_common nor _node_procs (which imports it) at import: _node_common registers
# NodeReading, and a node with the class registered takes another path (decode, publish
# typed) than ``ganglion node``, which does not know it.
from _transport_netns import choose_isolation, run_in_namespace  # noqa: E402

if TYPE_CHECKING:
    from _node_procs import Proc, ProcGroup

LOOPBACK = "127.0.0.1"
WARMUP, MEASURED = 0, 1  # as _node_common's
PORT = 47_330
UDP_PORT = 47_340
NODE_STAGES = ("a_wake", "a_route", "a_sendto", "b_wake", "b_deliver", "b_sent")
STAGES = ("send", *NODE_STAGES, "s_wake", "s_recv")


# -- the roles, one per process ------------------------------------------------------


def run_node(argv: list[str]) -> int:
    """``node OUT NAME STATE PORT REGISTERED``: ``ganglion node`` with probes; readings to OUT
    at exit. REGISTERED ``1``: the node knows NodeReading's class (as a node whose own
    code registers the type would), ``0``: it does not (``ganglion node`` as it is)."""
    out, name, state, port, registered = argv
    assert "_node_common" not in sys.modules  # NodeReading stays unknown unless asked
    if registered == "1":
        import _node_common  # noqa: F401  (registers NodeReading)
    marks: list[tuple[str, int]] = []
    now = time.monotonic_ns
    add = marks.append

    from ganglion import _speedups, node
    from ganglion.cli.main import main
    from ganglion.runtime import _outgoing, _sender, bus

    def wrap(owner: Any, attr: str, before: str | None, after: str | None) -> None:
        inner = getattr(owner, attr)

        def probe(*args: Any, **kwargs: Any) -> Any:
            if before:
                add((before, now()))
            result = inner(*args, **kwargs)
            if after:
                add((after, now()))
            return result

        setattr(owner, attr, probe)

    wrap(bus.PluginBus, "_on_readable", "a_wake", None)
    wrap(node.Node, "_on_bus_publish", "a_route", None)
    wrap(_sender.MulticastSender, "_send_one", None, "a_sendto")
    # The compiled send lane sends (and yields the CPU) itself, then reports here.
    wrap(_outgoing.Outgoing, "lane_done", "a_sendto", None)
    wrap(_speedups, "drain", "b_wake", None)  # the receiver binds it when it opens a socket
    wrap(bus.PluginBus, "deliver_info", "b_deliver", "b_sent")

    def dump() -> None:
        Path(out).write_text(json.dumps(marks))

    atexit.register(dump)
    sys.argv = ["ganglion", "node", "--iface", LOOPBACK, "--port", port,
                "--state-dir", state, "--name", name, "--no-mdns"]
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _wait_line(word: str, deadline: float) -> bool:
    """Read stdin lines until ``word`` (True) or the deadline / end of input (False)."""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([0], [], [], 0.02)
        if ready:
            line = sys.stdin.readline()
            if not line:
                return False
            if line.strip() == word:
                return True
    return False


def run_pub(argv: list[str]) -> int:
    """``pub KIND WHERE COUNT RATE``: warm up until ``go``, then COUNT paced sends, then the
    send times (one per message, in order) as ``sent``. KIND: plugin, zmq or udp."""
    from _node_common import NodeReading, emit

    kind, where, count_s, rate_s = argv
    count, rate = int(count_s), float(rate_s)
    deadline = time.monotonic() + 60.0 + count / rate
    if kind == "plugin":
        from ganglion.client import PluginClient

        client = PluginClient(where, ready_timeout=10.0)

        def send(seq: int, phase: int) -> int:
            t0 = time.monotonic_ns()
            client.publish(NodeReading(seq, phase, t0, 21.5, "bench/plugin"))
            return t0
    elif kind in ("zmq", "zmqc"):
        import cbor2
        import zmq

        pub = zmq.Context().socket(zmq.XPUB)
        pub.linger = 0
        if kind == "zmq":
            pub.bind(f"ipc://{where}")
            emit("ready")  # bound: the subscriber may connect
        else:  # the first process of the bare relay chain, as a plugin connects to a node
            pub.connect(f"ipc://{where}")
        if not pub.poll(20_000):
            emit("error", why="no subscriber")
            return 3
        pub.recv()

        def send(seq: int, phase: int) -> int:
            t0 = time.monotonic_ns()
            pub.send_multipart([b"bench.NodeReading", cbor2.dumps(
                {"seq": seq, "phase": phase, "mono_ns": t0})], flags=zmq.NOBLOCK)
            return t0
    else:
        import cbor2

        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def send(seq: int, phase: int) -> int:
            t0 = time.monotonic_ns()
            udp.sendto(cbor2.dumps({"seq": seq, "phase": phase, "mono_ns": t0}),
                       (LOOPBACK, int(where)))
            return t0
    if kind not in ("zmq", "zmqc"):
        emit("ready")
    while not _wait_line("go", min(deadline, time.monotonic() + 0.02)):
        if time.monotonic() > deadline:
            return 3
        send(0, WARMUP)
    sent = []
    start = time.monotonic()
    for seq in range(count):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent.append(send(seq, MEASURED))
    emit("sent", sent=sent)
    _wait_line("quit", deadline)
    return 0


def run_sub(argv: list[str]) -> int:
    """``sub KIND WHERE COUNT``: receive COUNT measured messages; ``got`` lists each one's
    (seq, poll return ns, received ns). KIND: plugin, zmq or udp."""
    from _node_common import NodeReading, emit

    kind, where, count_s = argv
    count = int(count_s)
    deadline = time.monotonic() + 60.0 + count / 100.0
    import cbor2

    if kind == "plugin":
        from ganglion.client import PluginClient

        client = PluginClient(where)
        client.subscribe(NodeReading)
        sock: Any = client._sub  # the bench looks at the poll return itself

        def take() -> tuple[int, int]:
            msg, _meta = client.recv(timeout=0)
            assert isinstance(msg, NodeReading)
            return msg.seq, msg.phase
    elif kind == "zmq":
        import zmq

        sock = zmq.Context().socket(zmq.SUB)
        sock.linger = 0
        sock.connect(f"ipc://{where}")
        sock.subscribe(b"bench.NodeReading")

        def take() -> tuple[int, int]:
            fields = cbor2.loads(sock.recv_multipart(zmq.NOBLOCK)[1])
            return int(fields["seq"]), int(fields["phase"])
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, int(where)))
        sock.setblocking(False)

        def take() -> tuple[int, int]:
            fields = cbor2.loads(sock.recv(2048))
            return int(fields["seq"]), int(fields["phase"])

    def wait(timeout_ms: int) -> bool:
        if kind == "udp":
            return bool(select.select([sock], [], [], timeout_ms / 1000)[0])
        return bool(sock.poll(timeout_ms))

    import zmq

    zmq_again = zmq.Again
    emit("ready")
    got: list[tuple[int, int, int]] = []
    warm = False
    while len(got) < count and time.monotonic() < deadline:
        if not wait(50):
            continue
        woke = time.monotonic_ns()
        while True:  # all that is queued (the plugin client may have read ahead)
            try:
                seq, phase = take()
            except (TimeoutError, BlockingIOError, zmq_again):
                break
            done = time.monotonic_ns()
            if phase == MEASURED:
                got.append((seq, woke, done))
            elif not warm:
                warm = True
                emit("warm")
    emit("got", got=got)
    _wait_line("quit", deadline)
    return 0


def _stdin_quit() -> bool:
    """Whether stdin said ``quit`` or closed (checked without waiting)."""
    if not select.select([0], [], [], 0)[0]:
        return False
    line = sys.stdin.readline()
    return not line or line.strip() == "quit"


def run_relay(argv: list[str]) -> int:
    """``relay zmq-to-udp PATH PORT`` or ``relay udp-to-zmq PORT PATH``: the bare relay
    chain's middle processes, what the two nodes do with nothing else: a SUB bound at
    PATH whose messages' payloads go to 127.0.0.1:PORT in one ``sendto`` each, or a
    UDP socket on PORT whose datagrams go out of an XPUB bound at PATH."""
    import zmq

    direction, first, second = argv
    deadline = time.monotonic() + 600.0
    ctx = zmq.Context()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if direction == "zmq-to-udp":
        sub = ctx.socket(zmq.SUB)
        sub.linger = 0
        sub.bind(f"ipc://{first}")
        sub.subscribe(b"")
        target = (LOOPBACK, int(second))
        print('{"event":"ready"}', flush=True)
        while time.monotonic() < deadline and not _stdin_quit():
            if not sub.poll(100):
                continue
            while True:
                try:
                    frames = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                udp.sendto(frames[1], target)
        return 0
    pub = ctx.socket(zmq.XPUB)
    pub.linger = 0
    pub.bind(f"ipc://{second}")
    udp.bind((LOOPBACK, int(first)))
    udp.setblocking(False)
    print('{"event":"ready"}', flush=True)
    while time.monotonic() < deadline and not _stdin_quit():
        if not select.select([udp], [], [], 0.1)[0]:
            continue
        while True:
            try:
                data = udp.recv(2048)
            except BlockingIOError:
                break
            pub.send_multipart([b"bench.NodeReading", data], zmq.NOBLOCK)
    return 0


ROLES = {"node": run_node, "pub": run_pub, "sub": run_sub, "relay": run_relay}


# -- the orchestrator ---------------------------------------------------------------


def _proc(group: ProcGroup, name: str, *args: str, graceful: str = "quit") -> Proc:
    from _node_procs import Proc

    proc = Proc(name, [sys.executable, str(Path(__file__).resolve()), *args], graceful=graceful)
    group.procs.append(proc)
    return proc


def _pair(group: ProcGroup, kind: str, pub_where: str, sub_where: str, count: int,
          rate: float) -> tuple[list[int], list[list[int]]]:
    """Run one paced pub -> sub pair; return the send times and the receiver's records.

    ``kind``: ``plugin`` (PluginClients, through the nodes), ``zmq`` (a bare hop: the
    publisher binds), ``chain`` (plain pyzmq ends of the bare relay chain) or ``udp``.
    """
    pub_kind, sub_kind = {"chain": ("zmqc", "zmq")}.get(kind, (kind, kind))
    pub = None
    if kind == "zmq":  # the publisher binds: start it first
        pub = _proc(group, f"{kind} pub", "pub", pub_kind, pub_where, str(count), str(rate))
        pub.wait_event("ready", 20)
    sub = _proc(group, f"{kind} sub", "sub", sub_kind, sub_where, str(count))
    sub.wait_event("ready", 20)
    if pub is None:
        pub = _proc(group, f"{kind} pub", "pub", pub_kind, pub_where, str(count), str(rate))
    sub.wait_event("warm", 30)
    time.sleep(0.2)
    pub.send("go")
    budget = 30.0 + count / rate
    sent = pub.wait_event("sent", budget)[1]["sent"]
    got = sub.wait_event("got", budget)[1]["got"]
    group.stop(pub)
    group.stop(sub)
    return sent, got


def _hop(sent: list[int], got: list[list[int]]) -> dict[str, float]:
    """Median send -> poll return and send -> received of a bare hop, in us."""
    wake = [(w - sent[s]) / 1e3 for s, w, _ in got if 0 <= s < len(sent)]
    done = [(d - sent[s]) / 1e3 for s, _, d in got if 0 <= s < len(sent)]
    return {"wake": statistics.median(wake), "recv": statistics.median(done)}


def trial(count: int, rate: float, registered: bool = False) -> dict[str, Any]:
    """One trial: the traced four-process path, then a bare zmq hop, a bare UDP hop and
    the bare relay chain (``registered``: the nodes know NodeReading's class)."""
    from _node_procs import ProcGroup

    with ProcGroup("bus-stages") as group:
        state_a, state_b = group.state_dir(), group.state_dir()
        out_a, out_b = f"{state_a}/../marks-a.json", f"{state_b}/../marks-b.json"
        known = "1" if registered else "0"
        nodes = [_proc(group, "node A", "node", out_a, "stage-a", state_a, str(PORT), known,
                       graceful="sigterm"),
                 _proc(group, "node B", "node", out_b, "stage-b", state_b, str(PORT), known,
                       graceful="sigterm")]
        for node in nodes:
            node.wait_stderr("plugin bus:", 20)
        sent, got = _pair(group, "plugin", state_a, state_b, count, rate)
        for node in nodes:
            group.stop(node)
        marks: dict[str, list[int]] = {stage: [] for stage in NODE_STAGES}
        for path in (out_a, out_b):
            for stage, t in json.loads(Path(path).read_text()):
                marks.setdefault(stage, []).append(t)
        for times in marks.values():
            times.sort()
        hop = f"{group.state_dir()}/hop"
        zmq_hop = _hop(*_pair(group, "zmq", hop, hop, count, rate))
        udp_hop = _hop(*_pair(group, "udp", str(UDP_PORT), str(UDP_PORT), count, rate))
        # The bare relay chain: the path's processes and hops with nothing else in them.
        chain_in, chain_out = f"{group.state_dir()}/in", f"{group.state_dir()}/out"
        relays = [_proc(group, "relay udp->zmq", "relay", "udp-to-zmq", str(UDP_PORT + 1),
                        chain_out),
                  _proc(group, "relay zmq->udp", "relay", "zmq-to-udp", chain_in,
                        str(UDP_PORT + 1))]
        for relay in relays:
            relay.wait_event("ready", 20)
        chain = _hop(*_pair(group, "chain", chain_in, chain_out, count, rate))
        for relay in relays:
            group.stop(relay)
    rows = []
    window = int(1e9 / rate)  # a message's readings come before the next one is sent
    for seq, woke, done in got:
        if not 0 <= seq < len(sent):
            continue
        t0 = sent[seq]
        row = [t0]
        for stage in NODE_STAGES:
            times = marks[stage]
            i = bisect.bisect_left(times, t0)
            if i == len(times) or times[i] - t0 >= window:
                break
            row.append(times[i])
        else:
            row += [woke, done]
            rows.append(row)
    return {"rows": rows, "zmq": zmq_hop, "udp": udp_hop, "chain": chain,
            "received": len(got),
            "marks": {stage: len(times) for stage, times in marks.items()}}


def report(trials: list[dict[str, Any]]) -> str:
    """The table: each stage's median delta and its cumulative median, then the floors."""
    rows = [row for t in trials for row in t["rows"]]
    lines = [f"{len(rows)} messages traced through every stage "
             f"({sum(t['received'] for t in trials)} received), {len(trials)} trial(s)",
             f"{'stage':<11} {'delta p50 us':>13} {'since send p50 us':>18}"]
    for i, stage in enumerate(STAGES[1:], start=1):
        delta = statistics.median((r[i] - r[i - 1]) / 1e3 for r in rows)
        since = statistics.median((r[i] - r[0]) / 1e3 for r in rows)
        lines.append(f"{stage:<11} {delta:>13.1f} {since:>18.1f}")
    zmq_hop = statistics.median(t["zmq"]["recv"] for t in trials)
    zmq_wake = statistics.median(t["zmq"]["wake"] for t in trials)
    udp_hop = statistics.median(t["udp"]["recv"] for t in trials)
    udp_wake = statistics.median(t["udp"]["wake"] for t in trials)
    total = statistics.median((r[-1] - r[0]) / 1e3 for r in rows)
    chain = statistics.median(t["chain"]["recv"] for t in trials)
    lines += [f"end to end p50 {total:.1f} us; floors, same trials: bare zmq ipc hop "
              f"{zmq_hop:.1f} us (poll return {zmq_wake:.1f}), bare UDP hop {udp_hop:.1f} us "
              f"(wake {udp_wake:.1f}); 2 zmq + 1 UDP = {2 * zmq_hop + udp_hop:.1f} us",
              f"bare relay chain (4 processes, 2 zmq hops + 1 UDP hop, plain pyzmq and "
              f"sockets) p50 {chain:.1f} us; ganglion / chain {total / chain:.2f}x",
              f"load average {os.getloadavg()[0]:.2f}",
              "probe readings per trial: " + "; ".join(
                  ", ".join(f"{k} {v}" for k, v in t["marks"].items()) for t in trials)]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        return ROLES[sys.argv[1]](sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--no-netns", action="store_true")
    parser.add_argument("--registered", action="store_true",
                        help="the nodes know the type's class (decode, publish typed, "
                             "encode again for the plugin) instead of passing bytes")
    args = parser.parse_args()
    isolation = choose_isolation(allow_create=not args.no_netns)
    if isolation.mode == "create":
        return run_in_namespace([sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]],
                                timeout=600.0)
    trials = [trial(args.count, args.rate, args.registered) for _ in range(args.trials)]
    print(report(trials), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
