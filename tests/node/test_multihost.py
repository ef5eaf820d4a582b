"""Several hosts on one LAN, built from network namespaces: data, agreement, restarts,
partitions and newcomers, with real ``ganglion`` processes.

Theory of operation: the ``lab`` fixture (:class:`node_support.NetnsLab`) creates a
bridge in a namespace of its own and, per host, a namespace whose ``eth0`` (a
veth) is enslaved to that bridge, with an address in ``10.77.<n>.0/24`` and a
multicast route out of ``eth0``. Nothing is created in, or sent from, the
namespace the tests run in. Each host runs ``ganglion node --iface eth0
--no-mdns`` under ``ip netns exec``; the CLI tools (``tail``, ``types``,
``publish``) run the same way on the host they inspect. A partition is one
host's bridge port set down; healing sets it up again. Every process is killed by
PID and every namespace deleted at teardown, also when a test fails.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from node_support import NetnsLab, NodeProc, Spawner, wait_sync

pytestmark = pytest.mark.netns

IFACE = ["--iface", "eth0"]
TEMPERATURE = "sensors.Temperature"
HUMIDITY = "sensors.Humidity"
STARTED = re.compile(r"node (\S+) \(([0-9a-f]{16})\) on eth0 10\.77\.")


class Hosts:
    """The hosts of one lab and the ganglion processes running on them."""

    def __init__(self, lab: NetnsLab, spawn: Spawner, state_root: Path) -> None:
        self.lab = lab
        self.spawn = spawn
        self.state_root = state_root
        self.nodes: dict[int, NodeProc] = {}

    def add(self, count: int = 1) -> list[int]:
        """Create ``count`` more hosts; return their indexes (from 1)."""
        for _ in range(count):
            self.lab.add_host()
        return list(range(len(self.lab.hosts) - count + 1, len(self.lab.hosts) + 1))

    def start_node(self, host: int, *sims: str) -> str:
        """Start the node of ``host`` (state kept per host); return its node id."""
        name = f"host{host}"
        args = ["node", "--name", name, "--state-dir", str(self.state_root / name), *IFACE,
                "--no-mdns", "-v"]
        for kind in sims:
            args += ["--sim", kind, "--interval", "0.1"]
        proc = self.spawn(*args, label=f"node-{name}", prefix=self.lab.prefix(host))
        self.nodes[host] = proc
        proc.wait_for_err(f"node {name} (")
        found = STARTED.search(proc.err)
        assert found is not None, proc.describe()
        return found.group(2)

    def run(self, host: int, *args: str, label: str) -> NodeProc:
        """Run a CLI command on ``host``."""
        return self.spawn(*args, *IFACE, label=label, prefix=self.lab.prefix(host))

    def types(self, host: int) -> dict[str, str]:
        """``ganglion types --json`` as seen from ``host``."""
        result: dict[str, str] = self.run(host, "types", "--json", "--timeout", "4",
                                          label=f"types-h{host}").json_out()
        return result

    def publish(self, host: int, type_name: str, fields: dict[str, Any]) -> None:
        """``ganglion publish`` from ``host``; it must succeed."""
        proc = self.run(host, "publish", type_name, "--json", json.dumps(fields), "--timeout",
                        "10", label=f"publish-h{host}")
        assert proc.finish() == 0, proc.describe()

    def converged(self, hosts: list[int], names: set[str], timeout: float = 25.0) -> dict[str, str]:
        """Wait until every host's map holds ``names`` and all maps are equal; return it."""
        maps: dict[int, dict[str, str]] = {}

        def done() -> bool:
            maps.clear()
            # one observer per host at the same time: a poll costs one tool run, not three
            procs = {h: self.run(h, "types", "--json", "--timeout", "4", label=f"types-h{h}")
                     for h in hosts}
            maps.update({h: proc.json_out() for h, proc in procs.items()})
            first = maps[hosts[0]]
            return names <= set(first) and all(m == first for m in maps.values())

        wait_sync(done, f"one map with {sorted(names)} on hosts {hosts} (last: {maps})",
                  timeout, 0.2)
        return maps[hosts[0]]


@pytest.fixture
def hosts(lab: NetnsLab, spawn: Spawner, tmp_path: Path) -> Hosts:
    return Hosts(lab, spawn, tmp_path / "state")


def groups_logged(proc: NodeProc) -> dict[str, str]:
    """The map a node logged (``type T uses group G``; a move's new group wins)."""
    found: dict[str, str] = {}
    for m in re.finditer(r"type (\S+) (?:uses group|moves from \S+ to) (\S+)", proc.err):
        found[m.group(1)] = m.group(2)
    return found


def test_readings_cross_hosts_and_a_newcomer_catches_up(hosts: Hosts) -> None:
    h1, h2, h3 = hosts.add(3)
    sender = hosts.start_node(h1, "temperature")
    hosts.start_node(h2)
    hosts.start_node(h3, "humidity")
    tails = [hosts.run(h, "tail", TEMPERATURE, "--json", "--no-last", "--count", "5",
                       "--timeout", "20", label=f"tail-h{h}") for h in (h2, h3)]
    for tail in tails:
        assert tail.finish(30) == 0, tail.describe()
        lines = tail.json_lines()
        assert {line["node"] for line in lines} == {sender}
        seqs = [line["seq"] for line in lines]
        assert seqs == list(range(seqs[0], seqs[0] + 5))
        assert all(line["data"]["sensor"] == "sim:host1/temperature" for line in lines)

    # a new type from the command line, agreed by every host
    hosts.publish(h2, "nodetest.lan.Valve", {"open": True})
    agreed = hosts.converged([h1, h2, h3], {TEMPERATURE, HUMIDITY, "nodetest.lan.Valve"})
    assert len(set(agreed.values())) == len(agreed)

    # a host plugged in later learns the whole map from its peers
    (h4,) = hosts.add(1)
    hosts.start_node(h4)
    wait_sync(lambda: groups_logged(hosts.nodes[h4]) == agreed,
              f"the newcomer's node to learn {agreed}", 15)
    assert hosts.converged([h1, h4], set(agreed)) == agreed


def test_restart_partition_and_heal(hosts: Hosts) -> None:
    h1, h2, h3 = hosts.add(3)
    hosts.start_node(h1, "temperature")
    node2 = hosts.start_node(h2)
    hosts.start_node(h3, "humidity")
    before = hosts.converged([h1, h2, h3], {TEMPERATURE, HUMIDITY})

    # SIGKILL host 2's node and restart it cut off: only its journal has the map
    hosts.lab.set_link(h2, up=False)
    hosts.nodes[h2].kill()
    assert hosts.start_node(h2) == node2
    assert groups_logged(hosts.nodes[h2]) == before
    assert hosts.types(h2) == before

    # h2, restarted alone, is a quorum of one and agrees types on its own; the other
    # side (still a majority of the old view) agrees two, one of which h2 also asked for
    assert "peer host" not in hosts.nodes[h2].err
    alone = "nodetest.lan.Alone"
    shared = "nodetest.lan.Shared"
    majority = "nodetest.lan.Majority"
    hosts.publish(h2, alone, {"n": 1})
    hosts.publish(h2, shared, {"n": 1})
    hosts.publish(h1, shared, {"n": 2})
    hosts.publish(h3, majority, {"n": 3})
    apart_small = hosts.types(h2)
    apart_big = hosts.converged([h1, h3], {shared, majority})
    assert {alone, shared} <= set(apart_small) and majority not in apart_small
    assert alone not in apart_big

    # heal: one map everywhere, and readings published after the heal all arrive
    hosts.lab.set_link(h2, up=True)
    every = set(before) | {alone, shared, majority}
    healed = hosts.converged([h1, h2, h3], every, timeout=30)
    assert len(set(healed.values())) == len(healed)
    tails = {h: hosts.run(h, "tail", alone, "--json", "--no-last", "--count", "3",
                          "--timeout", "20", label=f"tail-alone-h{h}") for h in (h1, h3)}
    for tail in tails.values():
        tail.wait_for_err(f"listening for {alone}")
    # the tails learn the map by catch-up within a few heartbeats (0.5 s); tail shows
    # no sign of it, so give it time rather than lose the first reading to the race
    time.sleep(2.0)
    for n in range(3):
        hosts.publish(h2, alone, {"n": 10 + n})
    for tail in tails.values():
        assert tail.finish(30) == 0, tail.describe()
        assert sorted(line["data"]["n"] for line in tail.json_lines()) == [10, 11, 12]
