"""A node hears only its own interface: a ``lo`` node next to a LAN node on one host.

Theory of operation: two hosts of a :class:`node_support.NetnsLab` share a bridge;
host 1 runs a LAN node (``--iface eth0``) *and* a node on ``lo``, host 2 runs
another LAN node. Nothing the LAN nodes send may reach the ``lo`` node, and the
``lo`` node's traffic never leaves ``lo``.

How it broke (issue 20, Linux 6.5 and later): a multicast datagram for which
exactly one socket on the host holds a membership on the arrival interface is
early-demultiplexed to that socket, and the kernel then re-picks a socket of its
SO_REUSEPORT group by a hash of the addresses and ports, memberships ignored. The
``lo`` node's receive sockets were in that group (same port), so about half of
what host 2 sent went to the ``lo`` node (which counted host 2 as a peer) and was
lost for the LAN node. The first test shows it with bare sockets opened as every
node opens them; the second with real nodes and ``ganglion nodes``. Every process
is killed by PID and every namespace deleted at teardown.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from node_support import REPO, NetnsLab, Spawner, clean_env, wait_sync

pytestmark = pytest.mark.netns

PROBE = Path(__file__).with_name("iface_probe_child.py")
LOOPBACK = "127.0.0.1"
GROUP = "239.255.0.1"  # the control group: what the lo node heard
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.M)


def _env() -> dict[str, str]:
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def test_a_socket_joined_on_lo_takes_nothing_that_arrived_on_the_lan(lab: NetnsLab) -> None:
    lab.add_host()
    lab.add_host()
    port = 47911
    count = 20
    listener = subprocess.Popen(
        [*lab.prefix(1), sys.executable, str(PROBE), "listen", str(port), GROUP, "2.5",
         LOOPBACK, lab.address(1)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "ready", listener.stderr
        # Each datagram from a fresh source port: the old misdelivery hashed it, so
        # twenty of them all reaching the right socket by chance is a 1 in 2**20 event.
        subprocess.run([*lab.prefix(2), sys.executable, str(PROBE), "send", str(port), GROUP,
                        str(count), lab.address(2)], env=_env(), check=True, timeout=20)
        out, err = listener.communicate(timeout=20)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait(timeout=10)
    got = json.loads(out.strip().splitlines()[-1])
    assert got[LOOPBACK] == [], f"the lo socket took LAN datagrams: {got} {err}"
    assert sorted(got[lab.address(1)]) == sorted(f"d{i}" for i in range(count)), got


def test_a_unicast_to_the_port_on_the_lan_is_not_taken_by_a_lo_receiver(lab: NetnsLab) -> None:
    # The receive sockets are bound to the wildcard address, and the kernel hands a
    # unicast to the port to one of them, the last bound: here the lo receiver's. It
    # arrived on eth0, so the lo receiver drops and counts it (a catch-up answer meant
    # for the LAN node; the LAN node's next request goes to the group).
    lab.add_host()
    lab.add_host()
    port, count = 47913, 5
    listener = subprocess.Popen(
        [*lab.prefix(1), sys.executable, str(PROBE), "receive", str(port), GROUP, "2.0",
         lab.address(1), LOOPBACK],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "ready", listener.stderr
        subprocess.run([*lab.prefix(2), sys.executable, str(PROBE), "unicast", str(port),
                        lab.address(1), str(count)], env=_env(), check=True, timeout=20)
        out, err = listener.communicate(timeout=20)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait(timeout=10)
    got = json.loads(out.strip().splitlines()[-1])
    assert got[LOOPBACK] == {"got": [], "wrong_interface": count}, (got, err)


def _logged_at(text: str, needle: str) -> float | None:
    """The time (seconds of the day) of the first log line holding ``needle`` (any: "")."""
    for line in text.splitlines():
        found = STAMP.match(line)
        if found is not None and needle in line:
            clock = found.group(1).split(" ")[1]
            hours, minutes, rest = clock.split(":")
            seconds, millis = rest.split(",")
            return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000
    return None


def test_a_lo_node_beside_a_lan_node_agrees_alone_and_never_lists_it(
        lab: NetnsLab, spawn: Spawner, tmp_path: Path) -> None:
    lab.add_host()
    lab.add_host()
    state = tmp_path / "state"

    def node(host: int, name: str, iface: str, sim: str) -> None:
        proc = spawn("node", "--name", name, "--state-dir", str(state / name), "--iface", iface,
                     "--sim", sim, "--interval", "0.1", "-vv", label=f"node-{name}",
                     prefix=lab.prefix(host), env=_env())
        proc.wait_for_err(f"node {name} (")

    node(1, "cellar", "eth0", "humidity")
    node(2, "attic", "eth0", "temperature")
    lan = {p.label: p for p in spawn.procs}
    wait_sync(lambda: all("joined" in p.err for p in lan.values()), "the LAN nodes to meet", 15)

    solo = spawn("node", "--name", "solo", "--state-dir", str(state / "solo"), "--iface", "lo",
                 "--sim", "pressure", "--interval", "0.1", "-vv", label="node-solo",
                 prefix=lab.prefix(1), env=_env())
    solo.wait_for_err("type sensors.Pressure uses group", timeout=15)
    started = _logged_at(solo.err, "")  # its first log line, as it loads its state
    agreed = _logged_at(solo.err, "type sensors.Pressure uses group")
    assert started is not None and agreed is not None, solo.describe()
    assert agreed - started < 1.0, f"agreed after {agreed - started:.2f} s:\n{solo.describe()}"

    listed = spawn("nodes", "--iface", "lo", "--json", "--timeout", "3", label="nodes-lo",
                   prefix=lab.prefix(1), env=_env()).json_out()
    names = {row["name"] for row in listed}
    assert names == {"solo"}, listed
    lan_listed = spawn("nodes", "--iface", "eth0", "--json", "--timeout", "3",
                       label="nodes-eth0", prefix=lab.prefix(1), env=_env()).json_out()
    assert {row["name"] for row in lan_listed} == {"cellar", "attic"}, lan_listed

    time.sleep(1.0)  # heartbeats keep coming: none of them may reach solo either
    # the control channel logs "heard NAME (" for every id it hears, "peer NAME (" on joins
    for other in ("cellar", "attic"):
        assert f"heard {other} (" not in solo.err, f"solo heard {other}:\n{solo.describe()}"
        assert f"peer {other} (" not in solo.err, solo.describe()
    for proc in lan.values():
        assert "heard solo (" not in proc.err and "peer solo (" not in proc.err, proc.describe()
