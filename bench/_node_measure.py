"""The node benchmark's measurements: each sets up its processes, runs one trial, cleans up.

Theory of operation: every function here is one trial of one measurement (see
``bench/README.md`` for the exact definitions). It creates a :class:`ProcGroup`,
starts real processes (``ganglion node`` or benchmark workers running real
nodes and plugin clients) on 127.0.0.1 with fresh state directories, drives them
over their stdin/stdout, and returns plain numbers; leaving the group stops every
process by PID, also on failure. Cross-process durations subtract
``time.monotonic_ns()`` readings (one system-wide clock on Linux).
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from typing import Any

from _node_common import PORTS
from _node_procs import Proc, ProcError, ProcGroup, cpu_and_wakeups, rss_kib

#: ``ganglion node`` prints ``node NAME (ID) on ...`` on stderr once it has started.
START_LINE = re.compile(r"^node \S+ \(([0-9a-f]+)\) on ")
SIM_TYPE = "sensors.Temperature"


def _node_id(proc: Proc, timeout: float) -> tuple[int, str]:
    """Wait for ``ganglion node``'s start line; return its arrival time and the node id."""
    t = proc.wait_stderr("node ", timeout)
    for line in proc.stderr_lines():
        m = START_LINE.match(line)
        if m:
            return t, m.group(1)
    raise ProcError(f"{proc.name}: start line without a node id")


def _field_is(key: str, value: object) -> Callable[[dict[str, Any]], bool]:
    """A protocol-line filter: the line's ``key`` equals ``value``."""
    return lambda event: bool(event.get(key) == value)


def startup_trials(trials: int, *, deadline_s: float = 60.0) -> list[dict[str, Any]]:
    """Time from ``ganglion node --sim temperature`` start to its first reading elsewhere.

    One receiver process (a member node subscribed to sensors.Temperature with a
    callback) runs throughout; each trial starts a new ``ganglion node --sim
    temperature --interval 0.05 --no-mdns`` with a fresh state directory.

    Returns:
        Per trial: ``first_reading_ms`` (Popen to the receiver's callback) and
        ``started_ms`` (Popen to the node's start line on stderr).
    """
    port = PORTS["startup"]
    out = []
    with ProcGroup("startup") as group:
        receiver = group.worker("receiver", {"port": port, "state_dir": group.state_dir(),
                                             "name": "bench-receiver", "type": SIM_TYPE,
                                             "deadline_s": deadline_s * (trials + 1)})
        receiver.wait_event("ready", 20)
        for index in range(trials):
            state = group.state_dir()
            t0 = time.monotonic_ns()
            node = group.node(port, state, "--sim", "temperature", "--interval", "0.05",
                              "--no-mdns", name=f"bench-sim{index}")
            started_ns, node_id = _node_id(node, 20)
            _, reading = receiver.wait_event("reading", 20, where=_field_is("sender", node_id))
            out.append({"first_reading_ms": (reading["t_ns"] - t0) / 1e6,
                        "started_ms": (started_ns - t0) / 1e6})
            group.stop(node)
    return out


def agreement_trials(nodes: int, trials: int) -> list[dict[str, Any]]:
    """Time to agree a new type among ``nodes`` member nodes, each its own process.

    The members start with fresh state and run until every one hears all others.
    Each trial a different member publishes the first message of a new type
    (``bench.AgreeNxK``); every member reports when ``wait_for_group`` returned.

    Returns:
        Per trial: ``publisher_ms`` (publish to the publisher's own decision) and
        ``all_ms`` (publish to the last member learning the group).
    """
    port = PORTS["agree3" if nodes <= 3 else "agree10"]
    out = []
    with ProcGroup(f"agree{nodes}") as group:
        members = [group.worker("member", {"port": port, "state_dir": group.state_dir(),
                                           "name": f"bench-m{i}", "peers": nodes - 1,
                                           "deadline_s": 60.0 + 5.0 * trials},
                                name=f"member {i}")
                   for i in range(nodes)]
        for member in members:
            member.wait_event("ready", 30)
        for index in range(trials):
            name = f"bench.Agree{nodes}x{index}"
            for member in members:
                member.send(f"expect {name}")
            for member in members:
                member.wait_event("expecting", 10)
            publisher = members[index % nodes]
            publisher.send(f"publish {name}")
            t0 = publisher.wait_event("published", 10)[1]["t0_ns"]
            learned = [m.wait_event("learned", 20, where=_field_is("type", name))[1]["t_ns"]
                       for m in members]
            if any(t is None for t in learned):
                missing = sum(t is None for t in learned)
                raise ProcError(f"{missing} of {nodes} nodes did not learn {name} in 10 s")
            out.append({"publisher_ms": (learned[index % nodes] - t0) / 1e6,
                        "all_ms": (max(learned) - t0) / 1e6})
            time.sleep(0.1)
    return out


def _measured_pair(group: ProcGroup, sub: Proc, pub: Proc, count: int, rate: float,
                   mode: str) -> dict[str, Any]:
    """Drive a ready subscriber and a warming publisher through one measured run."""
    sub.wait_event("warm", 30)
    pub.send("go")
    budget = 30.0 + (count / rate if mode == "paced" else count / 2000.0)
    _, sent = pub.wait_event("sent", budget)
    _, result = sub.wait_event("result", budget)
    result.pop("event")
    latencies = sorted(result.pop("latencies_us"))
    result.update(sent=sent["sent"], send_seconds=sent["send_seconds"],
                  refused=sent.get("refused", 0), mode=mode)
    if latencies:
        result["p50_us"] = latencies[max(0, (len(latencies) + 1) // 2 - 1)]
        result["p99_us"] = latencies[max(0, -(-99 * len(latencies) // 100) - 1)]
    result["loss"] = 1 - result["received"] / sent["sent"] if sent["sent"] else 0.0
    for proc in (pub, sub):
        group.stop(proc)
    return result


def e2e_internal_trial(mode: str, count: int, rate: float, *,
                       yield_every: int = 32) -> dict[str, Any]:
    """Node A (one process) publishes NodeReading; node B (another) subscribes with a callback.

    Args:
        mode: ``blast`` (as fast as possible) or ``paced`` (``rate`` msg/s, latencies).
        count: measured messages.
        rate: paced rate in msg/s.
        yield_every: blast publishes between yields to A's event loop.
    """
    port = PORTS["e2e_internal"]
    common = {"port": port, "mode": mode, "count": count, "rate": rate,
              "deadline_s": 120.0 + count / (rate if mode == "paced" else 1000.0)}
    with ProcGroup("e2e-internal") as group:
        sub = group.worker("node-sub", {**common, "state_dir": group.state_dir(),
                                        "name": "bench-b"}, name="node B")
        sub.wait_event("ready", 20)
        pub = group.worker("node-pub", {**common, "state_dir": group.state_dir(),
                                        "name": "bench-a", "yield_every": yield_every},
                           name="node A")
        return _measured_pair(group, sub, pub, count, rate, mode)


def e2e_bus_trial(mode: str, count: int, rate: float) -> dict[str, Any]:
    """Plugin -> ``ganglion node`` A -> ``ganglion node`` B -> plugin, four processes.

    Both nodes are ``ganglion node --no-mdns`` serving their plugin bus on ipc in
    their state directories; the plugins use :class:`ganglion.client.PluginClient`.
    A paced trial also measures, right after, one bare zmq hop (``hop_p50_us``) and the
    bare relay chain (``chain_p50_us``, :func:`_node_bus.bare_chain_p50`).
    """
    port = PORTS["e2e_bus"]
    common = {"mode": mode, "count": count, "rate": rate,
              "deadline_s": 120.0 + count / (rate if mode == "paced" else 1000.0)}
    with ProcGroup("e2e-bus") as group:
        state_a, state_b = group.state_dir(), group.state_dir()
        node_a = group.node(port, state_a, "--no-mdns", name="bench-a")
        node_b = group.node(port, state_b, "--no-mdns", name="bench-b")
        for node in (node_a, node_b):
            node.wait_stderr("plugin bus:", 20)
        sub = group.worker("plugin-sub", {**common, "bus": state_b}, name="plugin on B")
        sub.wait_event("ready", 20)
        pub = group.worker("plugin-pub", {**common, "bus": state_a}, name="plugin on A")
        got = _measured_pair(group, sub, pub, count, rate, mode)
        if mode != "paced":
            return got
        from _node_bus import bare_chain_p50, bare_hop_p50, with_hop

        # The path has two zmq hops: the same trial's bare hop is its floor's unit, and
        # a chain of processes that only relay (zmq -> UDP -> zmq) the path's floor.
        got = with_hop(got, bare_hop_p50(group, count))
        chain = bare_chain_p50(group, count)
        got["chain_p50_us"] = chain
        got["p50_per_chain"] = got["p50_us"] / chain if chain and got.get("p50_us") else None
        return got


def _settled_rss_mb(proc: Proc, settle_s: float, samples: int = 5) -> float:
    """Median of a few VmRSS samples taken after ``settle_s`` seconds, in MB (10^6 bytes)."""
    time.sleep(settle_s)
    values = []
    for _ in range(samples):
        values.append(rss_kib(proc.pid) * 1024 / 1e6)
        time.sleep(0.2)
    return float(statistics.median(values))


def rss_idle_trial(*, mdns: bool, settle_s: float, loop: str = "asyncio") -> dict[str, Any]:
    """Resident memory of an idle ``ganglion node`` (no plugins), after ``settle_s`` seconds.

    ``loop`` is its event loop (``GANGLION_EVENT_LOOP``): asyncio's, as a plain
    ``pip install ganglion-net`` has it, or uvloop (the ``fast`` extra).
    """
    port = PORTS["rss_idle" if mdns else "rss_idle_nomdns"]
    with ProcGroup("rss-idle") as group:
        node = group.node(port, group.state_dir(), *(() if mdns else ("--no-mdns",)),
                          name="bench-idle", env={"GANGLION_EVENT_LOOP": loop})
        _node_id(node, 20)
        return {"rss_mb": _settled_rss_mb(node, settle_s), "mdns": mdns, "loop": loop}


def idle_trial(*, peers: int, window_s: float, settle_s: float,
               loop: str = "asyncio") -> dict[str, Any]:
    """CPU and wake-ups of an idle ``ganglion node`` (default flags, so mDNS on), alone or
    with ``peers`` idle ``ganglion node`` peers on the same port, over ``window_s`` seconds.

    Measured once every node has started and ``settle_s`` more seconds have passed (mDNS
    probing and announcing, the first heartbeats): ``cpu_pct`` is the node's user +
    system time over the window in % of one core, ``wakeups_s`` its voluntary context
    switches per second (all threads), and ``rss_mb`` its VmRSS at the end.
    """
    port = PORTS["idle_peers" if peers else "idle" if loop == "asyncio" else "idle_uvloop"]
    env = {"GANGLION_EVENT_LOOP": loop}
    with ProcGroup("idle") as group:
        node = group.node(port, group.state_dir(), name="bench-idle", env=env)
        others = [group.node(port, group.state_dir(), name=f"bench-peer{i}", env=env)
                  for i in range(peers)]
        for proc in (node, *others):
            _node_id(proc, 20)
        time.sleep(settle_s)
        cpu0, switches0 = cpu_and_wakeups(node.pid)
        t0 = time.monotonic()
        time.sleep(window_s)
        cpu1, switches1 = cpu_and_wakeups(node.pid)
        elapsed = time.monotonic() - t0
        return {"cpu_pct": 100.0 * (cpu1 - cpu0) / elapsed,
                "wakeups_s": (switches1 - switches0) / elapsed, "peers": peers, "loop": loop,
                "rss_mb": rss_kib(node.pid) * 1024 / 1e6, "window_s": elapsed}


def rss_types_trial(types: int, *, settle_s: float) -> dict[str, Any]:
    """Resident memory of a ``ganglion node`` that publishes ``types`` types.

    An external plugin on the node's bus publishes one message of each of
    ``types`` type names every 0.5 s, so the node proposes, agrees and sends all
    of them; an observer process counts the agreed map. RSS is sampled once the
    map holds every type and ``settle_s`` more seconds have passed.
    """
    port = PORTS["rss_types"]
    with ProcGroup("rss-types") as group:
        state = group.state_dir()
        node = group.node(port, state, name="bench-types")
        t0, _ = _node_id(node, 20)
        watch = group.worker("watch", {"port": port, "deadline_s": 180.0}, name="observer")
        plugin = group.worker("types", {"bus": state, "types": types, "interval": 0.5,
                                        "deadline_s": 180.0}, name="types plugin")
        try:
            t_all, _ = watch.wait_event("types", 90, where=lambda ev: ev["count"] >= types)
        except ProcError as exc:
            seen = watch.last_event("types")
            raise ProcError(f"the observer saw {seen['count'] if seen else 0} of {types} types "
                            f"agreed; plugin: {plugin.stderr_tail()[-300:]}; observer: "
                            f"{watch.stderr_tail()[-300:]}; node: {node.stderr_tail()[-300:]}"
                            ) from exc
        return {"rss_mb": _settled_rss_mb(node, settle_s), "types": types,
                "agreed_all_s": (t_all - t0) / 1e9}


def inprocess_trial(count: int) -> dict[str, Any]:
    """In-process publish -> callback rate through one node, in a fresh process."""
    with ProcGroup("inprocess") as group:
        proc = group.worker("inprocess", {"count": count, "port": PORTS["inprocess"],
                                          "state_dir": group.state_dir()})
        _, result = proc.wait_event("result", 60 + count / 20_000)
        return {"rate": result["rate"], "source": result["source"]}

